"""Acquisition planner: aggregate a study's points over noise repeats, apply the objective and constraints,
find the Pareto front of quality against scan time, refine the tilt, and recommend a protocol."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from lamino.simulate.detector import SATURATED_SHARE


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One acquisition configuration of a study (a sweep point without its noise seed), over its repeats.

    ``point``: tilt_deg, n_views, exposure_s, kvp, method; ``metrics_mean`` / ``metrics_std``: over the noise
    repeats (std 0 for one repeat); ``objective_mean`` / ``objective_std``: the weighted objective (higher is
    better); ``n``: the repeats; ``metrics_sem`` / ``objective_sem``: standard errors of the means, s/√n with the
    sample standard deviation s (NaN with one repeat: unknown, not zero); ``scan_time_s``: n_views × (exposure +
    readout); ``feasible``: every constraint holds for the means; ``pareto``: on the front of objective (max)
    against scan time (min) among feasible configurations. A configuration whose open beam saturates the
    detector (``saturated_fraction`` above :data:`~lamino.simulate.detector.SATURATED_SHARE`) is never
    feasible: its data are clipped, whatever its metrics say."""

    point: dict[str, Any]
    ids: tuple[str, ...]
    stage: str
    metrics_mean: dict[str, float]
    metrics_std: dict[str, float]
    objective_mean: float
    objective_std: float
    scan_time_s: float
    feasible: bool
    pareto: bool
    n: int = 1
    metrics_sem: dict[str, float] = dataclasses.field(default_factory=dict)
    objective_sem: float = math.nan
    objective_by_repeat: dict[str, float] = dataclasses.field(default_factory=dict)    # repeat key → objective


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """The planner's verdict: every configuration, the recommended one and why, the best and worst by objective,
    the objective as text, and (when computed) the gradient of the objective with respect to tilt."""

    configurations: tuple[Configuration, ...]
    recommended: Configuration | None
    reason: str
    best: Configuration | None
    worst: Configuration | None
    objective: str
    gradient: dict[str, float] | None = None


_CONFIG_KEYS = ("tilt_deg", "n_views", "exposure_s", "kvp", "method", "trajectory")
GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0          # 0.618…: the golden-section ratio


def default_weights(metric_names) -> dict[str, float]:
    """The objective when a study gives none: for cracked samples the share of cracks an NPW observer detects
    (d′ ≥ 5, the Rose criterion), else their Dice; the star's limiting frequency for a Siemens star; SSIM
    otherwise."""
    for name in ("crack_detectable_fraction", "crack_dice", "star_limit_lp_mm", "ssim"):
        if name in metric_names:
            return {name: 1.0}
    return {}


def objective_text(weights: dict[str, float]) -> str:
    """``weights`` as a readable formula, e.g. ``1 × crack_dice − 10 × rmse``."""
    terms = []
    for i, (name, w) in enumerate(weights.items()):
        sign = "−" if w < 0 else ("+" if i else "")
        terms.append(f"{sign} {abs(w):g} × {name}".strip())
    return " ".join(terms) if terms else "(none)"


def objective_value(metrics: dict[str, float], weights: dict[str, float]) -> float:
    """Σ weight × metric (NaN if a weighted metric is missing)."""
    return float(sum(w * metrics.get(name, math.nan) for name, w in weights.items())) if weights else math.nan


def configurations(records: list[dict[str, Any]], weights: dict[str, float], constraints) -> list[Configuration]:
    """Group point records by configuration (all but the noise seed and the sample instance) and summarise them
    over those repeats."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key = json.dumps({k: r["point"].get(k) for k in _CONFIG_KEYS}, sort_keys=True)
        groups.setdefault(key, []).append(r)
    out = []
    for recs in groups.values():
        names = sorted({m for r in recs for m in r["metrics"]})
        values = {m: np.array([r["metrics"].get(m, math.nan) for r in recs], float) for m in names}
        mean = {m: _nanmean(v) for m, v in values.items()}
        std = {m: _nanstd(v) for m, v in values.items()}
        objective = np.array([objective_value(r["metrics"], weights) for r in recs])
        point = {k: recs[0]["point"].get(k) for k in _CONFIG_KEYS}
        scan_time = mean["scan_time_s"] if "scan_time_s" in mean else _scan_time(recs[0])
        feasible = (all(c.holds(scan_time if c.metric == "scan_time_s" else mean.get(c.metric, math.nan))
                            for c in constraints) and not saturates(mean))
        sem = {m: _nansem(v) for m, v in values.items()}
        by_repeat = {_repeat_key(r["point"]): float(o) for r, o in zip(recs, objective, strict=True)}
        out.append(Configuration(point=point, ids=tuple(r["id"] for r in recs),
                                 stage="grid" if any(r["stage"] == "grid" for r in recs) else recs[0]["stage"],
                                 metrics_mean=mean, metrics_std=std, objective_mean=_nanmean(objective),
                                 objective_std=_nanstd(objective), scan_time_s=float(scan_time), feasible=feasible,
                                 pareto=False, n=len(recs), metrics_sem=sem, objective_sem=_nansem(objective),
                                 objective_by_repeat=by_repeat))
    front = set(pareto_front([(c.scan_time_s, c.objective_mean) for c in out],
                             [c.feasible and math.isfinite(c.objective_mean) for c in out]))
    return [dataclasses.replace(c, pareto=i in front) for i, c in enumerate(out)]


def saturates(metrics: dict[str, float]) -> bool:
    """Whether a configuration's open beam saturates the detector (its ``saturated_fraction`` is above
    :data:`~lamino.simulate.detector.SATURATED_SHARE`; unknown counts as not)."""
    return metrics.get("saturated_fraction", 0.0) > SATURATED_SHARE


def pareto_front(points: list[tuple[float, float]], allowed: list[bool] | None = None) -> list[int]:
    """Indices of the (cost, quality) pairs no other allowed pair beats: lower or equal cost and higher or equal
    quality, one of them strictly. Sorted by cost."""
    allowed = allowed if allowed is not None else [True] * len(points)
    idx = [i for i in range(len(points)) if allowed[i]]
    front = []
    for i in idx:
        ci, qi = points[i]
        beaten = any((points[j][0] <= ci and points[j][1] >= qi) and (points[j][0] < ci or points[j][1] > qi)
                     for j in idx if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i])


def _repeat_key(point: dict[str, Any]) -> str:
    """The realisation a point belongs to: its sample instance and noise seed."""
    return json.dumps([point.get("phantom_seed"), point.get("seed")])


def paired_difference(best: Configuration, other: Configuration) -> tuple[float, float, int]:
    """Mean and standard error of best − other over the realisations both were evaluated on (the same sample
    instances and noise seeds, so what they share cancels), and their number; the standard error is NaN for fewer
    than 2."""
    return _paired(best.objective_by_repeat, other.objective_by_repeat)


def _paired(a: dict[str, float], b: dict[str, float]) -> tuple[float, float, int]:
    """:func:`paired_difference` of two {realisation: objective} tables."""
    d = np.array([a[k] - b[k] for k in a if k in b], float)
    n = int(np.isfinite(d).sum())
    return (_nanmean(d), _nansem(d), n) if n else (math.nan, math.nan, 0)


def t95(n: int) -> float:
    """Two-sided 95 % Student-t quantile for a mean of ``n`` ≥ 2 values (n − 1 degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


TOLERANCE = 0.02          # relative difference below which two objectives count as equal when the noise is unknown


def feasible_best(configs) -> tuple[list[Configuration], Configuration | None]:
    """The configurations the planner chooses among (feasible, finite objective) and the best of them."""
    feasible = [c for c in configs if c.feasible and math.isfinite(c.objective_mean)]
    return feasible, (max(feasible, key=lambda c: c.objective_mean) if feasible else None)


def indistinguishable(best: Configuration, other: Configuration, tolerance: float = TOLERANCE) -> bool:
    """Whether ``other`` is as good as ``best`` within the noise or within ``tolerance`` × |best|: its paired
    difference (:func:`paired_difference`) lies within its 95 % confidence half-width or the tolerance. Without
    two shared realisations: within max(σ of best, tolerance × |best|) of the best mean."""
    floor = tolerance * abs(best.objective_mean)
    d, se, n = paired_difference(best, other)
    if n >= 2 and math.isfinite(se):
        return d <= max(t95(n) * se, floor)
    return other.objective_mean >= best.objective_mean - max(best.objective_std, floor)


def recommend(configs: list[Configuration], tolerance: float = TOLERANCE) -> tuple[Configuration | None, str]:
    """The fastest feasible configuration indistinguishable from the best (:func:`indistinguishable`: paired
    statistics over the shared sample instances and noise seeds, or within ``tolerance`` of the best). Returns it
    and the reason in words: the best with its confidence interval, how many configurations are as good, and the
    chosen one's paired difference."""
    feasible, best = feasible_best(configs)
    clipped = sum(saturates(c.metrics_mean) for c in configs)
    note = (f" ({clipped} set aside because the open beam saturates the detector: shorten the frames with "
            f"[scanner] max_frame_s, or lower the exposure or the tube current)") if clipped else ""
    if not feasible:
        return None, ("no configuration meets the constraints" + note if configs
                      else "the study has no finished points")
    floor = tolerance * abs(best.objective_mean)
    near = [c for c in feasible if c is best or indistinguishable(best, c, tolerance)]
    choice = min(near, key=lambda c: (c.scan_time_s, -c.objective_mean))
    reason = f"the best objective is {uncertain(best)} at {_describe(best)} ({best.scan_time_s:.0f} s); "
    others = len(near) - 1
    if others:
        reason += f"{others} other configuration{'s' if others > 1 else ''} cannot be told from it"
        reason += ", none of them faster" if choice is best else "; "
    d, se, n = paired_difference(best, choice)
    if choice is best and not others:
        reason += ("no faster configuration comes within noise of it" if best.n > 1 else
                   f"no faster configuration comes within {floor:.2g} of it ({tolerance * 100:g} %: the noise of one "
                   "realisation is unknown)")
    elif choice is best:
        reason += (" (paired 95 % intervals)" if best.n > 1 else
                   f" (within {floor:.2g}, {tolerance * 100:g} %: the noise of one realisation is unknown)")
    else:
        share = choice.scan_time_s / best.scan_time_s
        if n >= 2 and math.isfinite(se):
            half = t95(n) * se
            where = "within the noise" if d <= half else f"within {tolerance * 100:g} %"
            gap = (f"paired over the same {n} realisations it is {d:.2g} ± {se:.2g} lower (95 % CI "
                   f"{d - half:.2g} to {d + half:.2g}), {where}")
        else:
            gap = (f"{best.objective_mean - choice.objective_mean:.2g} lower, within {tolerance * 100:g} % (the "
                   "noise is unknown)")
        reason += (f"the fastest of those, {_describe(choice)}, reaches {uncertain(choice)}: {gap}; in "
                   f"{choice.scan_time_s:.0f} s ({share:.0%} of the time)")
    return choice, reason + f"; {len(feasible)} of {len(configs)} configurations meet the constraints" + note


def analyse(store, weights: dict[str, float] | None = None, grid_only: bool = False) -> PlanResult:
    """Summarise a results store: configurations, Pareto front, best, worst and the recommended protocol.
    ``grid_only``: use only the points of the spec's sweep grid (what the tilt refinement starts from)."""
    spec = store.spec
    records = store.records()
    if grid_only:
        grid = grid_ids(spec)
        records = [r for r in records if r["id"] in grid]
    names = sorted({m for r in records for m in r["metrics"]})
    weights = weights or spec.weights or default_weights(names)
    configs = configurations(records, weights, spec.constraints)
    recommended, reason = recommend(configs)
    ranked = [c for c in configs if c.stage == "grid" and math.isfinite(c.objective_mean)]
    best = max(ranked, key=lambda c: c.objective_mean) if ranked else None
    worst = min(ranked, key=lambda c: c.objective_mean) if ranked else None
    gradient = store.read_extra("gradient") if hasattr(store, "read_extra") else None
    if gradient is not None and (recommended is None or gradient.pop("point", None) != recommended.point):
        gradient = None                                    # computed for another recommendation
    slope = (store.read_extra("tilt_slope") if spec.refine == "gradient" and hasattr(store, "read_extra")
             and not grid_only else None)
    if slope is not None:
        gradient = {**(gradient or {}), **slope}
        reason += _beyond_sweep(spec, recommended, slope)
    return PlanResult(tuple(configs), recommended, reason, best, worst, objective_text(weights), gradient)


def golden_section_max(f, lo: float, hi: float, evaluations: int, known: dict[float, float] | None = None,
                       resolution: float = 0.1, same=None) -> tuple[float, float]:
    """Maximise a unimodal ``f`` on [lo, hi] by golden-section search with at most ``evaluations`` new calls of
    ``f`` (at least 2: the first step probes two points; points are rounded to ``resolution``, ``known`` values
    reused). ``same(x1, x2)``: whether the values at two probed points cannot be told apart (within the noise);
    the search then stops, since narrowing further would follow the noise. Returns (argmax, max) over all values
    seen."""
    seen = dict(known or {})

    def point(x: float) -> float:
        return round(round(x / resolution) * resolution, 10)

    def value(x: float) -> float:
        x = point(x)
        if x not in seen:
            seen[x] = f(x)
        return seen[x]

    a, b = float(lo), float(hi)
    calls = 0
    c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
    while calls < evaluations and b - a > 2 * resolution:
        before = len(seen)
        fc, fd = value(c), value(d)
        calls += len(seen) - before
        if same is not None and point(c) != point(d) and same(point(c), point(d)):
            break
        if fc >= fd:
            b, d = d, c
            c = b - GOLDEN * (b - a)
        else:
            a, c = c, d
            d = a + GOLDEN * (b - a)
        if len(seen) == before:          # both probes were known: the bracket is below resolution
            break
    x = max(seen, key=lambda t: seen[t] if math.isfinite(seen[t]) else -math.inf)
    return x, seen[x]


SLOPE_SPREAD_DEG = 3.0          # the d′ slope is averaged over tilt ± this (the projector's kinks, below)


def objective_slope(spec, config: Configuration, weights: dict[str, float]) -> dict[str, Any]:
    """The objective's slope with respect to tilt at ``config`` (per degree), for an objective of d′ metrics
    (:func:`lamino.studies.gradient.dprime_slopes`): Σ w_m · m̄ · (dd′_m/dα) / d′_m, each metric's measured
    mean m̄ times the relative slope of the linearised chain. The slopes are averaged over
    ±:data:`SLOPE_SPREAD_DEG`: the linear interpolation of the projector makes d′(α) kinked on a scale of about
    a degree, so a single local derivative can point against the trend across a bracket of grid tilts."""
    from lamino.studies.gradient import dprime_slopes

    slopes = dprime_slopes(spec, config.point, list(weights), spread_deg=SLOPE_SPREAD_DEG) or {}
    total = 0.0
    out: dict[str, Any] = {"tilt_deg": float(config.point["tilt_deg"])}
    for m, w in weights.items():
        value, slope = slopes.get(m, (math.nan, math.nan))
        out[f"{m} (linearised chain)"] = value
        out[f"d {m} / d tilt (per deg, linearised chain)"] = slope
        total += w * config.metrics_mean.get(m, math.nan) * slope / value if value > 0 else math.nan
    out["objective_slope_per_deg"] = total          # NaN when a metric has no measured task: no direction
    return out


def _beyond_sweep(spec, recommended: Configuration | None, slope: dict[str, Any]) -> str:
    """A sentence when the recommendation lies at the edge of the swept tilts and the objective's tilt slope
    points out of them (another tilt range could do better), else ""."""
    if recommended is None:
        return ""
    t, tilts, g = recommended.point["tilt_deg"], spec.sweep["tilt_deg"], slope["objective_slope_per_deg"]
    if (t >= max(tilts) and g > 0) or (t <= min(tilts) and g < 0):
        side = "larger" if g > 0 else "smaller"
        return (f" The objective still rises towards {side} tilts at {t:g}° (slope {g:+.3g} per degree from the "
                f"linearised chain): a sweep beyond {t:g}° may find a better tilt.")
    return ""


def grid_ids(spec) -> set[str]:
    """The point ids of the spec's sweep grid (every configuration × seed)."""
    from lamino.studies.spec import point_id

    return {point_id(spec, p) for p in spec.points()}


def refine_tilt(spec, runner) -> list[str]:
    """Golden-section search over tilt around the grid's recommended configuration (its other settings fixed),
    between the neighbouring tilts of the grid; each probe is evaluated for every noise seed. Returns the ids of
    the probed points.

    Idempotent: the search starts from the grid points only (``analyse(store, grid_only=True)``), a tilt counts
    as known only when all its seeds are in the store, and each probe computes just its missing seeds, so a run
    stopped anywhere and rerun probes the same tilts and ends with the same points as a clean run."""
    if spec.refine == "none":
        return []
    tilts = sorted(spec.sweep["tilt_deg"])
    if len(tilts) < 2:
        return []
    start = analyse(runner.store, grid_only=True)
    if start.recommended is None:
        return []
    base = start.recommended.point
    t = base["tilt_deg"]
    below = [x for x in tilts if x < t]
    above = [x for x in tilts if x > t]
    lo, hi = (below[-1] if below else t), (above[0] if above else t)
    weights = spec.weights or default_weights(start.recommended.metrics_mean)
    if spec.refine == "gradient":
        slope = objective_slope(spec, start.recommended, weights)
        runner.store.write_extra("tilt_slope", slope)
        g = slope["objective_slope_per_deg"]
        if math.isfinite(g) and g != 0:              # else the whole bracket, as golden-section search
            lo, hi = (t, hi) if g > 0 else (lo, t)
        if hi - lo <= 0:
            return []                    # the slope points out of the swept tilts: the decision says so
    n_seeds = len(spec.repeats())
    siblings = [c for c in start.configurations
                if len(set(c.ids)) == n_seeds and all(c.point[k] == base[k] for k in _CONFIG_KEYS if k != "tilt_deg")]
    known = {float(c.point["tilt_deg"]): c.objective_mean for c in siblings}
    by_repeat = {float(c.point["tilt_deg"]): c.objective_by_repeat for c in siblings}
    new_ids: list[str] = []

    def f(tilt: float) -> float:
        points = [spec.complete({**base, "tilt_deg": tilt, **repeat}) for repeat in spec.repeats()]
        ids = runner.run(points, stage="refine", desc=f"refine tilt {tilt:g}°")
        new_ids.extend(ids)
        recs = [runner.store.record(i) for i in ids]
        by_repeat[tilt] = {_repeat_key(r["point"]): objective_value(r["metrics"], weights) for r in recs}
        return _nanmean(np.array(list(by_repeat[tilt].values())))

    def same(t1: float, t2: float) -> bool:
        """The two tilts' paired difference is within its 95 % interval (needs two realisations)."""
        d, se, n = _paired(by_repeat.get(t1, {}), by_repeat.get(t2, {}))
        return n >= 2 and math.isfinite(se) and abs(d) <= t95(n) * se

    golden_section_max(f, lo, hi, spec.refine_evaluations, known, same=same)
    return new_ids


def _describe(c: Configuration) -> str:
    p = c.point
    text = f"tilt {p['tilt_deg']:g}°, {p['n_views']} views × {p['exposure_s']:.3g} s"
    if p.get("kvp") is not None:
        text += f" at {p['kvp']:g} kV"
    text += f" ({p['method']})"
    return text + (" by limited-angle CT" if p.get("trajectory") == "limited-angle" else "")


def _scan_time(record: dict[str, Any]) -> float:
    from lamino.simulate import Scanner

    return Scanner.from_dict(record["provenance"]["scanner"]).scan_time_s(record["point"]["n_views"])


def _nanmean(v: np.ndarray) -> float:
    v = np.asarray(v, float)
    return float(np.mean(v[np.isfinite(v)])) if np.isfinite(v).any() else math.nan


def _nansem(v: np.ndarray) -> float:
    """Standard error of the mean of the finite values (sample standard deviation / √n); NaN for fewer than 2."""
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(np.std(v, ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def uncertain(c: Configuration) -> str:
    """A configuration's objective with its uncertainty in words: ``0.5876 ± 0.012 (standard error; 95 % CI
    0.5494 to 0.6258, 4 repeats)``, or, from one realisation, ``0.5876 (one realisation: uncertainty unknown)``,
    never "± 0"."""
    if c.n < 2 or not math.isfinite(c.objective_sem):
        return f"{c.objective_mean:.4g} (one realisation: uncertainty unknown)"
    half = t95(c.n) * c.objective_sem
    return (f"{c.objective_mean:.4g} ± {c.objective_sem:.2g} (standard error; 95 % CI {c.objective_mean - half:.4g} "
            f"to {c.objective_mean + half:.4g}, {c.n} repeats)")


def write_configurations(path: str, configs: list[Configuration]) -> str:
    """``configurations.csv``: one row per configuration, its sweep values, ``n`` (repeats), scan time,
    feasibility, Pareto membership, the objective's mean and standard error, and ``<metric>_mean`` /
    ``<metric>_sem`` of every metric (a standard error is empty with one repeat: unknown)."""
    import csv

    from lamino.io.files import atomic_write

    names = sorted({m for c in configs for m in c.metrics_mean})
    with atomic_write(path, ".csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*_CONFIG_KEYS, "n", "scan_time_s", "feasible", "pareto", "objective_mean",
                    "objective_sem", *(f"{m}_{s}" for m in names for s in ("mean", "sem"))])
        for c in configs:
            w.writerow([*(c.point.get(k) for k in _CONFIG_KEYS), c.n, c.scan_time_s, c.feasible, c.pareto,
                        _cell(c.objective_mean), _cell(c.objective_sem),
                        *(_cell(v) for m in names for v in (c.metrics_mean.get(m, math.nan),
                                                             c.metrics_sem.get(m, math.nan)))])
    return path


def _cell(x: float) -> str:
    return "" if not math.isfinite(x) else repr(float(x))


def _nanstd(v: np.ndarray) -> float:
    v = np.asarray(v, float)
    return float(np.std(v[np.isfinite(v)])) if np.isfinite(v).sum() > 1 else 0.0

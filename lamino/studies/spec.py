"""Study specification: a TOML file that names the phantom, scanner, geometry, reconstruction, sweep, metrics and
objective of an acquisition study, validated into a frozen :class:`StudySpec`.

Layout (every table but ``[study]``, ``[phantom]``, ``[scanner]`` and ``[sweep]`` is optional)::

    [study]      name = "ssb-cracks", description = "…"
    [phantom]    name = "ssb_pellet", seed = 0, params = { thickness_mm = 0.6, … }; or seeds = [0, 1, 2] or
                 instances = 3: independent sample instances (crack and pore placements), averaged over like
                 the noise seeds
    [scanner]    preset = "nikon_xt225", and any Scanner/Detector field: kvp = 100, exposure_s = 1.0, …
    [geometry]   tilt_deg = 30, n_views = 360 (defaults for axes not swept), and Geometry keywords:
                 sod, sdd, det_shape, det_spacing, cor_offset, …
    [simulate]   keywords of lamino.simulate.simulate: noise, blur, focal_spot, n_bins, method, scatter_spr
    [recon]      method = "fbp" (or a list: then it is a sweep axis), iterations, lam, filter,
                 grid = "auto" | { shape = [nz, ny, nx], voxel_size = 0.04, center = [cz, cy, cx] },
                 rings = true (suppress ring artefacts before reconstructing; default false)
    [sweep]      tilt_deg = [...], n_views = [...], exposure_s = [...], kvp = [...],
                 trajectory = ["cl", "limited-angle"] (limited-angle CT of the flat sample with the same
                 missing Fourier fraction as CL at tilt_deg; default "cl"),
                 time_budget_s = 3600 (exposure per view = budget / n_views − readout; not with exposure_s),
                 seeds = [0, 1, 2] or repeats = 3 (noise repeats: at most 100, seeds in [0, 2**32))
    [metrics]    names = [...] (default: every metric that applies to the phantom)
    [objective]  weights = { crack_dice = 1.0, rmse = -10.0 } (score = Σ weight × metric; negative minimises),
                 constraints = ["crack_dice >= 0.8", "scan_time_s <= 7200"]
    [planner]    refine = "golden" | "gradient" | "none", refine_evaluations = 4 (new tilts probed, ≥ 2);
                 "gradient" (an objective of d′ metrics only) searches the half of the bracket the objective's
                 tilt slope points to (lamino.studies.gradient.dprime_slopes),
                 gradient = false (true: d(expected RMSE)/d(tilt) at the recommendation, lamino.studies.gradient)
    [[task]]     name = "overhang", shape = "sphere" | "disk" | "cylinder" | "plane", size_mm = [...],
                 normal = [0, 0, 1], material = "void", at_mm = [x, y, z] or label = "electrode": a detection
                 task scored as dprime_<name> (lamino.studies.tasks; repeat the table for more tasks)

Every error names the file, the key and what is allowed. Units: mm, keV, degrees, seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import tomllib
from typing import Any

from lamino._checks import SEED_LIMIT
from lamino.studies.tasks import median_dprime_metric, parse_tasks

MAX_VIEWS = 100_000                        # projections of one point (as lamino.studies.dataset.MAX_VIEWS)
SWEEP_AXES = ("tilt_deg", "n_views", "exposure_s", "kvp", "method", "trajectory")
TRAJECTORIES = ("cl", "limited-angle")
_SECTIONS = ("study", "phantom", "scanner", "geometry", "simulate", "recon", "sweep", "metrics", "objective", "planner",
             "task")
_SIMULATE_KEYS = ("noise", "blur", "focal_spot", "n_bins", "method", "scatter_spr", "scatter_sigma_mm", "voxel_size",
                  "exact_bins")
_RECON_KEYS = ("method", "iterations", "lam", "filter", "grid", "rings")
_STUDY_KEYS = ("name", "description")
_SIMULATE_BOOLS = ("noise", "blur", "focal_spot", "exact_bins")
_SIMULATE_METHODS = ("exact", "voxel")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
REFINE = ("golden", "gradient", "none")
#: most noise seeds (``[sweep] seeds`` or ``repeats``) a study may ask for: each multiplies every point of the sweep
MAX_SEEDS = 100


@dataclasses.dataclass(frozen=True)
class Constraint:
    """``metric op value``, e.g. ``crack_dice >= 0.8``; holds for the mean over noise repeats."""

    metric: str
    op: str
    value: float

    def holds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        return {"<=": x <= self.value, ">=": x >= self.value, "<": x < self.value, ">": x > self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclasses.dataclass(frozen=True, eq=False)
class StudySpec:
    """A validated study. ``points()`` lists the grid of the sweep; ``fingerprint`` identifies what every point
    shares (all but the view counts, exposures, voltages, methods, seeds, metrics, objective and planner), so a
    results store knows its study. The swept tilts and trajectories are part of it: together they fix the
    region every point is scored on (:func:`lamino.studies.build.measured_region`)."""

    name: str
    description: str
    phantom: dict[str, Any]
    scanner: dict[str, Any]
    geometry: dict[str, Any]
    simulate: dict[str, Any]
    recon: dict[str, Any]
    sweep: dict[str, list]
    seeds: tuple[int, ...]
    time_budget_s: float | None
    metrics: tuple[str, ...] | None
    weights: dict[str, float]
    constraints: tuple[Constraint, ...]
    refine: str
    refine_evaluations: int
    gradient: bool = False
    tasks: tuple[dict[str, Any], ...] = ()
    source: str = ""
    text: str = ""

    @property
    def fingerprint(self) -> str:
        shared = dict(phantom=self.phantom, scanner=self.scanner, geometry=self.geometry, simulate=self.simulate,
                      recon={k: v for k, v in self.recon.items() if k != "method"},
                      time_budget_s=self.time_budget_s, tilt_deg=sorted(self.sweep["tilt_deg"]),
                      trajectory=sorted(self.sweep["trajectory"]))
        if self.tasks:                   # the d′ of user tasks is scored at every point
            shared["tasks"] = list(self.tasks)
        return hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["constraints"] = [str(c) for c in self.constraints]
        d.pop("text")
        return d

    def axes(self) -> dict[str, list]:
        """The sweep axes with their values, defaults filled in (one value for an axis not swept)."""
        return {name: list(self.sweep[name]) for name in SWEEP_AXES}

    def repeats(self) -> list[dict[str, int]]:
        """The realisations every configuration is evaluated for: each noise ``seed``, and with ``[phantom]
        seeds`` / ``instances`` each sample instance (``phantom_seed``: other crack and pore placements) too."""
        if "seeds" not in self.phantom:
            return [{"seed": s} for s in self.seeds]
        return [{"phantom_seed": i, "seed": s} for i in self.phantom["seeds"] for s in self.seeds]

    def points(self) -> list[dict[str, Any]]:
        """Every (tilt, views, exposure, kVp, method) combination of the sweep grid × every realisation
        (:meth:`repeats`), in a stable order."""
        axes = self.axes()
        out = []
        for values in itertools.product(*axes.values()):
            for repeat in self.repeats():
                out.append(self.complete({**dict(zip(axes, values, strict=True)), **repeat}))
        return out

    def complete(self, point: dict[str, Any]) -> dict[str, Any]:
        """``point`` with the exposure implied by a time budget (exposure = budget / n_views − readout)."""
        point = dict(point)
        if self.time_budget_s is not None:
            readout = float(self.scanner.get("readout_s", 0.0) or 0.0)
            exposure = self.time_budget_s / point["n_views"] - readout
            if exposure <= 0:
                raise ValueError(f"{self.source}: [sweep] time_budget_s = {self.time_budget_s:g} leaves no exposure "
                                 f"for n_views = {point['n_views']} (readout {readout:g} s per view)")
            point["exposure_s"] = exposure
        return point


def point_id(spec: StudySpec, point: dict[str, Any]) -> str:
    """Stable identifier of one sweep point of one study (12 hex digits)."""
    key = json.dumps({"study": spec.fingerprint, **{k: point[k] for k in sorted(point)}}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def load_spec(path: str) -> StudySpec:
    """Read and validate a study TOML file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"study file {path!r} does not exist or is not a file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a valid TOML file ({exc})") from None
    return parse_spec(data, source=path, text=raw.decode("utf-8"))


def parse_spec(data: dict[str, Any], source: str = "<study>", text: str = "") -> StudySpec:
    """Validate a study given as a dict (the parsed TOML)."""
    err = _Errors(source)
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        err.fail(f"[{unknown[0]}]", "is not a known table", f"use {', '.join(_SECTIONS)}")
    for name in ("study", "phantom", "scanner", "sweep"):
        if not isinstance(data.get(name), dict):
            err.fail(f"[{name}]", "is missing", "every study needs [study], [phantom], [scanner] and [sweep]")
    study = _keys(data["study"], _STUDY_KEYS, "study", err)
    name = study.get("name")
    if not isinstance(name, str) or not name.strip():
        err.fail("[study] name", f"= {name!r}", "give a non-empty string")
    if (os.path.isabs(name) or "/" in name or "\\" in name or name.strip() in (".", "..")
            or name.strip().startswith(".")):
        err.fail("[study] name", f"= {name!r}", "give a plain name without path separators (it names the results "
                 "folder results/<name>); choose the folder with --out")
    description = study.get("description", "")
    if not isinstance(description, str):
        err.fail("[study] description", f"= {description!r}", "give a string")
    phantom = _phantom(data["phantom"], err)
    scanner = _scanner(data["scanner"], err)
    geometry = dict(_table(data, "geometry", err))
    for key in ("tilt_deg", "n_views"):
        geometry.pop(key, None)
    defaults = _table(data, "geometry", err)
    tilt, views = defaults.get("tilt_deg", 30.0), defaults.get("n_views", 360)
    if isinstance(tilt, bool) or not isinstance(tilt, int | float) or not 0 <= tilt < 90:
        err.fail("[geometry] tilt_deg", f"= {tilt!r}", "give a tilt in [0, 90) degrees")
    if isinstance(views, bool) or not isinstance(views, int) or not 2 <= views <= MAX_VIEWS:
        err.fail("[geometry] n_views", f"= {views!r}", f"give an integer view count ≥ 2 (a reconstruction needs 2) and "
                 f"≤ {MAX_VIEWS}")
    simulate = _simulate(_table(data, "simulate", err), err)
    recon = _recon(_table(data, "recon", err), err)
    sweep, seeds, budget = _sweep(data["sweep"], defaults, scanner, recon, err)
    tasks = parse_tasks(data.get("task"), err.fail)
    names = tuple(t["name"] for t in tasks)
    metrics = _metrics(_table(data, "metrics", err), names, err)
    weights, constraints = _objective(_table(data, "objective", err), names, err)
    refine, n_refine, gradient = _planner(_table(data, "planner", err), err)
    if refine == "gradient" and (not weights or not all(median_dprime_metric(m) for m in weights)):
        err.fail("[planner] refine", "= 'gradient'", "give [objective] weights on d′ metrics only (crack_dprime…, "
                 "pore_dprime, dprime_<task>), whose tilt slope lamino computes, or refine = \"golden\"")
    recon.setdefault("grid", "auto")
    _check_grid(recon["grid"], err)
    _check_objective_metrics(phantom, metrics, weights, constraints, names, err)
    if "limited-angle" in sweep["trajectory"] and "fbp" in sweep["method"]:
        err.fail("[recon] method", "\"fbp\" with [sweep] trajectory \"limited-angle\"",
                 "FBP/FDK needs a circular trajectory: use sirt, cgls or fista-tv for limited-angle CT")
    spec = StudySpec(name=name.strip(), description=description, phantom=phantom,
                     scanner=scanner, geometry=geometry, simulate=simulate, recon=recon, sweep=sweep, seeds=seeds,
                     time_budget_s=budget, metrics=metrics, weights=weights, constraints=constraints, refine=refine,
                     refine_evaluations=n_refine, gradient=gradient, tasks=tasks, source=source,
                     text=text)
    spec.points()                     # a time budget too small for some n_views fails here, naming the file
    _check_geometry(spec, err)
    _check_tasks(spec)
    return spec


def _simulate(table: dict, err: _Errors) -> dict:
    """[simulate]: known keys with values of the right type (booleans must be TOML true/false)."""
    _keys(table, _SIMULATE_KEYS, "simulate", err)

    def number(v):
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    for key, value in table.items():
        if key in _SIMULATE_BOOLS and not isinstance(value, bool):
            err.fail(f"[simulate] {key}", f"= {value!r}", "give true or false (a TOML boolean, not a string)")
        if key == "n_bins" and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            err.fail("[simulate] n_bins", f"= {value!r}", "give an integer ≥ 1")
        if key == "method" and value not in _SIMULATE_METHODS:
            err.fail("[simulate] method", f"= {value!r}", f"choose one of {', '.join(_SIMULATE_METHODS)}")
        if key == "scatter_spr" and (not number(value) or value < 0):
            err.fail("[simulate] scatter_spr", f"= {value!r}", "give a scatter-to-primary ratio ≥ 0")
        if key in ("scatter_sigma_mm", "voxel_size") and (not number(value) or value <= 0):
            err.fail(f"[simulate] {key}", f"= {value!r}", "give a length > 0 mm")
    return dict(table)


def _recon(table: dict, err: _Errors) -> dict:
    """[recon]: known keys; iterations, lam and filter checked here (method and grid elsewhere)."""
    from lamino.recon.filters import FILTERS

    _keys(table, _RECON_KEYS, "recon", err)
    n = table.get("iterations")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        err.fail("[recon] iterations", f"= {n!r}", "give an integer ≥ 1")
    lam = table.get("lam")
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, int | float) or not math.isfinite(lam)
                            or lam < 0):
        err.fail("[recon] lam", f"= {lam!r}", "give a TV weight ≥ 0")
    if "filter" in table and table["filter"] not in FILTERS:
        err.fail("[recon] filter", f"= {table['filter']!r}", f"choose one of {', '.join(FILTERS)}")
    if "rings" in table and not isinstance(table["rings"], bool):
        err.fail("[recon] rings", f"= {table['rings']!r}", "give true (suppress ring artefacts) or false")
    return dict(table)


class _Errors:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, what: str, allowed: str):
        raise ValueError(f"{self.source}: {key} {what} is not allowed: {allowed}")


def _table(data: dict, name: str, err: _Errors) -> dict:
    value = data.get(name, {})
    if not isinstance(value, dict):
        err.fail(f"[{name}]", f"= {value!r}", "give a table")
    return value


def _keys(table: dict, allowed: tuple[str, ...], section: str, err: _Errors) -> dict:
    for key in table:
        if key not in allowed:
            err.fail(f"[{section}] {key}", "(unknown key)", f"use {', '.join(allowed)}")
    return dict(table)


def _phantom(table: dict, err: _Errors) -> dict:
    from lamino import phantoms

    name = table.get("name")
    if name not in phantoms.names():
        err.fail("[phantom] name", f"= {name!r}", f"choose one of {', '.join(phantoms.names())}")
    _keys(table, ("name", "seed", "seeds", "instances", "params"), "phantom", err)
    given = [k for k in ("seed", "seeds", "instances") if k in table]
    if len(given) > 1:
        err.fail(f"[phantom] {given[0]}", f"together with {given[1]}", "give one of seed, seeds or instances")
    seeds = None
    if "instances" in table:
        n = table["instances"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SEEDS:
            err.fail("[phantom] instances", f"= {n!r}", f"give an integer from 1 to {MAX_SEEDS} (sample instances)")
        seeds = list(range(n))
    elif "seeds" in table:
        seeds = table["seeds"]
        if (not isinstance(seeds, list) or not 1 <= len(seeds) <= MAX_SEEDS or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < SEED_LIMIT for s in seeds)):
            err.fail("[phantom] seeds", f"= {seeds!r}", f"give 1 to {MAX_SEEDS} different integers from 0 to "
                     f"{SEED_LIMIT - 1} (one sample instance each)")
    seed = seeds[0] if seeds else table.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        err.fail("[phantom] seed", f"= {seed!r}", f"give an integer from 0 to {SEED_LIMIT - 1}")
    params = table.get("params", {})
    if not isinstance(params, dict):
        err.fail("[phantom] params", f"= {params!r}", "give a table of the phantom's keyword arguments")
    try:
        phantoms.get(name, seed=seed, **params)
    except (TypeError, ValueError) as exc:
        err.fail("[phantom] params", f"({exc})", "see 'lamino phantom show NAME' for the parameters")
    out = {"name": name, "seed": seed, "params": dict(params)}
    return out if seeds is None else {**out, "seeds": list(seeds)}


def _scanner(table: dict, err: _Errors) -> dict:
    from lamino.simulate import Scanner

    preset = table.get("preset")
    if preset not in Scanner.presets():
        err.fail("[scanner] preset", f"= {preset!r}", f"choose one of {', '.join(Scanner.presets())}")
    overrides = {k: v for k, v in table.items() if k != "preset"}
    try:
        Scanner.preset(preset, **overrides)
    except (TypeError, ValueError) as exc:
        key = next((k for k in overrides if not _override_ok(preset, k, overrides[k])), None)   # the one at fault
        err.fail(f"[scanner] {key}" if key else "[scanner]", f"override ({exc})",
                 "give Scanner or Detector fields (see 'lamino scanners')")
    return dict(table)


def _override_ok(preset: str, key: str, value: Any) -> bool:
    from lamino.simulate import Scanner

    try:
        Scanner.preset(preset, **{key: value})
    except (TypeError, ValueError):
        return False
    return True


def _values(table: dict, key: str, default: Any, check, allowed: str, err: _Errors) -> list:
    values = table.get(key, [default])
    if not isinstance(values, list):
        values = [values]
    if not values:
        err.fail(f"[sweep] {key}", "= []", "give at least one value")
    for v in values:
        if isinstance(v, bool) or not check(v):
            err.fail(f"[sweep] {key}", f"value {v!r}", allowed)
    if len(set(values)) != len(values):
        err.fail(f"[sweep] {key}", f"= {values!r}", "give each value once")
    return values


def _sweep(table: dict, defaults: dict, scanner: dict, recon: dict, err: _Errors):
    from lamino.recon import METHODS
    from lamino.simulate import Scanner

    allowed = (*(a for a in SWEEP_AXES if a != "method"), "time_budget_s", "seeds", "repeats")
    _keys(table, allowed, "sweep", err)
    base = Scanner.preset(scanner["preset"], **{k: v for k, v in scanner.items() if k != "preset"})

    def number(v):
        return isinstance(v, int | float) and math.isfinite(v)

    sweep = {
        "tilt_deg": _values(table, "tilt_deg", defaults.get("tilt_deg", 30.0),
                            lambda v: number(v) and 0 <= v < 90, "give tilts in [0, 90) degrees", err),
        "n_views": _values(table, "n_views", defaults.get("n_views", 360),
                           lambda v: isinstance(v, int) and 2 <= v <= MAX_VIEWS,
                           f"give integer view counts ≥ 2 (at most {MAX_VIEWS})", err),
        "exposure_s": _values(table, "exposure_s", base.exposure_s, lambda v: number(v) and v > 0,
                              "give exposures > 0 s", err),
        "kvp": _values(table, "kvp", base.kvp, lambda v: v is None or (number(v) and v > 0),
                       "give tube voltages > 0 kV", err),
    }
    sweep["trajectory"] = _values(table, "trajectory", "cl", lambda v: v in TRAJECTORIES,
                                  f"choose from {', '.join(TRAJECTORIES)}", err)
    methods = recon.pop("method", "fbp")
    methods = methods if isinstance(methods, list) else [methods]
    for m in methods:
        if m not in METHODS:
            err.fail("[recon] method", f"= {m!r}", f"choose from {', '.join(METHODS)}")
    sweep["method"] = methods
    budget = table.get("time_budget_s")
    if budget is not None:
        if not number(budget) or budget <= 0:
            err.fail("[sweep] time_budget_s", f"= {budget!r}", "give a scan time > 0 s")
        if "exposure_s" in table:
            err.fail("[sweep] time_budget_s", "together with exposure_s", "give one of the two")
        sweep["exposure_s"] = [None]
    if "seeds" in table and "repeats" in table:
        err.fail("[sweep] seeds", "together with repeats", "give one of the two")
    if "repeats" in table:
        n = table["repeats"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SEEDS:
            err.fail("[sweep] repeats", f"= {n!r}", f"give an integer from 1 to {MAX_SEEDS}")
        seeds = tuple(range(n))
    else:
        seeds = tuple(_values(table, "seeds", 0, lambda v: isinstance(v, int) and 0 <= v < SEED_LIMIT,
                              f"give integer seeds from 0 to {SEED_LIMIT - 1}", err))
        if len(seeds) > MAX_SEEDS:
            err.fail("[sweep] seeds", f"has {len(seeds)} values", f"give at most {MAX_SEEDS} noise seeds")
    return sweep, seeds, (float(budget) if budget is not None else None)


def _metrics(table: dict, tasks: tuple[str, ...], err: _Errors) -> tuple[str, ...] | None:
    from lamino.studies.scoring import METRICS, is_metric

    _keys(table, ("names",), "metrics", err)
    names = table.get("names")
    if names is None:
        return None
    if not isinstance(names, list) or not names:
        err.fail("[metrics] names", f"= {names!r}", "give a non-empty list of metric names")
    for n in names:
        if not is_metric(n, tasks):
            err.fail("[metrics] names", f"entry {n!r}", f"choose from {', '.join(_allowed(METRICS, tasks))}")
    return tuple(names)


def _allowed(metrics, tasks: tuple[str, ...]) -> list[str]:
    return [*metrics, *(f"dprime_{n}" for n in tasks)]


def _objective(table: dict, tasks: tuple[str, ...], err: _Errors):
    from lamino.studies.scoring import METRIC_RANGES, METRICS, is_metric

    _keys(table, ("weights", "constraints"), "objective", err)
    weights = table.get("weights", {})
    if not isinstance(weights, dict):
        err.fail("[objective] weights", f"= {weights!r}", "give a table metric = weight")
    for k, w in weights.items():
        if not is_metric(k, tasks):
            err.fail("[objective] weights", f"key {k!r}", f"choose from {', '.join(_allowed(METRICS, tasks))}")
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w == 0:
            err.fail(f"[objective] weights.{k}", f"= {w!r}", "give a finite non-zero number (negative minimises)")
    constraints = []
    items = table.get("constraints", [])
    if not isinstance(items, list):
        err.fail("[objective] constraints", f"= {items!r}", "give a list of strings like \"crack_dice >= 0.8\"")
    for text in items:
        m = _CONSTRAINT.match(text) if isinstance(text, str) else None
        if not m:
            err.fail("[objective] constraints", f"entry {text!r}", "write 'metric op value' with op <=, >=, < or >")
        if not is_metric(m.group(1), tasks):
            err.fail("[objective] constraints", f"metric {m.group(1)!r}",
                     f"choose from {', '.join(_allowed(METRICS, tasks))}")
        try:
            value = float(m.group(3))
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            err.fail("[objective] constraints", f"entry {text!r}", "give a finite number as the threshold")
        c = Constraint(m.group(1), m.group(2), value)
        lo, hi = METRIC_RANGES.get(c.metric, (-math.inf, math.inf))
        if ((c.op == ">=" and value > hi) or (c.op == ">" and value >= hi) or (c.op == "<=" and value < lo)
                or (c.op == "<" and value <= lo)):
            err.fail("[objective] constraints", f"entry {text!r} (no value of {c.metric} can meet it)",
                     f"{c.metric} lies in [{lo:g}, {hi:g}]; give a threshold inside that range")
        constraints.append(c)
    return {k: float(v) for k, v in weights.items()}, tuple(constraints)


def _check_objective_metrics(phantom: dict, metrics, weights: dict, constraints, tasks: tuple[str, ...],
                             err: _Errors) -> None:
    """Weighted and constrained metrics must be computed for this phantom (crack metrics need cracks, star
    metrics the Siemens star) and be among [metrics] names when those are given."""
    from lamino import phantoms
    from lamino.studies.scoring import applicable

    available = set(applicable(phantoms.get(phantom["name"], seed=phantom["seed"], **phantom["params"]), tasks))
    if metrics is not None:
        available &= set(metrics)
    for key, names in (("weights", list(weights)), ("constraints", [c.metric for c in constraints])):
        for name in names:
            if name not in available and not (key == "constraints" and name == "scan_time_s"):
                err.fail(f"[objective] {key}", f"metric {name!r}", f"use metrics computed for {phantom['name']!r}"
                         f" ({', '.join(sorted(available))})")


def _planner(table: dict, err: _Errors):
    _keys(table, ("refine", "refine_evaluations", "gradient"), "planner", err)
    refine = table.get("refine", "golden")
    if refine not in REFINE:
        err.fail("[planner] refine", f"= {refine!r}", f"choose one of {', '.join(REFINE)}")
    n = table.get("refine_evaluations", 4)
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 50:
        err.fail("[planner] refine_evaluations", f"= {n!r}", "give an integer in 2…50 (the first step probes 2 tilts)")
    gradient = table.get("gradient", False)
    if not isinstance(gradient, bool):
        err.fail("[planner] gradient", f"= {gradient!r}", "give true or false")
    return refine, n, gradient


def _check_tasks(spec: StudySpec) -> None:
    """Place every user task on the phantom (first instance) and the study grid: one outside the phantom or the
    measured region, at an unknown label, or of its surroundings' material fails here, naming the file."""
    if not spec.tasks:
        return
    from lamino import phantoms
    from lamino.studies.build import measured_region, study_grid
    from lamino.studies.tasks import user_tasks

    p = spec.phantom
    phantom = phantoms.get(p["name"], seed=p.get("seeds", [p["seed"]])[0], **p["params"])
    grid = study_grid(spec)
    try:
        user_tasks(spec.tasks, phantom, phantom.voxelize(grid), measured_region(spec, grid))
    except ValueError as exc:
        raise ValueError(f"{spec.source}: [[task]] {exc}") from None


def _check_geometry(spec: StudySpec, err: _Errors) -> None:
    """Build what every point is made of now (each scanner setting, each tilt and trajectory's geometry, the
    study grid), so a bad [scanner], [geometry] or grid value fails at parse time, naming the table."""
    from lamino.studies.build import build_geometry, build_scanner, study_grid

    def each(key, build, table: str, what, allowed: str) -> None:     # once per distinct key of the points
        seen: set = set()
        for p in spec.points():
            if key(p) in seen:
                continue
            seen.add(key(p))
            try:
                build(spec, p)
            except (TypeError, ValueError) as exc:
                err.fail(table, f"{what(p)}({exc})", allowed)

    each(lambda p: (p["exposure_s"], p.get("kvp")), build_scanner, "[scanner]",
         lambda p: f"with exposure {p['exposure_s']:g} s and kVp {p.get('kvp')} ",
         "give Scanner or Detector fields and sweep values the preset accepts")
    each(lambda p: (p["tilt_deg"], p["n_views"], p.get("trajectory", "cl")), build_geometry, "[geometry]",
         lambda p: "", "give Geometry keywords: sod, sdd, det_shape, det_spacing, cor_offset, …")
    try:
        grid = study_grid(spec)
    except (TypeError, ValueError) as exc:
        err.fail("[recon] grid", f"({exc})", "give \"auto\" or { shape = [nz, ny, nx], voxel_size = mm }")
    _check_measured(spec, grid, err)


def _check_measured(spec: StudySpec, grid, err: _Errors) -> None:
    """A grid outside what a trajectory of the sweep measures is an error (one that extends past it is warned of
    when the study runs: :func:`lamino.studies.build.grid_coverage`)."""
    from lamino.studies.build import grid_coverage

    for tilt, _, _, never in grid_coverage(spec, grid):
        if never >= 1.0:
            err.fail("[recon] grid", f"at {grid.center} mm lies outside what the scan measures at tilt {tilt:g}° "
                     "(no voxel is on the detector in any view) and", "centre it on the measured region")


def _check_grid(grid: Any, err: _Errors) -> None:
    if grid == "auto":
        return
    if not isinstance(grid, dict) or "shape" not in grid or "voxel_size" not in grid:
        err.fail("[recon] grid", f"= {grid!r}", "give \"auto\" or { shape = [nz, ny, nx], voxel_size = mm }")
    _keys(grid, ("shape", "voxel_size", "center"), "recon.grid", err)
    from lamino.studies.build import fixed_grid

    try:
        fixed_grid(grid)
    except (TypeError, ValueError) as exc:
        err.fail("[recon] grid", f"({exc})", "give shape = [nz, ny, nx] and voxel_size > 0 mm")

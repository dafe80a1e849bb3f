"""Static HTML report of an acquisition study: one folder with ``index.html`` and its PNG figures.

``write_report(store, plan, out)`` writes a self-contained page (inline CSS, no scripts, no external resources):

* **Decision**: the recommended configuration, its objective with its uncertainty (standard error and 95 %
  interval, or "one realisation: uncertainty unknown"), the configurations the planner's paired statistics cannot
  tell from the best, and what would change the decision (more repeats, a best at the edge of the swept grid,
  constraints that rule out higher scores);
* the recommended protocol, the objective and constraints;
* heatmaps over tilt (x) × number of views (y) of the objective (first, larger) and of the metrics (those in the
  objective and constraints first), each cell the mean ± standard error over the repeats (the mean only from one
  realisation), grid-stage configurations only, other swept axes held at the recommended configuration's values,
  the recommended cell outlined; metrics that are NaN everywhere or constant are named in one line each, not drawn;
* the Pareto plot of objective (mean ± standard error) against scan time, infeasible configurations grey, the
  front as a step line and the recommended configuration highlighted;
* the central orthogonal slices of the recommended, best and worst configurations beside the truth, on one
  grey scale, and a close-up of the recommended configuration's hardest detection task (truth, noisy
  reconstruction and expected signal) with its d′, when the results hold one;
* the Fourier coverage of the recommended configuration's geometry;
* a table of every configuration.

Figures sit in a responsive grid and tables scroll inside their own box, so the page never scrolls sideways. The
report is built in a temporary folder beside ``out`` and renamed into place, so a crash never leaves half a
report; the folder is named like every lamino temporary (``.<out name>.lamino-<pid>-…``,
:func:`lamino.io.files.temporary_folder`), so those of a killed writer are deleted by the next report or study
run there.
"""

from __future__ import annotations

import datetime
import html
import math
import os
import re
import shutil
from typing import Any, NamedTuple

import numpy as np

from lamino._plotting import measured_planes, save_figure, shade_unmeasured, show_slice
from lamino.geometry import Geometry, VolumeGrid
from lamino.io.files import clean_temporaries, temporary_folder
from lamino.studies.metrics.coverage import plot_fourier_coverage
from lamino.studies.metrics.detectability import ROSE_DPRIME, ZONE_RADIUS
from lamino.studies.planner import (
    TOLERANCE,
    Configuration,
    PlanResult,
    feasible_best,
    indistinguishable,
    paired_difference,
    saturates,
    t95,
    uncertain,
)
from lamino.studies.scoring import METRICS
from lamino.studies.store import SLICES, Closeup, ResultStore

DPI = 110
CONSTANT_RTOL = 1e-9                    # a metric whose values agree to this relative tolerance is constant

_AXIS_LABELS = {"tilt_deg": "tilt α (°)", "n_views": "views", "exposure_s": "exposure (s)", "kvp": "kVp",
                "method": "method", "trajectory": "trajectory"}
_OTHER_AXES = ("exposure_s", "kvp", "method", "trajectory")

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1240px;
color:#222;line-height:1.45;padding:0 1em;overflow-wrap:anywhere}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}h3{margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;overflow-wrap:normal}th{background:#f0f0f0}
td.l,th.l{text-align:left}
.scroll{overflow-x:auto;max-width:100%}.wide table{font-size:.85em}.wide td{white-space:nowrap}
tr.rec td{background:#fff4cc;font-weight:600}tr.infeasible td{color:#999}
.none{background:#fde2e2;border:2px solid #c0392b;padding:.8em 1em;font-weight:600}
.reason{background:#eef5fb;border-left:4px solid #2980b9;padding:.6em 1em}
.decision{background:#f3f9f1;border-left:4px solid #27ae60;padding:.5em 1em .5em 2.2em;margin:.6em 0}
.decision li{margin:.25em 0}.decision ul ul{margin:.2em 0}
.note{font-size:.9em;color:#444;background:#fafafa;border-left:3px solid #bbb;padding:.3em .8em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd;display:block}
figcaption{font-size:.85em;color:#444;margin-top:.3em}
.grid{display:grid;grid-template-columns:repeat(3,minmax(0,1fr));gap:1em 1.2em;align-items:start;
grid-auto-flow:row dense}
.grid figure{margin:0;min-width:0}.grid figure.objective{grid-column:span 2;grid-row:span 2}
.grid figure.key img{border:2px solid #2980b9}
@media (max-width:900px){.grid{grid-template-columns:repeat(2,minmax(0,1fr))}}
@media (max-width:600px){.grid{grid-template-columns:minmax(0,1fr)}.grid figure.objective{grid-column:auto;
grid-row:auto}}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em}
code{overflow-wrap:anywhere}.desc{color:#555}footer{margin-top:2em;font-size:.8em;color:#777}
"""


# ---------------------------------------------------------------------------------------------- public API
def metric_unit(name: str) -> str:
    """Display unit of a metric: the scoring table's (:data:`lamino.studies.scoring.METRICS`), else ``mm`` for
    names ending in ``_mm``, ``s`` for ``_s``, else ""."""
    if name in METRICS:
        return METRICS[name][0]
    if name.endswith("_mm"):
        return "mm"
    if name.endswith("_s"):
        return "s"
    return ""


def write_report(store: ResultStore, plan: PlanResult, out: str, overwrite: bool = False) -> str:
    """Write the study report into folder ``out`` and return the path of ``out/index.html``.

    ``store``: the study's results; ``plan``: the planner's verdict on them. ``out`` must not exist unless
    ``overwrite`` (then it is replaced as a whole). Everything is written into a temporary folder beside ``out``
    that is renamed into place at the end."""
    out = os.path.abspath(os.fspath(out))
    if os.path.lexists(out) and not overwrite:
        raise ValueError(f"out={out!r} already exists: give a new folder or pass overwrite=True")
    if not isinstance(plan, PlanResult):
        raise ValueError(f"plan={type(plan).__name__} is not allowed: give the PlanResult of lamino.studies.planner")
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    clean_temporaries(parent, prefix=os.path.basename(out))       # builds of this report by dead processes
    tmp = temporary_folder(out)
    try:
        _build(store, plan, tmp, out)
        _replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return os.path.join(out, "index.html")


# ---------------------------------------------------------------------------------------------- assembly
class _Figure(NamedTuple):
    """A PNG of the report: its file name, caption and group (where the page places it): "objective", "key",
    "other" (heatmaps), "pareto", "slices", "closeup" or "coverage"."""

    file: str
    caption: str
    group: str


def _build(store: ResultStore, plan: PlanResult, folder: str, final: str) -> None:
    """Draw every figure into ``folder`` and write ``index.html`` (links computed for its final place)."""
    import matplotlib

    matplotlib.use("Agg")
    records = {r["id"]: r for r in store.records()}
    figures, notes = _heatmaps(store, plan, folder)
    if plan.configurations:
        figures.append(_pareto(plan, folder))
    figures += _slices_figure(store, plan, records, folder)
    figures += _coverage_figure(plan, records, folder)
    links = _links(store, folder, final)
    page = _page(store, plan, figures, notes, links)
    with open(os.path.join(folder, "index.html"), "w", encoding="utf-8") as f:
        f.write(page)


def _replace_folder(tmp: str, out: str) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and deleted after the swap."""
    old = None
    if os.path.lexists(out):
        if os.path.isdir(out) and not os.path.islink(out):
            old = temporary_folder(out)
            os.rmdir(old)
            os.replace(out, old)
        else:
            os.remove(out)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _links(store: ResultStore, folder: str, final: str) -> list[tuple[str, str]]:
    """[(href, label)] of summary.csv and study.toml: relative links into the results folder when the files exist
    there, else copies inside the report (study.toml is rewritten from the spec's text)."""
    links = []
    for name in ("summary.csv", "study.toml"):
        src = os.path.join(store.path, name)
        href = None
        if os.path.isfile(src):
            try:
                href = os.path.relpath(os.path.abspath(src), final).replace(os.sep, "/")
            except ValueError:                              # another drive (Windows): copy instead
                shutil.copyfile(src, os.path.join(folder, name))
                href = name
        elif name == "study.toml" and store.spec.text:
            with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
                f.write(store.spec.text)
            href = name
        if href is not None:
            links.append((href, name))
    return links


# ---------------------------------------------------------------------------------------------- selection
def _anchor(plan: PlanResult) -> Configuration | None:
    """The configuration whose other axes the heatmaps hold fixed: the recommended, else the best, else any."""
    return plan.recommended or plan.best or (plan.configurations[0] if plan.configurations else None)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _heatmap_configs(store: ResultStore, plan: PlanResult) -> tuple[list[Configuration], dict[str, Any]]:
    """Grid-stage configurations on the slice through the anchor's values of every other axis that is swept
    with several values, and {axis: value} of that slice."""
    grid = [c for c in plan.configurations if c.stage == "grid"]
    anchor = _anchor(plan)
    if anchor is None or not grid:
        return [], {}
    axes = store.spec.axes()
    fixed = {a: anchor.point.get(a) for a in _OTHER_AXES if len(axes.get(a, [])) > 1}
    return [c for c in grid if all(_same(c.point.get(a), v) for a, v in fixed.items())], fixed


def _where(fixed: dict[str, Any]) -> str:
    """The values the heatmaps hold other swept axes at, as text ("method = sirt"), "" if none."""
    return ", ".join(f"{_AXIS_LABELS.get(a, a)} = {_fmt(v)}" for a, v in fixed.items())


def _named_metrics(store: ResultStore, plan: PlanResult) -> list[str]:
    """The metrics named by the objective's weights or constraints (in that order) that the plan has."""
    present = _metric_names(plan.configurations)
    named = [*store.spec.weights, *(c.metric for c in store.spec.constraints)]
    return [m for m in dict.fromkeys(named) if m in present]


def _key_metrics(store: ResultStore, plan: PlanResult) -> list[str]:
    """:func:`_named_metrics`, else every metric present."""
    return _named_metrics(store, plan) or _metric_names(plan.configurations)


def _metric_names(configs) -> list[str]:
    return sorted({m for c in configs for m in c.metrics_mean})


# ---------------------------------------------------------------------------------------------- figures
def _file_name(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"


def _mean_sem(c: Configuration, name: str) -> tuple[float, float]:
    """Mean and standard error of the mean of the objective (``name`` "objective") or a metric over the
    configuration's repeats; the standard error is NaN (unknown) with fewer than two repeats."""
    mean, sem = ((c.objective_mean, c.objective_sem) if name == "objective"
                 else (c.metrics_mean.get(name, math.nan), c.metrics_sem.get(name, math.nan)))
    return float(mean), (float(sem) if c.n >= 2 else math.nan)


def _known(sem: float) -> bool:
    """Whether a standard error is worth printing as "± sem": finite and non-zero (never "± 0")."""
    return math.isfinite(sem) and sem > 0


def constant_value(values: np.ndarray, rtol: float = CONSTANT_RTOL) -> float | None:
    """The common value of ``values``' finite entries when they agree to ``rtol`` relative (e.g.
    ``saturated_fraction`` = 0 everywhere), else None; None when none is finite."""
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return None
    lo, hi = float(finite.min()), float(finite.max())
    return float(np.median(finite)) if hi - lo <= rtol * max(abs(lo), abs(hi)) else None


def _heatmaps(store: ResultStore, plan: PlanResult, folder: str) -> tuple[list[_Figure], list[str]]:
    """One heatmap PNG per quantity, tilt on x, views on y: the objective first, then the metrics named by the
    objective and constraints, then the rest. A metric NaN everywhere, constant (:func:`constant_value`) or equal
    to the objective is not drawn. Returns the figures and the notes naming what was left out, one line each."""
    configs, fixed = _heatmap_configs(store, plan)
    if not configs:
        return [], []
    tilts = sorted({float(c.point["tilt_deg"]) for c in configs})
    views = sorted({int(c.point["n_views"]) for c in configs})
    rec = plan.recommended
    rec_cell = None
    if rec is not None and any(c.ids == rec.ids for c in configs):
        rec_cell = (tilts.index(float(rec.point["tilt_deg"])), views.index(int(rec.point["n_views"])))

    def tables(name: str) -> tuple[np.ndarray, np.ndarray]:
        mean, sem = np.full((2, len(views), len(tilts)), np.nan)
        for c in configs:
            cell = views.index(int(c.point["n_views"])), tilts.index(float(c.point["tilt_deg"]))
            mean[cell], sem[cell] = _mean_sem(c, name)
        return mean, sem

    def draw(name: str, label: str, unit: str, caption: str, group: str) -> _Figure:
        fname = _file_name("heatmap", name)
        fig = _heatmap_figure(*tables(name), tilts, views, label, unit, rec_cell, large=group == "objective")
        save_figure(fig, os.path.join(folder, fname), dpi=DPI)
        return _Figure(fname, caption, group)

    objective = tables("objective")[0]
    value = constant_value(objective)
    caption = (f"The objective, {plan.objective} (higher is better)"
               + (f", the same ({_fmt(value)}) in every cell" if value is not None else "")
               + f". {_repeats_note(configs)}")
    names = _metric_names(configs)
    key = [m for m in _named_metrics(store, plan) if m in names]
    same = [m for m in names if np.array_equal(tables(m)[0], objective, equal_nan=True)]
    if same:                                # e.g. objective = 1 × crack_dice: drawn once, as the objective
        caption += f" It equals {', '.join(same)}, not drawn again."
    figures = [draw("objective", "objective", "", caption, "objective")]
    empty, constant = [], []
    for name in [*key, *(m for m in names if m not in key)]:
        mean = tables(name)[0]
        value = constant_value(mean)
        if name in same:
            continue
        if not np.isfinite(mean).any():
            empty.append(name)              # nothing to measure here (e.g. no flat crack large enough to resolve)
        elif value is not None:
            unit, gaps = metric_unit(name), int((~np.isfinite(mean)).sum())
            constant.append(f"{name} = {_fmt(value)}{' ' + unit if unit else ''}"
                            + (f" (NaN at {gaps} of {mean.size} points)" if gaps else ""))
        else:
            unit = metric_unit(name)
            label = f"{name} ({unit})" if unit else name
            meaning = METRICS.get(name, ("", ""))[1]
            figures.append(draw(name, label, unit, label + (f": {meaning}" if meaning else "") + ".",
                                "key" if name in key else "other"))
    scope = f"the tilt × views grid at {_where(fixed)}" if fixed else "the sweep"
    notes = []
    if constant:
        notes.append(f"Constant over {scope}, not drawn: {'; '.join(constant)}.")
    if empty:
        notes.append(f"Not drawn, nothing to measure for this phantom or region (NaN at every point): "
                     f"{', '.join(empty)}.")
    return figures, notes


def _repeats_note(configs: list[Configuration]) -> str:
    """How the heatmaps' cells read: mean ± standard error over n repeats, or the mean of one realisation."""
    ns = sorted({c.n for c in configs})
    if ns[-1] < 2:
        return "Every heatmap shows the mean of one realisation per configuration: uncertainty unknown."
    n = f"{ns[0]}" if len(ns) == 1 else f"{max(ns[0], 2)}–{ns[-1]}"
    text = f"Every heatmap shows the mean ± standard error of the mean over {n} repeats"
    if ns[0] < 2:
        text += "; cells from one realisation show the mean only (uncertainty unknown)"
    return text + "; a cell without ± has no spread over its repeats."


def _cell_text(mean: float, sem: float) -> str:
    """A heatmap cell's annotation: the mean (3 significant digits) and, when known and non-zero, "± sem"."""
    if not math.isfinite(mean):
        return "—"
    return _short(mean) + (f"\n± {sem:.2g}" if _known(sem) else "")


def _short(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits like ``{x:.3g}``, but without an exponent between 0.001 and 100 000
    (2093, not 2.09e+03)."""
    if x == 0 or not 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    text = f"{x:.{max(0, digits - 1 - math.floor(math.log10(abs(x))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _heatmap_figure(mean: np.ndarray, sem: np.ndarray, tilts: list[float], views: list[int], label: str,
                    unit: str, rec_cell: tuple[int, int] | None, large: bool = False):
    """Annotated image of ``mean`` (views × tilts), each cell "mean ± sem" (:func:`_cell_text`); ``rec_cell`` =
    (tilt index, views index) is outlined. A constant table gets one colour and no colour bar."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    two_lines = bool(np.vectorize(_known)(sem).any())
    scale = 1.6 if large else 1.0
    fig, ax = plt.subplots(figsize=(scale * (1.5 + 0.8 * len(tilts)),
                                    scale * (1.2 + (0.5 if two_lines else 0.36) * len(views))),
                           layout="constrained")
    finite = mean[np.isfinite(mean)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    flat = constant_value(mean) is not None or not finite.size
    im = ax.imshow(mean, origin="lower", cmap="viridis", vmin=lo - 1 if flat else lo, vmax=lo + 1 if flat else hi,
                   aspect="auto")
    for (j, i), v in np.ndenumerate(mean):
        dark = bool(np.isfinite(v) and im.norm(v) < 0.55)          # white text on viridis' dark end
        ax.text(i, j, _cell_text(v, sem[j, i]), ha="center", va="center", fontsize=9 if large else 8,
                color="w" if dark else "k", linespacing=1.15)
    if rec_cell is not None:
        ax.add_patch(Rectangle((rec_cell[0] - 0.5, rec_cell[1] - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_xticks(range(len(tilts)), [f"{t:g}" for t in tilts])
    ax.set_yticks(range(len(views)), [str(n) for n in views])
    ax.set_xlabel(_AXIS_LABELS["tilt_deg"])
    ax.set_ylabel(_AXIS_LABELS["n_views"])
    ax.set_title(label, fontsize=11 if large else 10)
    if not flat:
        bar = fig.colorbar(im, ax=ax, label=unit, shrink=0.9)
        bar.formatter.set_useOffset(False)                 # no "1e−12 + 1" offsets on a narrow range
        bar.update_ticks()
    return fig


def pareto_figure(plan: PlanResult):
    """The objective (mean, with the standard error of the mean as error bars where it is known) against scan
    time; configurations of one realisation are open circles without bars; infeasible ones grey; the front as a
    step line; the recommended configuration starred. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    configs = plan.configurations
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for feasible, colour, label in ((False, "0.65", "infeasible"), (True, "C0", "feasible")):
        sel = [c for c in configs if c.feasible == feasible]
        known = [c for c in sel if _known(_mean_sem(c, "objective")[1])]
        unknown = [c for c in sel if c not in known]
        if known:
            ax.errorbar([c.scan_time_s for c in known], [c.objective_mean for c in known],
                        yerr=[c.objective_sem for c in known], fmt="o", ms=5, capsize=3, color=colour, label=label)
        if unknown:
            ax.plot([c.scan_time_s for c in unknown], [c.objective_mean for c in unknown], "o", ms=5, mfc="none",
                    color=colour, ls="none", label=f"{label}, uncertainty unknown")
    front = sorted((c for c in configs if c.pareto and c.feasible), key=lambda c: c.scan_time_s)
    if front:
        ax.step([c.scan_time_s for c in front], [c.objective_mean for c in front], where="post", color="C1",
                lw=1.5, marker="s", ms=9, mfc="none", label="Pareto front")
    if plan.recommended is not None:
        r = plan.recommended
        ax.plot(r.scan_time_s, r.objective_mean, marker="*", ms=18, mfc="none", mec="red", mew=2, ls="none",
                label=f"recommended ({_fmt(r.point.get('tilt_deg'))}°, {r.point.get('n_views')} views)")
    times = np.array([c.scan_time_s for c in configs], float)
    times = times[np.isfinite(times) & (times > 0)]
    if times.size and times.max() > 10 * times.min():
        ax.set_xscale("log")
    ax.set_xlabel("scan time (s)")
    ax.set_ylabel("objective (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _pareto(plan: PlanResult, folder: str) -> _Figure:
    """:func:`pareto_figure` as ``pareto.png``."""
    fname = "pareto.png"
    save_figure(pareto_figure(plan), os.path.join(folder, fname), dpi=DPI)
    one = [c for c in plan.configurations if not _known(_mean_sem(c, "objective")[1])]
    bars = ("Error bars: standard error of the mean over the repeats"
            + ("; open circles: one realisation, uncertainty unknown." if one else "."))
    if len(one) == len(plan.configurations):
        bars = "One realisation per configuration: uncertainty unknown, no error bars."
    caption = ("Objective against scan time for every configuration. " + bars + " Grey: violates a constraint; "
               "orange step line: the Pareto front of the feasible configurations; red star: the recommended "
               "configuration.")
    return _Figure(fname, caption, "pareto")


def _slice_configs(plan: PlanResult, records: dict[str, dict]) -> list[tuple[str, Configuration]]:
    """(label, configuration) of the slices figure: the recommended, the best and the worst configuration, each
    once (one that is several gets one row labelled with all its roles, "recommended = best"); only those whose
    first repeat is in the store."""
    roles: dict[str, tuple[list[str], Configuration]] = {}
    for name, c in (("recommended", plan.recommended), ("best", plan.best), ("worst", plan.worst)):
        if c is not None and c.ids and c.ids[0] in records:
            roles.setdefault(c.ids[0], ([], c))[0].append(name)
    return [(" = ".join(names), c) for names, c in roles.values()]


def _slices_figure(store: ResultStore, plan: PlanResult, records: dict[str, dict],
                   folder: str) -> list[_Figure]:
    """Central xy, xz, yz slices of the truth and of the recommended, best and worst configurations on one grey
    scale (μ, 1/mm), then the close-up of a task (:func:`_closeup_figure`) when the store has one; the truth's
    slices mark where that task lies."""
    import matplotlib.pyplot as plt

    chosen = _slice_configs(plan, records)
    if not chosen:
        return []
    source = _closeup_source(store, plan, records)
    data = {c.ids[0]: store.slices(c.ids[0]) for _, c in chosen}
    first = chosen[0][1].ids[0]
    rows = [("truth", data[first]["truth"], records[first])]
    rows += [(f"{name}: {_describe(c)}", data[c.ids[0]]["recon"], records[c.ids[0]]) for name, c in chosen]
    values = np.concatenate([np.ravel(img) for _, sl, _ in rows for img in sl.values()])
    values = values[np.isfinite(values)]
    lo, hi = (float(np.percentile(values, q)) for q in (0.5, 99.5)) if values.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 3.4 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.88, bottom=0.5 / (3.4 * len(rows)), top=1 - 0.4 / (3.4 * len(rows)),
                        wspace=0.3, hspace=0.45)
    marked = False
    for r, (title, slices, record) in enumerate(rows):
        measured = _measured_slices(record) if r > 0 else None
        for ax, plane in zip(axes[r], SLICES, strict=True):
            img = np.asarray(slices[plane], np.float32)
            h, v, unit = _slice_axes(record, plane, img.shape)
            if unit == "mm":
                im = show_slice(ax, img, h, v, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                if measured is not None and measured[plane].shape == img.shape:
                    shade_unmeasured(ax, measured[plane], h, v)
                if r == 0 and source is not None:
                    where = dict(zip("xyz", source[2].centre_mm, strict=True))
                    ax.plot(where[plane[0]], where[plane[1]], "o", ms=11, mfc="none", mec="red", mew=1.8)
                    marked = True
            else:
                im = ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                               aspect="auto")
            if r == 0:
                ax.set_title(plane, fontsize=10)
            ax.set_xlabel(f"{plane[0]} ({unit})")
            ax.set_ylabel(f"{plane[1]} ({unit})")
        axes[r, 0].set_title(title, loc="left", fontsize=10, fontweight="bold" if "recommended" in title else None)
    fig.colorbar(im, cax=fig.add_axes((0.91, 0.15, 0.015, 0.7)), label="μ (1/mm)")
    fname = "slices.png"
    save_figure(fig, os.path.join(folder, fname), dpi=DPI)
    names = "; ".join(f"{name}: {_describe(c)}" for name, c in chosen)
    caption = (f"Central xy, xz and yz slices of the truth and of the reconstructions of the {_roles(chosen)} "
               f"configuration{'s' if len(chosen) > 1 else ''} ({names}; first noise repeat), all on one grey scale "
               f"of μ (1/mm). Greyed out: voxels that left the detector in some views; dashed yellow: the boundary "
               f"of the region measured in every view."
               + (f" Red circles on the truth: where the task of the close-up below ({source[2].name}) lies, "
                  f"projected onto each slice." if marked else ""))
    figures = [_Figure(fname, caption, "slices")]
    return figures + ([_closeup_figure(store, source, folder)] if source is not None else [])


def _roles(chosen: list[tuple[str, Configuration]]) -> str:
    """"recommended, best and worst" from the labels of :func:`_slice_configs`."""
    names = [n for label, _ in chosen for n in label.split(" = ")]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


_CLOSEUP_TITLES = {"truth": "truth", "recon": "noisy reconstruction", "signal": "expected signal (with − without)"}


def _closeup_source(store: ResultStore, plan: PlanResult,
                    records: dict[str, dict]) -> tuple[str, Configuration, Closeup] | None:
    """("recommended" or "best", that configuration, the close-up of its first repeat), None when that point has
    no close-up (no detection task, or a store written before close-ups existed)."""
    for who, c in (("recommended", plan.recommended), ("best", plan.best)):
        if c is not None and c.ids and c.ids[0] in records:
            closeup = store.closeup(c.ids[0])
            return None if closeup is None else (who, c, closeup)
    return None


def _closeup_figure(store: ResultStore, source: tuple[str, Configuration, Closeup], folder: str) -> _Figure:
    """The close-up of ``source`` (:func:`_closeup_source`): for each of its two planes, the truth and the noisy
    reconstruction on one grey scale and the expected signal on a diverging one; the task and its d′ in the
    title."""
    import matplotlib.pyplot as plt

    who, config, closeup = source
    planes = closeup.planes
    grey = np.concatenate([np.ravel(closeup.images[k][p]) for k in ("truth", "recon") for p in planes])
    grey = grey[np.isfinite(grey)]
    lo, hi = (float(np.percentile(grey, q)) for q in (1, 99)) if grey.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    signal = [a for a in closeup.images["signal"].values() if np.isfinite(a).any()]
    peak = max((float(np.nanmax(np.abs(a))) for a in signal), default=0.0) or 1e-6
    styles = {"truth": dict(cmap=plt.get_cmap("gray").with_extremes(bad=_OUTSIDE), vmin=lo, vmax=hi),
              "signal": dict(cmap=plt.get_cmap("RdBu_r").with_extremes(bad=_OUTSIDE), vmin=-peak, vmax=peak)}
    styles["recon"] = styles["truth"]
    fig, axes = plt.subplots(len(planes), 3, figsize=(10, 1.6 + 3.1 * len(planes)), squeeze=False,
                             layout="constrained")
    x, y, z = closeup.centre_mm
    detectable = closeup.dprime >= ROSE_DPRIME
    fig.suptitle(f"{closeup.name} ({closeup.kind}) at x, y, z = {x:.3g}, {y:.3g}, {z:.3g} mm:  d′ = "
                 f"{_short(closeup.dprime)} {'≥' if detectable else '<'} {ROSE_DPRIME:g}, "
                 f"{'detectable' if detectable else 'not reliably detectable'} (Rose)\n{who}: {_describe(config)}",
                 fontsize=11, fontweight="bold", color="#1e7b34" if detectable else "#b03a2e")
    images = {}
    for r, plane in enumerate(planes):
        h, v, where = _closeup_axes(closeup, plane)
        for ax, kind in zip(axes[r], ("truth", "recon", "signal"), strict=True):
            images[kind] = show_slice(ax, closeup.images[kind][plane], h, v, interpolation="nearest", **styles[kind])
            ax.set_aspect("equal")
            _mark_centre(ax, closeup, plane)
            if r == 0:
                ax.set_title(_CLOSEUP_TITLES[kind], fontsize=10)
            ax.set_xlabel(f"{plane[0]} (mm)")
            ax.set_ylabel(f"{plane[1]} (mm)")
        axes[r, 0].set_ylabel(f"{plane} plane, {where}\n{plane[1]} (mm)")
    from matplotlib.ticker import MaxNLocator

    for kind, columns, aspect in (("recon", slice(0, 2), 30), ("signal", slice(2, 3), 15)):
        bar = fig.colorbar(images[kind], ax=axes[:, columns], label="Δμ (1/mm)" if kind == "signal" else "μ (1/mm)",
                           location="bottom", shrink=0.7 if kind == "recon" else 1.0, aspect=aspect)
        bar.locator = MaxNLocator(nbins=5 if kind == "recon" else 4)
        bar.update_ticks()
    fname = "closeup.png"
    save_figure(fig, os.path.join(folder, fname), dpi=DPI)
    return _Figure(fname, _closeup_caption(store, closeup, who, config), "closeup")


_OUTSIDE = "#cfe0f0"                   # close-up pixels beyond the reconstructed grid


def _closeup_axes(closeup: Closeup, plane: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Horizontal and vertical mm coordinates of a close-up crop in ``plane`` and where the plane lies
    ("z = 0.23 mm")."""
    centre = dict(zip("xyz", closeup.centre_mm, strict=True))
    size = dict(zip("zyx", closeup.voxel_mm, strict=True))
    n = closeup.images["truth"][plane].shape[0]
    offsets = np.arange(n) - (n - 1) / 2
    held = next(a for a in "xyz" if a not in plane)
    return (centre[plane[0]] + offsets * size[plane[0]], centre[plane[1]] + offsets * size[plane[1]],
            f"{held} = {centre[held]:.3g} mm")


def _mark_centre(ax, closeup: Closeup, plane: str) -> None:
    """Four yellow ticks pointing at the crop's centre voxel (the task), leaving the task itself uncovered."""
    size = dict(zip("zyx", closeup.voxel_mm, strict=True))
    centre = dict(zip("xyz", closeup.centre_mm, strict=True))
    ch, cv = centre[plane[0]], centre[plane[1]]
    dh, dv = size[plane[0]], size[plane[1]]
    for sh, sv in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        ax.plot([ch + sh * 3 * dh, ch + sh * 6 * dh], [cv + sv * 3 * dv, cv + sv * 6 * dv], color="#ffd400", lw=1.5,
                solid_capstyle="butt")


def _closeup_caption(store: ResultStore, closeup: Closeup, who: str, config: Configuration) -> str:
    """Which task the close-up shows and why, what the three images are, and what d′ ≥ 5 means."""
    kinds = {"pore": "pores", "crack": "cracks"}
    if closeup.metric is None:
        why = (f"the lowest d′ of the {closeup.candidates} tasks in the measured region (the objective and "
               f"constraints name no d′ metric)")
    else:
        named = "the objective" if closeup.metric in store.spec.weights else "the constraints"
        why = (f"the lowest d′ of the {closeup.candidates} {kinds.get(closeup.kind, 'tasks')} in the measured "
               f"region that {closeup.metric} ({named}) summarises" if closeup.candidates > 1
               else f"the task of {closeup.metric} ({named})")
    crop = closeup.images["truth"][closeup.planes[0]].shape[0]
    outside = any(np.isnan(a).any() for d in closeup.images.values() for a in d.values())
    return (f"Close-up of {closeup.name} in the {who} configuration ({_describe(config)}; first noise repeat): "
            f"{why}, so the hardest of them to see. Left: the truth; middle: the noisy reconstruction (one grey "
            f"scale of μ, 1/mm); right: the expected reconstructed signal, the noise-free reconstruction with the "
            f"tasks minus without them (neighbouring tasks show too); the non-prewhitening observer's template is "
            f"its part within {ZONE_RADIUS} voxels of this task. Rows: the xy plane and a vertical plane through the "
            f"task (yellow ticks), "
            f"{crop} voxels ({_short(crop * closeup.voxel_mm[2])} mm) wide"
            + ("; light blue: beyond the reconstructed grid" if outside else "")
            + f". d′ is the signal-to-noise ratio of an observer who knows the signal and where it is: at d′ ≥ "
            f"{ROSE_DPRIME:g} (the Rose criterion) the feature is reliably detected, below {ROSE_DPRIME:g} it is "
            f"easily lost in the noise. Every task's d′ is in the point records (task_dprimes).")


def _measured_slices(record: dict) -> dict[str, np.ndarray] | None:
    """Central slices (as :func:`lamino.studies.store.central_slices`) of the measured fraction of a point's
    geometry on its grid (provenance), or None."""
    try:
        grid = VolumeGrid.from_dict(record["provenance"]["grid"])
        geometry = Geometry.from_dict(record["provenance"]["geometry"])
    except (KeyError, TypeError, ValueError):
        return None
    centre = tuple(float(grid.axis(d)[n // 2]) for d, n in enumerate(grid.shape))
    return dict(zip(("xy", "xz", "yz"), measured_planes(geometry, grid, centre), strict=True))


def _slice_axes(record: dict, plane: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, str]:
    """Horizontal and vertical coordinates of a central slice: mm from the record's grid (provenance "grid")
    when it matches the slice, else pixel indices."""
    dims = {"xy": (2, 1), "xz": (2, 0), "yz": (1, 0)}[plane]          # (horizontal, vertical) array axis
    try:
        grid = VolumeGrid.from_dict(record["provenance"]["grid"])
        h, v = grid.axis(dims[0]), grid.axis(dims[1])
        if (len(v), len(h)) == tuple(shape):
            return h, v, "mm"
    except (KeyError, TypeError, ValueError):
        pass
    return np.arange(shape[1], dtype=float), np.arange(shape[0], dtype=float), "px"


def _coverage_figure(plan: PlanResult, records: dict[str, dict], folder: str) -> list[_Figure]:
    """The Fourier-coverage diagram of the recommended (else the best) configuration's geometry."""
    source = [(n, c) for n, c in (("recommended", plan.recommended), ("best", plan.best)) if c is not None]
    for name, config in source:
        record = next((records[i] for i in config.ids if i in records), None)
        geometry = (record or {}).get("provenance", {}).get("geometry")
        if geometry is None:
            continue
        fig = plot_fourier_coverage(Geometry.from_dict(geometry))
        fname = "coverage.png"
        save_figure(fig, os.path.join(folder, fname), dpi=DPI)
        return [_Figure(fname, f"Fourier coverage of the {name} configuration ({_describe(config)}), section "
                               f"through the rotation axis: grey is measured, red is the missing double cone of "
                               f"half-angle α (the tilt) around the axis.", "coverage")]
    return []


# ---------------------------------------------------------------------------------------------- HTML
def _fmt(x: Any) -> str:
    """A short text for a table cell: 4 significant digits, "—" for None."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return f"{float(x):.4g}"
    return str(x)


def _pm(mean: float | None, sem: float | None) -> str:
    """``mean ± sem`` when the standard error is known and non-zero, else the mean alone ("—" if unknown)."""
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{_fmt(mean)} ± {sem:.2g}" if sem is not None and _known(sem) else _fmt(mean)


def _pm_of(c: Configuration, name: str) -> str:
    """:func:`_pm` of the objective or a metric of ``c`` (standard error over its repeats)."""
    return _pm(*_mean_sem(c, name))


def _describe(c: Configuration) -> str:
    p = c.point
    text = f"tilt {_fmt(p.get('tilt_deg'))}°, {_fmt(p.get('n_views'))} views"
    text += f", {p['method']}" if p.get("method") else ""
    return text + (", limited-angle CT" if p.get("trajectory") == "limited-angle" else "")


def _e(x: Any) -> str:
    return html.escape(_fmt(x))


def _unit(x: Any, unit: str) -> str:
    return _e(x) + (f" {html.escape(unit)}" if x is not None and unit else "")


def _row(cells: list[str], cls: str = "", header: bool = False) -> str:
    """One table row of already escaped ``cells``; the first cell is left-aligned."""
    tag = "th" if header else "td"
    attr = f' class="{cls}"' if cls else ""
    first = f'<{tag} class="l">{cells[0]}</{tag}>'
    return f"<tr{attr}>{first}" + "".join(f"<{tag}>{c}</{tag}>" for c in cells[1:]) + "</tr>"


# ---------------------------------------------------------------------------------------------- decision
def _paired_text(best: Configuration, other: Configuration) -> str:
    """The planner's paired difference best − other (:func:`~lamino.studies.planner.paired_difference`) in
    words, with its 95 % interval; without two shared realisations the plain difference of the means."""
    d, se, n = paired_difference(best, other)
    if n >= 2 and _known(se):
        half = t95(n) * se
        return (f"best − this = {d:.2g} ± {se:.2g} (95 % CI {d - half:.2g} to {d + half:.2g}, paired over {n} "
                f"realisations)")
    if n >= 2 and se == 0:
        return f"best − this = {d:.2g} in each of the {n} shared realisations"
    why = "one realisation: noise unknown" if n < 2 else "noise unknown"
    return f"best − this = {best.objective_mean - other.objective_mean:.2g} ({why})"


_EDGE_WORDS = {"tilt_deg": ("tilt", "°", "larger tilts", "smaller tilts"),
               "n_views": ("number of views", " views", "more views (more dose and time)", "fewer views"),
               "exposure_s": ("exposure", " s", "longer exposures (more dose)", "shorter exposures"),
               "kvp": ("tube voltage", " kV", "higher voltages", "lower voltages")}


def _edges(store: ResultStore, c: Configuration) -> list[tuple[str, bool]]:
    """[(axis, at the high end)] of the numeric sweep axes (several values swept) where ``c`` sits at the edge of
    the swept range."""
    axes = store.spec.axes()
    out = []
    for axis in _EDGE_WORDS:
        values = {float(v) for v in axes.get(axis, []) if isinstance(v, int | float) and not isinstance(v, bool)}
        x = c.point.get(axis)
        if len(values) < 2 or not isinstance(x, int | float):
            continue
        if float(x) >= max(values) or float(x) <= min(values):
            out.append((axis, float(x) >= max(values)))
    return out


def _edge_text(axis: str, high: bool, c: Configuration, who: str) -> str:
    """``who`` sits at an edge of the swept ``axis``, and what lies beyond it might do: at the cheap end of the
    views or exposure, be as good and faster; elsewhere, score higher."""
    what, unit, more, fewer = _EDGE_WORDS[axis]
    hope = "might be as good and faster" if axis in ("n_views", "exposure_s") and not high else "might score higher"
    return (f"{who} sits at the {'high' if high else 'low'} end of the {what} swept ({_fmt(c.point[axis])}{unit}): "
            f"{more if high else fewer} were not tried and {hope}; extend [sweep] {axis}.")


def _violations(store: ResultStore, c: Configuration) -> list[str]:
    """What keeps ``c`` from being feasible: its failed constraints (on the means) and a saturating open beam."""
    failed = [str(k) for k in store.spec.constraints
              if not k.holds(c.scan_time_s if k.metric == "scan_time_s" else c.metrics_mean.get(k.metric, math.nan))]
    return failed + (["the open beam saturates the detector"] if saturates(c.metrics_mean) else [])


def _changes(store: ResultStore, plan: PlanResult, best: Configuration | None,
             near: list[Configuration]) -> list[str]:
    """What would change the decision, in words (plain text, one item each)."""
    configs = plan.configurations
    rec = plan.recommended
    if rec is None or best is None:
        counts: dict[str, int] = {}
        for c in configs:
            for v in _violations(store, c):
                counts[v] = counts.get(v, 0) + 1
        fails = "; ".join(f"{v}: fails for {k} of {len(configs)}" for v, k in counts.items())
        return [f"No configuration meets every constraint ({fails or 'none evaluated'}): relaxing a constraint or "
                f"widening the sweep would give a recommendation."]
    out = []
    feasible, _ = feasible_best(configs)
    flat = len(feasible) > 1 and constant_value(np.array([c.objective_mean for c in feasible])) is not None
    if flat:
        out.append(f"The objective is the same ({best.objective_mean:.4g}) at every feasible configuration: this "
                   f"sweep cannot rank them, so the fastest is recommended; another objective or a wider sweep "
                   f"would be needed to choose on quality.")
    elif min(best.n, rec.n) < 2:
        who = ("One realisation per configuration" if all(c.n < 2 for c in feasible)
               else "One realisation of the best or the recommended configuration")
        out.append(f"{who}: the noise is unknown, so configurations within {TOLERANCE * 100:g} % of the best count as "
                   "equal. More noise seeds ([sweep] seeds) would give confidence intervals and "
                   "could separate them.")
    elif near:
        out.append(f"With {best.n} repeats, {len(near)} configuration{'s' if len(near) > 1 else ''} cannot be told "
                   f"from the best; more repeats would narrow the intervals (as 1/√n) and could separate them"
                   + (", which could rule out the faster recommended one." if rec.ids != best.ids else "."))
    else:
        out.append(f"The best stands clear of every other feasible configuration over {best.n} repeats; more "
                   f"repeats would narrow its interval but are unlikely to change the choice.")
    best_edges = _edges(store, best)
    out += [_edge_text(a, high, best, "The best" + (" (and recommended)" if rec.ids == best.ids else ""))
            for a, high in best_edges]
    out += [_edge_text(a, high, rec, "The recommended configuration") for a, high in _edges(store, rec)
            if a in ("n_views", "exposure_s") and not high and (a, high) not in best_edges]
    higher = [c for c in configs if not c.feasible and math.isfinite(c.objective_mean)
              and c.objective_mean > best.objective_mean]
    if higher:
        top = max(higher, key=lambda c: c.objective_mean)
        out.append(f"{len(higher)} configuration{'s score' if len(higher) > 1 else ' scores'} higher than the best "
                   f"feasible one (up to {top.objective_mean:.4g} at {_describe(top)}) but "
                   f"{'are' if len(higher) > 1 else 'is'} ruled out ({'; '.join(_violations(store, top))}): "
                   f"relaxing that would change the decision.")
    return out


def _decision(store: ResultStore, plan: PlanResult) -> str:
    """The Decision section: the recommended configuration and its objective with its uncertainty, the
    configurations the planner cannot tell from the best (:func:`~lamino.studies.planner.indistinguishable`),
    what would change the decision, and the planner's reason."""
    rec = plan.recommended
    feasible, best = feasible_best(plan.configurations)
    best = best or rec
    near = [c for c in feasible if c is not best and indistinguishable(best, c)] if best is not None else []
    parts = ['<h2 id="decision">Decision</h2>']
    items = []
    if rec is None or best is None:
        parts.append('<p class="none">No protocol is recommended: no configuration satisfies every constraint. '
                     "Relax the constraints or widen the sweep; the figures below show every configuration.</p>")
        if plan.gradient:
            parts.append("<table>" + "".join(_row([html.escape(f"gradient: {k}"), _e(v)])
                                             for k, v in plan.gradient.items()) + "</table>")
    else:
        items.append(f"<b>Recommended: {html.escape(_describe(rec))}</b>, scan time {_e(rec.scan_time_s)} s.")
        items.append(f"Objective ({html.escape(plan.objective or '—')}): {html.escape(uncertain(rec))}.")
        if rec.ids != best.ids:
            items.append(f"The best objective is {html.escape(uncertain(best))} at {html.escape(_describe(best))} "
                         f"({_e(best.scan_time_s)} s); the recommended configuration: "
                         f"{html.escape(_paired_text(best, rec))}, in {rec.scan_time_s / best.scan_time_s:.0%} of "
                         f"the time.")
        if near:
            shown = sorted(near, key=lambda c: c.scan_time_s)
            rows = [f"<li>{html.escape(_describe(c))}, {_e(c.scan_time_s)} s: {html.escape(_paired_text(best, c))}"
                    + (" <b>(recommended)</b>" if c.ids == rec.ids else "") + "</li>" for c in shown[:8]]
            if len(shown) > 8:
                rows.append(f"<li>… and {len(shown) - 8} more (see the table of all configurations)</li>")
            how = (f"paired 95 % intervals over the same realisations, or within {TOLERANCE * 100:g} %" if best.n > 1
                   else f"within {TOLERANCE * 100:g} %: one realisation, the noise is unknown")
            items.append(f"Cannot be told from the best ({html.escape(_describe(best))}; {how}): {len(near)} "
                         f"configuration{'s' if len(near) > 1 else ''}<ul>{''.join(rows)}</ul>")
        elif len(feasible) == 1:
            items.append("It is the only feasible configuration.")
        else:
            items.append("Every other feasible configuration is worse than the best beyond "
                         + (f"the noise (paired 95 % intervals) or {TOLERANCE * 100:g} %." if best.n > 1 else
                            f"{TOLERANCE * 100:g} % (one realisation: the noise is unknown)."))
    changes = _changes(store, plan, best, near)
    if changes:
        items.append("What would change the decision:<ul>"
                     + "".join(f"<li>{html.escape(t)}</li>" for t in changes) + "</ul>")
    if items:
        parts.append('<ul class="decision">' + "".join(f"<li>{t}</li>" for t in items) + "</ul>")
    if plan.reason:
        parts.append(f'<p class="reason">Planner: {html.escape(plan.reason)}</p>')
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- tables
def _protocol_table(store: ResultStore, plan: PlanResult) -> str:
    c = plan.recommended
    p = c.point
    kvp = "— (monochromatic source)" if p.get("kvp") is None else f"{_e(p['kvp'])} kVp"
    rows = [("tilt α", _e(p.get("tilt_deg")) + "°"), ("views", _e(p.get("n_views"))),
            ("exposure per view", _unit(p.get("exposure_s"), "s")), ("tube voltage", kvp),
            ("reconstruction", _e(p.get("method"))),
            ("trajectory", _e(p.get("trajectory", "cl"))), ("scan time", _unit(c.scan_time_s, "s")),
            ("objective", html.escape(uncertain(c))),
            ("repeats (noise seeds × instances)", str(c.n)), ("stage", html.escape(c.stage))]
    for m in _key_metrics(store, plan):
        unit = metric_unit(m)
        rows.append((m, html.escape(_pm_of(c, m) + (f" {unit}" if unit else ""))))
    for k, v in (plan.gradient or {}).items():
        rows.append((f"gradient: {k}", _e(v)))
    body = "\n".join(_row([html.escape(k), v]) for k, v in rows)
    return f'<div class="scroll"><table>\n{body}\n</table></div>'


def _configurations_table(plan: PlanResult) -> tuple[str, list[str]]:
    """The table of every configuration (metrics NaN everywhere left out) and the names of those left out."""
    names = _metric_names(plan.configurations)
    empty = [m for m in names if not any(math.isfinite(c.metrics_mean.get(m, math.nan))
                                         for c in plan.configurations)]
    metrics = [m for m in names if m not in empty]
    head = ["stage", "tilt (°)", "views", "exposure (s)", "kVp", "method", "trajectory", "scan time (s)", "objective",
            "feasible", "Pareto", "repeats"]
    head += [f"{m} ({metric_unit(m)})" if metric_unit(m) else m for m in metrics]
    rows = [_row([html.escape(h) for h in head], header=True)]
    order = sorted(plan.configurations, key=lambda c: -c.objective_mean if math.isfinite(c.objective_mean) else 1e300)
    for c in order:
        p = c.point
        cells = [html.escape(c.stage), *(_e(p.get(k)) for k in _AXIS_LABELS),
                 _e(c.scan_time_s), html.escape(_pm_of(c, "objective")), _e(c.feasible), _e(c.pareto), str(c.n)]
        cells += [html.escape(_pm_of(c, m)) for m in metrics]
        cls = "rec" if plan.recommended is not None and c.ids == plan.recommended.ids else (
            "" if c.feasible else "infeasible")
        rows.append(_row(cells, cls))
    return '<div class="scroll wide"><table>\n' + "\n".join(rows) + "\n</table></div>", empty


_SECTIONS = {"pareto": "Objective against scan time", "slices": "Slices",
             "closeup": "Close-up of a detection task", "coverage": "Fourier coverage"}


def _figure_html(f: _Figure, number: int, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return (f'<figure{attr}><img src="{html.escape(f.file, quote=True)}" alt="{html.escape(f.caption, quote=True)}">'
            f"<figcaption>Figure {number}. {html.escape(f.caption)}</figcaption></figure>")


def _figures_html(store: ResultStore, plan: PlanResult, figures: list[_Figure], notes: list[str]) -> list[str]:
    """The heatmaps in one responsive grid (the objective first and larger, then the key metrics, framed, then the
    rest) with their notes, then each other figure under its own heading."""
    numbers = {f.file: i for i, f in enumerate(figures, 1)}
    parts = []
    heat = [f for f in figures if f.group in ("objective", "key", "other")]
    if heat:
        configs, fixed = _heatmap_configs(store, plan)
        where = _where(fixed)
        rec = plan.recommended
        if rec is None:
            outline = ""
        elif any(c.ids == rec.ids for c in configs):
            outline = " The recommended configuration is outlined in red."
        else:
            outline = f" The recommended configuration ({_describe(rec)}, {rec.stage} stage) is not on this grid."
        key = (" Framed in blue: the metrics in the objective and constraints."
               if any(f.group == "key" for f in heat) else "")
        parts.append("<h2>Objective and metrics over tilt × views</h2>")
        intro = (f"Each cell is a configuration of the sweep grid{' at ' + where if where else ''}: the objective "
                 f"first, then the metrics in the objective and constraints, then the rest.{outline}{key}")
        parts.append(f"<p>{html.escape(intro)}</p>")
        parts.append('<div class="grid">' + "".join(_figure_html(f, numbers[f.file], f.group) for f in heat)
                     + "</div>")
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    for f in figures:
        if f.group in _SECTIONS:
            parts.append(f"<h2>{_SECTIONS[f.group]}</h2>")
            parts.append(_figure_html(f, numbers[f.file]))
    return parts


def _page(store: ResultStore, plan: PlanResult, figures: list[_Figure], notes: list[str],
          links: list[tuple[str, str]]) -> str:
    from lamino import __version__

    spec = store.spec
    name = html.escape(spec.name)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
             f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{name}</title>\n'
             f"<style>{_CSS}</style>\n</head>\n<body>", f"<h1>{name}</h1>"]
    if spec.description:
        parts.append(f'<p class="desc">{html.escape(spec.description)}</p>')
    n_points = sum(len(c.ids) for c in plan.configurations)
    parts.append(f"<p>{len(plan.configurations)} configurations, {n_points} evaluated points "
                 f"(phantom <code>{html.escape(str(spec.phantom.get('name')))}</code>, scanner "
                 f"<code>{html.escape(str(spec.scanner.get('preset')))}</code>).</p>")
    parts.append(_decision(store, plan))
    if plan.recommended is not None:
        parts.append("<h2>Recommended protocol</h2>")
        parts.append(_protocol_table(store, plan))
    parts.append("<h2>Objective and constraints</h2>")
    parts.append(f"<p>Objective (higher is better): <code>{html.escape(plan.objective or '—')}</code></p>")
    if spec.constraints:
        items = "".join(f"<li><code>{html.escape(str(c))}</code></li>" for c in spec.constraints)
        parts.append(f"<p>Constraints (on the means over the repeats):</p><ul>{items}</ul>")
    else:
        parts.append("<p>No constraints.</p>")
    parts += _figures_html(store, plan, figures, notes)
    table, empty = _configurations_table(plan)
    values = ("Values are the mean of one realisation: uncertainty unknown" if all(c.n < 2 for c in plan.configurations)
              else "Values are the mean ± standard error of the mean over the repeats"
              + (" (the mean alone from one realisation: uncertainty unknown)"
                 if any(c.n < 2 for c in plan.configurations) else ""))
    parts.append("<h2>All configurations</h2><p>Sorted by objective; the recommended row is highlighted, "
                 f"infeasible rows are grey. {values}"
                 + (f"; left out, NaN everywhere: {html.escape(', '.join(empty))}" if empty else "") + ".</p>")
    parts.append(table)
    parts.append("<h2>Files</h2><ul>")
    parts += [f'<li><a href="{html.escape(href, quote=True)}">{html.escape(label)}</a></li>' for href, label in links]
    parts.append(f"<li>results folder: <code>{html.escape(os.path.abspath(store.path))}</code></li></ul>")
    if spec.text:
        parts.append(f"<details><summary>study file</summary><pre>{html.escape(spec.text)}</pre></details>")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Written by lamino {html.escape(str(__version__))} on {stamp}.</footer>\n</body>\n</html>\n")
    return "\n".join(parts)

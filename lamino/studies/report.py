"""Static HTML report of an acquisition study: one folder with ``index.html`` and its PNG figures.

``write_report(store, plan, out)`` draws

* heatmaps over tilt (x) × number of views (y) of the objective and of every metric (means over the repeats,
  grid-stage configurations only, other swept axes held at the recommended configuration's values), the
  recommended cell outlined;
* the Pareto plot of objective (mean ± std) against scan time, infeasible configurations grey, the front as a step
  line and the recommended configuration highlighted;
* the central orthogonal slices of the best and worst configuration beside the truth, on one grey scale;
* the Fourier coverage of the recommended configuration's geometry;

and writes a self-contained page (inline CSS, no scripts, no external resources) with the recommended protocol,
the planner's reason, the objective and constraints, the figures and a table of every configuration. The report
is built in a temporary folder beside ``out`` and renamed into place, so a crash never leaves half a report; the
folder is named like every lamino temporary (``.<out name>.lamino-<pid>-…``, :func:`lamino.io.files.temporary_folder`),
so those of a killed writer are deleted by the next report or study run there.
"""

from __future__ import annotations

import datetime
import html
import math
import os
import re
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np

from lamino._plotting import measured_planes, save_figure, shade_unmeasured, show_slice
from lamino.geometry import Geometry, VolumeGrid
from lamino.io.files import clean_temporaries, temporary_folder
from lamino.studies.metrics.coverage import plot_fourier_coverage
from lamino.studies.planner import Configuration, PlanResult
from lamino.studies.scoring import METRICS
from lamino.studies.store import SLICES, ResultStore

DPI = 110

_AXIS_LABELS = {"tilt_deg": "tilt α (°)", "n_views": "views", "exposure_s": "exposure (s)", "kvp": "kVp",
                "method": "method", "trajectory": "trajectory"}
_OTHER_AXES = ("exposure_s", "kvp", "method", "trajectory")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1150px;
color:#222;line-height:1.45;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f0f0f0}
td.l,th.l{text-align:left}
tr.rec td{background:#fff4cc;font-weight:600}tr.infeasible td{color:#999}
.none{background:#fde2e2;border:2px solid #c0392b;padding:.8em 1em;font-weight:600}
.reason{background:#eef5fb;border-left:4px solid #2980b9;padding:.6em 1em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#444}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em}
.desc{color:#555}footer{margin-top:2em;font-size:.8em;color:#777}
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
def _build(store: ResultStore, plan: PlanResult, folder: str, final: str) -> None:
    """Draw every figure into ``folder`` and write ``index.html`` (links computed for its final place)."""
    import matplotlib

    matplotlib.use("Agg")
    records = {r["id"]: r for r in store.records()}
    figures: list[tuple[str, str]] = []                     # (file name, caption)
    figures += _heatmaps(store, plan, folder)
    if plan.configurations:
        figures.append(_pareto(plan, folder))
    figures += _slices_figure(store, plan, records, folder)
    figures += _coverage_figure(plan, records, folder)
    links = _links(store, folder, final)
    page = _page(store, plan, figures, links)
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


def _key_metrics(store: ResultStore, plan: PlanResult) -> list[str]:
    """Metrics named by the objective's weights or constraints (in that order), else every metric present."""
    present = _metric_names(plan.configurations)
    named = [*store.spec.weights, *(c.metric for c in store.spec.constraints)]
    keys = [m for m in dict.fromkeys(named) if m in present]
    return keys or present


def _metric_names(configs) -> list[str]:
    return sorted({m for c in configs for m in c.metrics_mean})


# ---------------------------------------------------------------------------------------------- figures
def _file_name(prefix: str, name: str) -> str:
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"


def _heatmaps(store: ResultStore, plan: PlanResult, folder: str) -> list[tuple[str, str]]:
    """One heatmap PNG per quantity (objective first, then each metric), tilt on x, views on y."""
    configs, fixed = _heatmap_configs(store, plan)
    if not configs:
        return []
    tilts = sorted({float(c.point["tilt_deg"]) for c in configs})
    views = sorted({int(c.point["n_views"]) for c in configs})
    rec = plan.recommended
    rec_cell = None
    if rec is not None and any(c.ids == rec.ids for c in configs):
        rec_cell = (tilts.index(float(rec.point["tilt_deg"])), views.index(int(rec.point["n_views"])))
    where = ", ".join(f"{_AXIS_LABELS.get(a, a)} = {_fmt(v)}" for a, v in fixed.items())
    where = f" at {where}" if where else ""
    outline = " The recommended configuration is outlined in red." if rec_cell else ""
    quantities: list[tuple[str, str, Callable[[Configuration], float]]] = [
        ("objective", "", lambda c: c.objective_mean)]
    quantities += [(m, metric_unit(m), lambda c, m=m: c.metrics_mean.get(m, math.nan))
                   for m in _metric_names(configs)]
    figures, empty = [], []
    for name, unit, value in quantities:
        table = np.full((len(views), len(tilts)), np.nan)
        for c in configs:
            table[views.index(int(c.point["n_views"])), tilts.index(float(c.point["tilt_deg"]))] = value(c)
        if name != "objective" and not np.isfinite(table).any():
            empty.append(name)              # nothing to measure here (e.g. no flat crack large enough to resolve)
            continue
        label = f"{name} ({unit})" if unit else name
        fname = _file_name("heatmap", name)
        save_figure(_heatmap_figure(table, tilts, views, label, rec_cell), os.path.join(folder, fname), dpi=DPI)
        what = f"the objective ({plan.objective})" if name == "objective" else f"{label}"
        figures.append((fname, f"Mean of {what} over the repeats, for every tilt and number of views of the "
                               f"sweep grid{where}.{outline}"))
    if empty and figures:
        fname, caption = figures[0]
        figures[0] = (fname, caption + f" Not drawn, with nothing to measure in this study (NaN at every point): "
                                       f"{', '.join(empty)}.")
    return figures


def _heatmap_figure(table: np.ndarray, tilts: list[float], views: list[int], label: str,
                    rec_cell: tuple[int, int] | None):
    """Annotated image of ``table`` (views × tilts); ``rec_cell`` = (tilt index, views index) is outlined."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(tilts), 1.4 + 0.6 * len(views)), layout="constrained")
    finite = table[np.isfinite(table)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    im = ax.imshow(table, origin="lower", cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-12,
                   aspect="auto")
    mid = (lo + hi) / 2
    for (j, i), v in np.ndenumerate(table):
        text = "—" if not np.isfinite(v) else f"{v:.3g}"
        ax.text(i, j, text, ha="center", va="center", fontsize=8, color="k" if v > mid else "w")
    if rec_cell is not None:
        ax.add_patch(Rectangle((rec_cell[0] - 0.5, rec_cell[1] - 0.5), 1, 1, fill=False, ec="red", lw=2.5))
    ax.set_xticks(range(len(tilts)), [f"{t:g}" for t in tilts])
    ax.set_yticks(range(len(views)), [str(n) for n in views])
    ax.set_xlabel(_AXIS_LABELS["tilt_deg"])
    ax.set_ylabel(_AXIS_LABELS["n_views"])
    ax.set_title(label, fontsize=10)
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    return fig


def _pareto(plan: PlanResult, folder: str) -> tuple[str, str]:
    """Objective (mean ± std) against scan time; the front as a step line, infeasible points grey."""
    import matplotlib.pyplot as plt

    configs = plan.configurations
    fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for feasible, style in ((False, dict(color="0.7", label="infeasible")), (True, dict(color="C0", label="feasible"))):
        sel = [c for c in configs if c.feasible == feasible]
        if sel:
            ax.errorbar([c.scan_time_s for c in sel], [c.objective_mean for c in sel],
                        yerr=[c.objective_std for c in sel], fmt="o", ms=5, capsize=3, **style)
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
    fname = "pareto.png"
    save_figure(fig, os.path.join(folder, fname), dpi=DPI)
    caption = ("Objective (mean ± standard deviation over the repeats) against scan time for every "
               "configuration. Grey: violates a constraint; orange step line: the Pareto front of the feasible "
               "configurations; red star: the recommended configuration.")
    return fname, caption


def _slices_figure(store: ResultStore, plan: PlanResult, records: dict[str, dict],
                   folder: str) -> list[tuple[str, str]]:
    """Central xy, xz, yz slices of the truth, the best and the worst configuration on one grey scale (μ, 1/mm)."""
    import matplotlib.pyplot as plt

    chosen = [(name, c) for name, c in (("best", plan.best), ("worst", plan.worst)) if c is not None and c.ids]
    chosen = [(name, c) for name, c in chosen if c.ids[0] in records]
    if len(chosen) == 2 and chosen[0][1].ids[0] == chosen[1][1].ids[0]:
        chosen = chosen[:1]
    if not chosen:
        return []
    data = {name: store.slices(c.ids[0]) for name, c in chosen}
    rows = [("truth", data[chosen[0][0]]["truth"], records[chosen[0][1].ids[0]])]
    rows += [(f"{name}: {_describe(c)}", data[name]["recon"], records[c.ids[0]]) for name, c in chosen]
    values = np.concatenate([np.ravel(img) for _, sl, _ in rows for img in sl.values()])
    values = values[np.isfinite(values)]
    lo, hi = (float(np.percentile(values, q)) for q in (0.5, 99.5)) if values.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-6
    fig, axes = plt.subplots(len(rows), 3, figsize=(12, 3.4 * len(rows)), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.88, bottom=0.5 / (3.4 * len(rows)), top=1 - 0.4 / (3.4 * len(rows)),
                        wspace=0.3, hspace=0.45)
    for r, (title, slices, record) in enumerate(rows):
        measured = _measured_slices(record) if r > 0 else None
        for ax, plane in zip(axes[r], SLICES, strict=True):
            img = np.asarray(slices[plane], np.float32)
            h, v, unit = _slice_axes(record, plane, img.shape)
            if unit == "mm":
                im = show_slice(ax, img, h, v, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
                if measured is not None and measured[plane].shape == img.shape:
                    shade_unmeasured(ax, measured[plane], h, v)
            else:
                im = ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest",
                               aspect="auto")
            ax.set_title(f"{title} — {plane}", fontsize=9)
            ax.set_xlabel(f"{plane[0]} ({unit})")
            ax.set_ylabel(f"{plane[1]} ({unit})")
    fig.colorbar(im, cax=fig.add_axes((0.91, 0.15, 0.015, 0.7)), label="μ (1/mm)")
    fname = "slices.png"
    save_figure(fig, os.path.join(folder, fname), dpi=DPI)
    names = " and ".join(f"the {name} configuration ({_describe(c)})" for name, c in chosen)
    caption = (f"Central xy, xz and yz slices of the truth and of the reconstructions of {names} (first noise "
               f"repeat), all on one grey scale of μ (1/mm). Greyed out: voxels that left the detector in some "
               f"views; dashed yellow: the boundary of the region measured in every view.")
    return [(fname, caption)]


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


def _coverage_figure(plan: PlanResult, records: dict[str, dict], folder: str) -> list[tuple[str, str]]:
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
        return [(fname, f"Fourier coverage of the {name} configuration ({_describe(config)}), section through the "
                        f"rotation axis: grey is measured, red is the missing double cone of half-angle α (the "
                        f"tilt) around the axis.")]
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


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return _fmt(mean) if not std else f"{_fmt(mean)} ± {_fmt(std)}"


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


def _protocol_table(store: ResultStore, plan: PlanResult) -> str:
    c = plan.recommended
    p = c.point
    kvp = "— (monochromatic source)" if p.get("kvp") is None else f"{_e(p['kvp'])} kVp"
    rows = [("tilt α", _e(p.get("tilt_deg")) + "°"), ("views", _e(p.get("n_views"))),
            ("exposure per view", _unit(p.get("exposure_s"), "s")), ("tube voltage", kvp),
            ("reconstruction", _e(p.get("method"))),
            ("trajectory", _e(p.get("trajectory", "cl"))), ("scan time", _unit(c.scan_time_s, "s")),
            ("objective", html.escape(_pm(c.objective_mean, c.objective_std))),
            ("repeats (noise seeds × instances)", str(len(c.ids))), ("stage", html.escape(c.stage))]
    for m in _key_metrics(store, plan):
        unit = metric_unit(m)
        rows.append((m, html.escape(_pm(c.metrics_mean.get(m), c.metrics_std.get(m)) + (f" {unit}" if unit else ""))))
    for k, v in (plan.gradient or {}).items():
        rows.append((f"gradient: {k}", _e(v)))
    body = "\n".join(_row([html.escape(k), v]) for k, v in rows)
    return f"<table>\n{body}\n</table>"


def _configurations_table(plan: PlanResult) -> str:
    metrics = _metric_names(plan.configurations)
    head = ["stage", "tilt (°)", "views", "exposure (s)", "kVp", "method", "trajectory", "scan time (s)", "objective",
            "feasible", "Pareto", "repeats"]
    head += [f"{m} ({metric_unit(m)})" if metric_unit(m) else m for m in metrics]
    rows = [_row([html.escape(h) for h in head], header=True)]
    order = sorted(plan.configurations, key=lambda c: -c.objective_mean if math.isfinite(c.objective_mean) else 1e300)
    for c in order:
        p = c.point
        cells = [html.escape(c.stage), *(_e(p.get(k)) for k in _AXIS_LABELS),
                 _e(c.scan_time_s), html.escape(_pm(c.objective_mean, c.objective_std)), _e(c.feasible),
                 _e(c.pareto), str(len(c.ids))]
        cells += [html.escape(_pm(c.metrics_mean.get(m), c.metrics_std.get(m))) for m in metrics]
        cls = "rec" if plan.recommended is not None and c.ids == plan.recommended.ids else (
            "" if c.feasible else "infeasible")
        rows.append(_row(cells, cls))
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _page(store: ResultStore, plan: PlanResult, figures: list[tuple[str, str]], links: list[tuple[str, str]]) -> str:
    from lamino import __version__

    spec = store.spec
    name = html.escape(spec.name)
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{name}</title>\n"
             f"<style>{_CSS}</style>\n</head>\n<body>", f"<h1>{name}</h1>"]
    if spec.description:
        parts.append(f'<p class="desc">{html.escape(spec.description)}</p>')
    n_points = sum(len(c.ids) for c in plan.configurations)
    parts.append(f"<p>{len(plan.configurations)} configurations, {n_points} evaluated points "
                 f"(phantom <code>{html.escape(str(spec.phantom.get('name')))}</code>, scanner "
                 f"<code>{html.escape(str(spec.scanner.get('preset')))}</code>).</p>")
    parts.append("<h2>Recommended protocol</h2>")
    if plan.recommended is None:
        parts.append('<p class="none">No protocol is recommended: no configuration satisfies every constraint. '
                     "Relax the constraints or widen the sweep; the figures below show every configuration.</p>")
        if plan.gradient:
            parts.append("<table>" + "".join(_row([html.escape(f"gradient: {k}"), _e(v)])
                                             for k, v in plan.gradient.items()) + "</table>")
    else:
        parts.append(_protocol_table(store, plan))
    if plan.reason:
        parts.append(f'<p class="reason">{html.escape(plan.reason)}</p>')
    parts.append("<h2>Objective and constraints</h2>")
    parts.append(f"<p>Objective (higher is better): <code>{html.escape(plan.objective or '—')}</code></p>")
    if spec.constraints:
        items = "".join(f"<li><code>{html.escape(str(c))}</code></li>" for c in spec.constraints)
        parts.append(f"<p>Constraints (on the means over the repeats):</p><ul>{items}</ul>")
    else:
        parts.append("<p>No constraints.</p>")
    if figures:
        parts.append("<h2>Figures</h2>")
    for i, (fname, caption) in enumerate(figures, 1):
        src = html.escape(fname, quote=True)
        parts.append(f'<figure><img src="{src}" alt="{html.escape(caption, quote=True)}">'
                     f"<figcaption>Figure {i}. {html.escape(caption)}</figcaption></figure>")
    parts.append("<h2>All configurations</h2><p>Sorted by objective; the recommended row is highlighted, "
                 "infeasible rows are grey. Values are mean ± standard deviation over the repeats.</p>")
    parts.append(_configurations_table(plan))
    parts.append("<h2>Files</h2><ul>")
    parts += [f'<li><a href="{html.escape(href, quote=True)}">{html.escape(label)}</a></li>' for href, label in links]
    parts.append(f"<li>results folder: <code>{html.escape(os.path.abspath(store.path))}</code></li></ul>")
    if spec.text:
        parts.append(f"<details><summary>study file</summary><pre>{html.escape(spec.text)}</pre></details>")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>Written by lamino {html.escape(str(__version__))} on {stamp}.</footer>\n</body>\n</html>\n")
    return "\n".join(parts)

"""Tests of the static HTML study report (lamino.studies.report) on a tiny hand-made store and plan."""

from __future__ import annotations

import html.parser
import math
import os
import re
import types

import matplotlib.image
import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.studies import report
from lamino.studies.planner import Configuration, PlanResult, analyse, indistinguishable, uncertain
from lamino.studies.spec import Constraint, parse_spec, point_id
from lamino.studies.store import PointResult, ResultStore

READOUT_S = 0.1                                     # esrf_id19 readout per view
EXPOSURE_S = 0.2                                    # esrf_id19 default exposure
DESCRIPTION = "Tilt vs views <b>& friends</b>"


def _study_dict() -> dict:
    return {"study": {"name": "star-test", "description": DESCRIPTION},
            "phantom": {"name": "siemens_star"}, "scanner": {"preset": "esrf_id19"},
            "sweep": {"tilt_deg": [10, 30], "n_views": [20, 40]},
            "objective": {"weights": {"ssim": 1.0}, "constraints": ["scan_time_s <= 10"]}}


def _parse(data: dict):
    return parse_spec(data, source="test.toml", text="[study]\nname = \"star-test\"\n")


def _metrics(tilt: float, views: int) -> dict[str, float]:
    """Fake metrics: quality grows with views and tilt; scan time = views × (exposure + readout)."""
    return {"ssim": 0.5 + tilt / 100 + views / 200, "rmse": 0.1 - tilt / 1000, "star_limit_lp_mm": views / 2.0,
            "scan_time_s": views * (EXPOSURE_S + READOUT_S)}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> ResultStore:
    spec = _parse(_study_dict())
    st = ResultStore.create(str(tmp_path_factory.mktemp("results")), spec)
    yy, xx = np.mgrid[:8, :8]
    truth = ((xx - 3.5) ** 2 + (yy - 3.5) ** 2 < 9).astype(np.float32) * 2.0       # μ = 2 /mm disc
    grid = VolumeGrid((8, 8, 8), 0.1)
    for point in spec.points():
        tilt, views = point["tilt_deg"], point["n_views"]
        geom = Geometry.parallel(tilt_deg=tilt, n_views=views, det_shape=(8, 8), det_spacing=0.1)
        recon = truth * np.cos(np.radians(tilt))
        st.write(PointResult(id=point_id(spec, point), point=point, metrics=_metrics(tilt, views),
                             seconds={"total": 1.0},
                             provenance={"geometry": geom.to_dict(), "grid": grid.to_dict()},
                             recon_slices={k: recon for k in ("xy", "xz", "yz")},
                             truth_slices={k: truth for k in ("xy", "xz", "yz")}))
    return st


def _plan(store: ResultStore, recommend: bool = True) -> PlanResult:
    configs = []
    for r in store.records():
        p = {k: v for k, v in r["point"].items() if k != "seed"}
        m = r["metrics"]
        configs.append(Configuration(point=p, ids=(r["id"],), stage=r["stage"], metrics_mean=dict(m),
                                     metrics_std={k: 0.01 for k in m}, objective_mean=m["ssim"], objective_std=0.02,
                                     scan_time_s=m["scan_time_s"], feasible=m["scan_time_s"] <= 10,
                                     pareto=m["scan_time_s"] <= 10 and p["tilt_deg"] == 30))
    by = {(c.point["tilt_deg"], c.point["n_views"]): c for c in configs}
    rec = by[(30, 20)] if recommend else None
    reason = "highest objective <among> feasible" if recommend else "no configuration meets scan_time_s <= 10"
    return PlanResult(configurations=tuple(configs), recommended=rec, reason=reason, best=by[(30, 40)],
                      worst=by[(10, 20)], objective="1 × ssim", gradient={"d_objective_d_tilt_per_deg": 0.01})


class _Refs(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.imgs: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        for key in ("src", "href"):
            if key in a:
                self.refs.append(a[key])
        self._in_title = tag == "title"

    def handle_endtag(self, tag):
        self._in_title = False

    def handle_data(self, data):
        if self._in_title:
            self.title += data


def _parse_page(path: str) -> tuple[_Refs, str]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    refs = _Refs()
    refs.feed(text)
    return refs, text


@pytest.fixture
def fake_coverage(monkeypatch):
    """A stand-in plot_fourier_coverage that records the geometry it was given."""
    import matplotlib.pyplot as plt

    seen = []

    def plot_fourier_coverage(geometry, ax=None):
        seen.append(geometry)
        fig, ax = plt.subplots(figsize=(3, 3))
        ax.plot([0, 1], [0, np.tan(np.radians(geometry.tilt_deg))])
        return fig

    monkeypatch.setattr(report, "plot_fourier_coverage", plot_fourier_coverage)
    return seen


def _check_refs(out: str, refs: _Refs) -> None:
    assert refs.refs, "the page references no files"
    for ref in refs.refs:
        assert not ref.startswith(("http:", "https:", "/", "file:")), ref
        assert os.path.isfile(os.path.join(out, ref)), f"{ref} referenced but missing"
    for src in refs.imgs:
        with open(os.path.join(out, src), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(os.path.join(out, src))
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_report_page_and_files(store, tmp_path, fake_coverage):
    out = str(tmp_path / "report")
    plan = _plan(store)
    index = report.write_report(store, plan, out)
    assert index == os.path.join(os.path.abspath(out), "index.html")
    refs, text = _parse_page(index)
    assert refs.title == "star-test"
    _check_refs(out, refs)
    names = set(refs.imgs)
    assert {"heatmap_objective.png", "heatmap_rmse.png", "heatmap_star_limit_lp_mm.png",
            "heatmap_scan_time_s.png", "pareto.png", "slices.png", "coverage.png"} <= names
    assert "heatmap_ssim.png" not in names and "It equals ssim, not drawn again." in text    # objective = 1 × ssim
    assert {os.path.basename(h) for h in refs.refs if h.endswith((".csv", ".toml"))} == {"summary.csv", "study.toml"}
    # the coverage diagram is drawn for the recommended configuration's geometry (tilt 30°, 20 views)
    assert len(fake_coverage) == 1
    assert fake_coverage[0].tilt_deg == pytest.approx(30.0) and fake_coverage[0].n_views == 20
    # text is escaped, the recommended protocol is listed with its numbers
    assert "&lt;b&gt;&amp; friends&lt;/b&gt;" in text and "<b>&" not in text
    assert "highest objective &lt;among&gt; feasible" in text
    rec = plan.recommended
    assert "0.9 (one realisation: uncertainty unknown)" in text        # 0.5 + 0.3 + 0.1 = 0.9, n = 1
    assert rec.objective_mean == pytest.approx(0.9)
    assert not re.search(r"\d ± \d", text)                               # one realisation: no standard errors
    assert "<td>6 s</td>" in text                                       # 20 × (0.2 + 0.1) s
    assert "scan_time_s &lt;= 10" in text
    assert "d_objective_d_tilt_per_deg" in text
    assert text.count('<tr class="rec">') == 1
    assert text.count('<tr class="infeasible">') == 2                   # the two 40-view configurations (12 s)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]   # no temporary folder left


def test_report_with_real_coverage(store, tmp_path):
    out = str(tmp_path / "report")
    refs, _ = _parse_page(report.write_report(store, _plan(store), out))
    assert "coverage.png" in refs.imgs
    _check_refs(out, refs)


def test_overwrite_refused_then_replaced(store, tmp_path, fake_coverage):
    out = tmp_path / "report"
    report.write_report(store, _plan(store), str(out))
    (out / "stale.txt").write_text("old")
    with pytest.raises(ValueError, match="report.*already exists"):
        report.write_report(store, _plan(store), str(out))
    assert (out / "stale.txt").exists()                                  # refused: nothing touched
    index = report.write_report(store, _plan(store), str(out), overwrite=True)
    assert os.path.isfile(index) and not (out / "stale.txt").exists()
    assert sorted(n for n in os.listdir(tmp_path)) == ["report"]        # no temporary folders left


def test_no_recommendation_page(store, tmp_path, fake_coverage):
    out = str(tmp_path / "report")
    plan = _plan(store, recommend=False)
    refs, text = _parse_page(report.write_report(store, plan, out))
    assert "No protocol is recommended" in text
    assert '<tr class="rec">' not in text
    _check_refs(out, refs)
    assert {"heatmap_objective.png", "pareto.png", "slices.png", "coverage.png"} <= set(refs.imgs)
    # without a recommendation the coverage diagram falls back to the best configuration (tilt 30°, 40 views)
    assert fake_coverage[0].tilt_deg == pytest.approx(30.0) and fake_coverage[0].n_views == 40


def test_crash_leaves_no_report(store, tmp_path, monkeypatch, fake_coverage):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "_pareto", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(store, _plan(store), str(tmp_path / "report"))
    assert os.listdir(tmp_path) == []


def test_report_builds_in_a_named_temporary_and_removes_dead_writers_builds(store, tmp_path, monkeypatch,
                                                                              fake_coverage):
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    old = time.time() - 7200
    dead = tmp_path / f".report.lamino-{proc.pid}-abcdefgh"               # left by a killed `study report`
    live = tmp_path / f".report.lamino-{os.getpid()}-zyxwvuts"            # another report being built now
    for d in (dead, live):
        d.mkdir()
        (d / "index.html").write_text("half")
        os.utime(d, (old, old))
    seen = []
    build = report._build

    def spy(store_, plan, folder, final):
        seen.append(os.path.basename(folder))
        build(store_, plan, folder, final)

    monkeypatch.setattr(report, "_build", spy)
    report.write_report(store, _plan(store), str(tmp_path / "report"))
    assert len(seen) == 1 and seen[0].startswith(f".report.lamino-{os.getpid()}-")
    assert sorted(os.listdir(tmp_path)) == sorted(["report", live.name])


def test_heatmap_slices_other_axes_at_recommended_values():
    def conf(tilt, views, method, obj):
        return Configuration(point={"tilt_deg": tilt, "n_views": views, "exposure_s": 0.2, "kvp": None,
                                    "method": method}, ids=(f"{tilt}-{views}-{method}",), stage="grid",
                             metrics_mean={}, metrics_std={}, objective_mean=obj, objective_std=0.0,
                             scan_time_s=views * 0.3, feasible=True, pareto=False)

    configs = [conf(t, n, m, t + n) for t in (10, 30) for n in (20, 40) for m in ("fbp", "sirt")]
    refine = Configuration(**{**conf(20, 20, "sirt", 0).__dict__, "stage": "refine"})
    plan = PlanResult(configurations=(*configs, refine), recommended=configs[3], reason="", best=configs[-1],
                      worst=configs[0], objective="")
    fake = types.SimpleNamespace(spec=types.SimpleNamespace(axes=lambda: {
        "tilt_deg": [10, 30], "n_views": [20, 40], "exposure_s": [0.2], "kvp": [None], "method": ["fbp", "sirt"]}))
    chosen, fixed = report._heatmap_configs(fake, plan)
    assert fixed == {"method": "sirt"}                                   # the recommended one is (10°, 40, sirt)
    assert len(chosen) == 4 and {c.point["method"] for c in chosen} == {"sirt"}
    assert all(c.stage == "grid" for c in chosen)


def _fake_store(weights: dict, constraints=()) -> types.SimpleNamespace:
    """What _heatmaps reads of a store: the spec's sweep axes, weights and constraints."""
    return types.SimpleNamespace(spec=types.SimpleNamespace(
        axes=lambda: {"tilt_deg": [10, 30], "n_views": [20, 40], "exposure_s": [0.2], "kvp": [None],
                      "method": ["fbp"]}, weights=weights, constraints=list(constraints)))


def _grid_plan(metrics) -> PlanResult:
    """A one-realisation plan over tilt (10, 30) × views (20, 40) with ``metrics(tilt, views)``; objective = ssim."""
    def conf(tilt, views):
        m = metrics(tilt, views)
        return Configuration(point={"tilt_deg": tilt, "n_views": views, "exposure_s": 0.2, "kvp": None,
                                    "method": "fbp"}, ids=(f"{tilt}-{views}",), stage="grid", metrics_mean=m,
                             metrics_std={}, objective_mean=m["ssim"], objective_std=0.0, scan_time_s=views * 0.3,
                             feasible=True, pareto=False)

    configs = [conf(t, n) for t in (10, 30) for n in (20, 40)]
    return PlanResult(configurations=tuple(configs), recommended=configs[0], reason="", best=configs[-1],
                      worst=configs[0], objective="2 × ssim")


def test_metrics_with_nothing_to_measure_get_no_heatmap_but_a_note(tmp_path):
    plan = _grid_plan(lambda t, n: {"ssim": 0.5 + t / 100, "rmse": 0.1 - n / 1000, "crack_detection_flat": math.nan})
    figures, notes = report._heatmaps(_fake_store({"ssim": 2.0}), plan, str(tmp_path))
    # ssim (in the objective) comes before rmse; its table equals the objective's, so it is not drawn twice
    assert [f.file for f in figures] == ["heatmap_objective.png", "heatmap_rmse.png"]
    assert "It equals ssim" in figures[0].caption
    assert notes == ["Not drawn, nothing to measure for this phantom or region (NaN at every point): "
                     "crack_detection_flat."]


def test_constant_metrics_are_listed_in_one_line_not_drawn(tmp_path, monkeypatch):
    drawn = []
    draw = report._heatmap_figure

    def spy(mean, sem, tilts, views, label, *args, **kwargs):
        drawn.append(label)
        return draw(mean, sem, tilts, views, label, *args, **kwargs)

    monkeypatch.setattr(report, "_heatmap_figure", spy)
    plan = _grid_plan(lambda t, n: {"ssim": 0.5 + t / 100, "rmse": 0.1 - n / 1000, "saturated_fraction": 0.0,
                                    "nrmse": 1.0 + 1e-12 * n})          # equal to 1e-9: the old "1e−12 + 1" bar
    figures, notes = report._heatmaps(_fake_store({"ssim": 1.0}, [Constraint("saturated_fraction", "<=", 0.01)]), plan,
                                      str(tmp_path))
    assert drawn == ["objective", "rmse (1/mm)"]
    assert not {"heatmap_saturated_fraction.png", "heatmap_nrmse.png"} & {f.file for f in figures}
    assert notes == ["Constant over the sweep, not drawn: saturated_fraction = 0; nrmse = 1."]


def test_constant_value_and_cell_text():
    assert report.constant_value(np.array([[0.0, 0.0], [0.0, np.nan]])) == 0.0
    assert report.constant_value(np.array([1.0, 1.0 + 1e-12])) == pytest.approx(1.0)
    assert report.constant_value(np.array([1.0, 1.001])) is None
    assert report.constant_value(np.array([np.nan, np.nan])) is None
    assert report._cell_text(0.5876, 0.012) == "0.588\n± 0.012"
    assert report._cell_text(0.5876, 0.0) == "0.588"                     # no spread: never "± 0"
    assert report._cell_text(0.5876, math.nan) == "0.588"                # one realisation: mean only
    assert report._cell_text(math.nan, 0.01) == "—"
    assert report._cell_text(2093.4, math.nan) == "2093"                 # not 2.09e+03
    assert report._pm(0.9, 0.0) == "0.9" and report._pm(0.9, 0.004) == "0.9 ± 0.004"


def test_metric_units():
    assert report.metric_unit("rmse") == "1/mm"
    assert report.metric_unit("psnr") == "dB"
    assert report.metric_unit("star_limit_lp_mm") == "lp/mm"
    assert report.metric_unit("dose_mgy") == "mGy"
    assert report.metric_unit("edge_fwhm_mm") == "mm"
    assert report.metric_unit("ssim") == ""
    assert report.metric_unit("something_new") == ""


def test_bad_plan_rejected(store, tmp_path):
    with pytest.raises(ValueError, match="plan="):
        report.write_report(store, {"recommended": None}, str(tmp_path / "r"))


# ---------------------------------------------------------------------------------------------- two repeats
TILTS2 = [10, 28, 30]


def _metrics2(tilt: float, views: int, seed: int) -> dict[str, float]:
    """Fake metrics of two noise seeds: ssim ± 0.01 with opposite signs at 30° and elsewhere (so 28° and 30° cannot
    be told apart, 10° can), a constant and a nearly constant metric, and one with nothing to measure."""
    noise = 0.01 * (seed - 0.5) * (1 if tilt == 30 else -1)
    return {**_metrics(tilt, views), "ssim": 0.5 + tilt / 100 + views / 200 + noise, "saturated_fraction": 0.0,
            "nrmse": 0.25 + 1e-12 * views, "crack_detection_flat": math.nan}


@pytest.fixture(scope="module")
def store2(tmp_path_factory) -> ResultStore:
    """Three tilts × two view counts × two noise seeds, analysed by the real planner."""
    spec = _parse({**_study_dict(), "sweep": {"tilt_deg": TILTS2, "n_views": [20, 40], "seeds": [0, 1]}})
    st = ResultStore.create(str(tmp_path_factory.mktemp("results2")), spec)
    grid = VolumeGrid((8, 8, 8), 0.1)
    disc = np.ones((8, 8), np.float32)
    for point in spec.points():
        geom = Geometry.parallel(tilt_deg=point["tilt_deg"], n_views=point["n_views"], det_shape=(8, 8),
                                 det_spacing=0.1)
        st.write(PointResult(id=point_id(spec, point), point=point,
                             metrics=_metrics2(point["tilt_deg"], point["n_views"], point["seed"]),
                             seconds={"total": 1.0}, provenance={"geometry": geom.to_dict(), "grid": grid.to_dict()},
                             recon_slices={k: disc for k in SLICE_NAMES}, truth_slices={k: disc for k in SLICE_NAMES}))
    return st


SLICE_NAMES = ("xy", "xz", "yz")
PLUS_MINUS_ZERO = re.compile(r"±\s*0(\.0*)?(?![\d.])")                  # "± 0", "± 0.0", not "± 0.02"


def test_two_repeats_cells_show_mean_and_standard_error(store2, tmp_path, monkeypatch, fake_coverage):
    cells = {}
    draw = report._heatmap_figure

    def spy(mean, sem, tilts, views, label, *args, **kwargs):
        fig = draw(mean, sem, tilts, views, label, *args, **kwargs)
        cells[label] = [t.get_text() for t in fig.axes[0].texts]
        return fig

    monkeypatch.setattr(report, "_heatmap_figure", spy)
    plan = analyse(store2)
    assert all(c.n == 2 for c in plan.configurations)
    refs, text = _parse_page(report.write_report(store2, plan, str(tmp_path / "report")))
    assert len(cells["objective"]) == 6 and all("\n± " in t for t in cells["objective"])
    best = next(c for c in plan.configurations if c.point["tilt_deg"] == 30 and c.point["n_views"] == 40)
    assert f"{best.objective_mean:.3g}\n± {best.objective_sem:.2g}" in cells["objective"]
    assert all("±" not in t for t in cells["scan_time_s (s)"])         # the same in both repeats: no "± 0"
    assert "mean ± standard error of the mean over 2 repeats" in text
    assert "uncertainty unknown" not in text
    assert not PLUS_MINUS_ZERO.search(text) and "± nan" not in text
    # constant metrics are one line, not heatmaps; the metric with nothing to measure is named
    assert "Constant over the sweep, not drawn: nrmse = 0.25; saturated_fraction = 0." in text
    assert not {"heatmap_nrmse.png", "heatmap_saturated_fraction.png", "heatmap_crack_detection_flat.png"} & set(
        refs.imgs)
    assert "(NaN at every point): crack_detection_flat." in text
    # layout: the heatmaps sit in one grid, the objective's first and larger, the constraint's metric next
    heat = [i for i in refs.imgs if i.startswith("heatmap_")]
    assert heat[:2] == ["heatmap_objective.png", "heatmap_scan_time_s.png"]
    assert '<div class="grid"><figure class="objective"><img src="heatmap_objective.png"' in text
    assert '<div class="scroll"><table>' in text and "max-width:100%" in text


def test_one_realisation_said_once_under_the_heatmaps(store, tmp_path):
    figures, _ = report._heatmaps(store, _plan(store), str(tmp_path))
    said = [f.file for f in figures if "one realisation per configuration: uncertainty unknown" in f.caption]
    assert said == ["heatmap_objective.png"] and len(figures) > 2


def test_decision_section(store2, tmp_path, fake_coverage):
    plan = analyse(store2)
    rec = plan.recommended
    assert (rec.point["tilt_deg"], rec.point["n_views"]) == (30, 20)
    _, text = _parse_page(report.write_report(store2, plan, str(tmp_path / "report")))
    decision = text[text.index('<h2 id="decision">'):text.index("<h2>Recommended protocol</h2>")]
    assert text.index('<h2 id="decision">') < text.index("<h2>Objective and metrics")
    assert "<b>Recommended: tilt 30°, 20 views, fbp</b>" in decision
    assert "(standard error; 95 % CI" in uncertain(rec) and uncertain(rec) in decision
    # the configurations the planner's paired statistics cannot tell from the best, with their paired interval
    feasible = [c for c in plan.configurations if c.feasible]
    near = [c for c in feasible if c is not rec and indistinguishable(rec, c)]
    assert [(c.point["tilt_deg"], c.point["n_views"]) for c in near] == [(28, 20)]
    assert "Cannot be told from the best" in decision
    assert "tilt 28°, 20 views, fbp, 6 s: best − this = 0.02 ± 0.01 (95 % CI" in decision
    assert "tilt 10°" not in decision
    # what would change it: more repeats, the edge of the grid, a constraint that rules out higher scores
    assert "What would change the decision" in decision
    assert "more repeats would narrow the intervals" in decision
    assert "high end of the tilt swept (30°)" in decision
    assert "low end of the number of views swept (20 views)" in decision
    assert "2 configurations score higher" in decision and "scan_time_s &lt;= 10" in decision


def test_decision_with_one_realisation_and_without_recommendation(store, tmp_path, fake_coverage):
    _, text = _parse_page(report.write_report(store, _plan(store), str(tmp_path / "a")))
    assert "One realisation per configuration: the noise is unknown" in text
    _, text = _parse_page(report.write_report(store, _plan(store, recommend=False), str(tmp_path / "b")))
    decision = text[text.index('<h2 id="decision">'):]
    assert "No protocol is recommended" in decision
    assert "scan_time_s &lt;= 10: fails for 2 of 4" in decision


def test_pareto_error_bars_are_standard_errors(store, store2):
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    plan = analyse(store2)
    fig = report.pareto_figure(plan)
    bars = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    plt.close(fig)
    assert len(bars) == 2                                               # feasible and infeasible
    half = sorted(float(seg[1, 1] - seg[0, 1]) / 2 for c in bars for seg in c.lines[2][0].get_segments())
    assert half == pytest.approx(sorted(c.objective_sem for c in plan.configurations))
    fig = report.pareto_figure(_plan(store))                            # one realisation: no bars at all
    assert not [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    plt.close(fig)

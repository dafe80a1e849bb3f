"""Tests of the static HTML study report (lamino.studies.report) on a tiny hand-made store and plan."""

from __future__ import annotations

import html.parser
import math
import os
import types

import matplotlib.image
import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.studies import report
from lamino.studies.planner import Configuration, PlanResult
from lamino.studies.spec import parse_spec, point_id
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
    assert {"heatmap_objective.png", "heatmap_ssim.png", "heatmap_rmse.png", "heatmap_star_limit_lp_mm.png",
            "heatmap_scan_time_s.png", "pareto.png", "slices.png", "coverage.png"} <= names
    assert {os.path.basename(h) for h in refs.refs if h.endswith((".csv", ".toml"))} == {"summary.csv", "study.toml"}
    # the coverage diagram is drawn for the recommended configuration's geometry (tilt 30°, 20 views)
    assert len(fake_coverage) == 1
    assert fake_coverage[0].tilt_deg == pytest.approx(30.0) and fake_coverage[0].n_views == 20
    # text is escaped, the recommended protocol is listed with its numbers
    assert "&lt;b&gt;&amp; friends&lt;/b&gt;" in text and "<b>&" not in text
    assert "highest objective &lt;among&gt; feasible" in text
    rec = plan.recommended
    assert f"{rec.objective_mean:.4g} ± 0.02" in text                  # 0.5 + 0.3 + 0.1 = 0.9
    assert rec.objective_mean == pytest.approx(0.9)
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


def test_metrics_with_nothing_to_measure_get_no_heatmap_but_a_note(tmp_path):
    def conf(tilt, views):
        return Configuration(point={"tilt_deg": tilt, "n_views": views, "exposure_s": 0.2, "kvp": None,
                                    "method": "fbp"}, ids=(f"{tilt}-{views}",), stage="grid",
                             metrics_mean={"ssim": 0.5, "crack_detection_flat": math.nan}, metrics_std={},
                             objective_mean=0.5, objective_std=0.0, scan_time_s=views * 0.3, feasible=True,
                             pareto=False)

    configs = [conf(t, n) for t in (10, 30) for n in (20, 40)]
    plan = PlanResult(configurations=tuple(configs), recommended=configs[0], reason="", best=configs[0],
                      worst=configs[-1], objective="1 × ssim")
    fake = types.SimpleNamespace(spec=types.SimpleNamespace(axes=lambda: {
        "tilt_deg": [10, 30], "n_views": [20, 40], "exposure_s": [0.2], "kvp": [None], "method": ["fbp"]}))
    figures = report._heatmaps(fake, plan, str(tmp_path))
    assert [f for f, _ in figures] == ["heatmap_objective.png", "heatmap_ssim.png"]
    assert "nothing to measure in this study (NaN at every point): crack_detection_flat." in figures[0][1]


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

"""The per-task d′ of a study point and the report's close-up of one task (issue 17): a tiny pellet study (two
tilts, 24 views, a 8 × 32 × 32 grid of 40 µm voxels, four pores of 50–60 µm radius and two cracks)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tomllib

import h5py
import matplotlib.image
import numpy as np
import pytest

from lamino import phantoms
from lamino.studies import ResultStore, analyse, evaluate_point, parse_spec, run_study, write_report
from lamino.studies.metrics.detectability import ROSE_DPRIME
from lamino.studies.tasks import Task, hardest_task

STUDY = """
[study]
name = "closeup"

[phantom]
name = "ssb_pellet"
seed = 2
params = { diameter_mm = 1.0, thickness_mm = 0.24, electrode_diameter_mm = 0.8, pouch_size_mm = [1.3, 1.3], \
           n_transverse = 2, n_spallation = 0, aperture_um = [40.0, 50.0], crack_length_mm = [0.3, 0.5], \
           n_pores = 4, pore_radius_um = [50.0, 60.0] }

[scanner]
preset = "esrf_id19"
det_shape = [40, 56]
det_spacing = 0.04
energy_kev = 30.0
exposure_s = 0.0002

[simulate]
n_bins = 1

[recon]
grid = { shape = [8, 32, 32], voxel_size = 0.04 }

[sweep]
tilt_deg = [20, 40]
n_views = [24]

[metrics]
names = ["pore_dprime", "crack_dprime", "rmse"]

[objective]
weights = { pore_dprime = 1.0 }

[planner]
refine = "none"
"""
VOXEL_MM = 0.04
HALF = 12                                            # lamino.studies.point.CLOSEUP_HALF


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(results folder, plan) of the tiny pellet study."""
    folder = tmp_path_factory.mktemp("closeup")
    spec = folder / "study.toml"
    spec.write_text(STUDY)
    out = str(folder / "results")
    plan = run_study(str(spec), out, refine=False, progress=False)
    return out, plan


def _pellet():
    return phantoms.get("ssb_pellet", seed=2, diameter_mm=1.0, thickness_mm=0.24, electrode_diameter_mm=0.8,
                        pouch_size_mm=[1.3, 1.3], n_transverse=2, n_spallation=0, aperture_um=[40.0, 50.0],
                        crack_length_mm=[0.3, 0.5], n_pores=4, pore_radius_um=[50.0, 60.0])


def test_every_tasks_dprime_is_stored_and_the_metrics_are_their_medians(study):
    out, _ = study
    records = ResultStore.open(out).records()
    assert len(records) == 2
    for r in records:
        d = r["task_dprimes"]
        assert sorted(d) == ["crack_0", "crack_1", "pore_0", "pore_1", "pore_2", "pore_3"]
        pores = [v for k, v in d.items() if k.startswith("pore") and math.isfinite(v)]
        cracks = [v for k, v in d.items() if k.startswith("crack") and math.isfinite(v)]
        assert len(pores) == 4 and len(cracks) == 2
        assert float(np.median(pores)) == r["metrics"]["pore_dprime"]          # exactly: the same numbers
        assert float(np.median(cracks)) == r["metrics"]["crack_dprime"]
        assert all(3.0 < v < 60.0 for v in pores + cracks)


def test_the_closeup_is_centred_on_the_hardest_pore(study):
    out, _ = study
    store = ResultStore.open(out)
    pellet = _pellet()
    for r in store.records():
        c = store.closeup(r["id"])
        pores = {k: v for k, v in r["task_dprimes"].items() if k.startswith("pore")}
        assert c.name == min(pores, key=pores.get) and c.kind == "pore"
        assert c.dprime == pores[c.name] and c.metric == "pore_dprime" and c.candidates == 4
        assert c.planes == ("xy", "xz") and c.voxel_mm == (VOXEL_MM,) * 3
        centre = pellet.params["pores"][int(c.name.split("_")[1])]["center_mm"]
        assert np.linalg.norm(np.subtract(c.centre_mm, centre)) <= math.sqrt(3) / 2 * VOXEL_MM + 1e-9
        for plane in c.planes:
            truth, recon, signal = (c.images[k][plane] for k in ("truth", "recon", "signal"))
            assert truth.shape == recon.shape == signal.shape == (2 * HALF + 1, 2 * HALF + 1)
            assert truth[HALF, HALF] == 0.0                                      # the pore: void
            matrix = float(np.nanmedian(truth))
            assert matrix == pytest.approx(0.2853, abs=1e-3)                    # Li6PS5Cl at 30 keV, 1/mm
            near = signal[HALF - 3:HALF + 4, HALF - 3:HALF + 4]                   # the void's expected signal
            assert signal[HALF, HALF] == np.nanmin(near) < -0.2 * matrix            # a blurred void: about −0.1 /mm
        assert np.isnan(c.images["truth"]["xz"]).any()                         # 8 slices: beyond the grid in z


def test_hardest_task_follows_the_objective_then_any_task():
    pore, crack, hole = (Task(n, k, (), "void", "m") for n, k in (("pore_0", "pore"), ("crack_0", "crack"),
                                                                      ("hole", "user")))
    values = [(pore, 8.0), (crack, 2.0), (hole, math.nan)]
    assert hardest_task(values, ["pore_dprime"]) == (pore, 8.0, "pore_dprime", 1)
    assert hardest_task(values, ["rmse", "crack_detectable_fraction"]) == (crack, 2.0, "crack_detectable_fraction", 1)
    assert hardest_task(values, ["dprime_hole", "ssim"]) == (crack, 2.0, None, 2)      # hole unmeasured: any task
    assert hardest_task([(hole, math.nan)], ["dprime_hole"]) is None


def test_crack_detectable_fraction_alone_is_scored_and_chooses_the_crack():
    """The metric without "dprime" in its name still gets the task images (it was NaN when scored alone)."""
    text = (STUDY.replace('names = ["pore_dprime", "crack_dprime", "rmse"]', 'names = ["crack_detectable_fraction"]')
            .replace("weights = { pore_dprime = 1.0 }", "weights = { crack_detectable_fraction = 1.0 }"))
    spec = parse_spec(tomllib.loads(text), source="closeup.toml", text=text)
    result = evaluate_point(spec, spec.points()[0])
    assert result.metrics["crack_detectable_fraction"] == 1.0
    cracks = {k: v for k, v in result.task_dprimes.items() if k.startswith("crack")}
    assert min(cracks.values()) >= ROSE_DPRIME
    assert result.closeup.name == min(cracks, key=cracks.get)
    assert result.closeup.metric == "crack_detectable_fraction" and result.closeup.candidates == 2


def _page(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_report_shows_the_recommended_slices_and_the_closeup(study, tmp_path):
    out, plan = study
    store = ResultStore.open(out)
    page = _page(write_report(store, plan, str(tmp_path / "report")))
    rec = plan.recommended
    c = store.closeup(rec.ids[0])
    assert "<h2>Close-up of a detection task</h2>" in page and 'src="closeup.png"' in page
    assert f"Close-up of {c.name} in the recommended configuration (tilt {rec.point['tilt_deg']:g}°" in page
    assert "the lowest d′ of the 4 pores in the measured region that pore_dprime (the objective) summarises" in page
    assert f"at d′ ≥ {ROSE_DPRIME:g} (the Rose criterion) the feature is reliably detected" in page
    assert "Red circles on the truth: where the task of the close-up below" in page
    assert "reconstructions of the recommended" in page
    image = matplotlib.image.imread(str(tmp_path / "report" / "closeup.png"))
    assert image.shape[0] > 500 and image.shape[1] > 900


def test_a_store_without_closeups_still_renders(study, tmp_path):
    """Points written before close-ups and per-task d′ existed: the report leaves the close-up out."""
    out, _ = study
    old = str(tmp_path / "old")
    shutil.copytree(out, old)
    for name in os.listdir(os.path.join(old, "points")):
        with h5py.File(os.path.join(old, "points", name), "r+") as f:
            record = json.loads(f.attrs["record"])
            del record["task_dprimes"]
            f.attrs["record"] = json.dumps(record)
            del f.attrs["closeup"]
            del f["closeup"]
    store = ResultStore.open(old)
    assert all(store.closeup(r["id"]) is None and "task_dprimes" not in r for r in store.records())
    page = _page(write_report(store, analyse(store), str(tmp_path / "report")))
    assert "Close-up" not in page and "closeup.png" not in page and 'src="slices.png"' in page
    assert "Red circles" not in page
    assert not os.path.exists(tmp_path / "report" / "closeup.png")

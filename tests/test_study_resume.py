"""Studies resumed after a kill during the tilt refinement end exactly like a clean run; the Dask back end
carries the spec by value, survives the refinement's repeated runs and retries points of lost workers."""

import csv
import math
import os
import shutil

import pytest
from conftest import tiny_star_study

from lamino.studies import planner
from lamino.studies.run import Runner, run_study
from lamino.studies.spec import load_spec
from lamino.studies.store import ResultStore

# the tiny Siemens-star study of tests/test_study.py: one view count, two seeds, two tilts, golden refinement
TINY = tiny_star_study("""
[study]
name = "tiny-refine"
""", """
[sweep]
tilt_deg = [20, 40]
n_views = [8]
seeds = [0, 1]

[objective]
weights = { ssim = 1.0 }

[planner]
refine = "golden"
refine_evaluations = 2
""")


def _rows(folder) -> list[list[str]]:
    """summary.csv without the run-time column (seconds)."""
    with open(os.path.join(folder, "summary.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][-1] == "seconds"
    return [r[:-1] for r in rows]


def _metrics(folder) -> dict:
    return {r["id"]: r["metrics"] for r in ResultStore.open(str(folder)).records()}


def _same_metrics(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        for name in a[key]:
            x, y = a[key][name], b[key][name]
            assert (math.isnan(x) and math.isnan(y)) or x == y, (key, name)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The tiny study with refinement, run to completion in this process."""
    folder = tmp_path_factory.mktemp("resume")
    path = folder / "tiny.toml"
    path.write_text(TINY)
    spec = load_spec(str(path))
    out = folder / "clean"
    result = run_study(spec, str(out), progress=False)
    records = ResultStore.open(str(out)).records()
    return spec, out, result, records


def _assert_same_as_clean(clean, out, result) -> None:
    _, ref, ref_result, _ = clean
    assert ResultStore.open(str(out)).ids() == ResultStore.open(str(ref)).ids()
    assert _rows(out) == _rows(ref)
    _same_metrics(_metrics(out), _metrics(ref))
    assert result.recommended is not None and ref_result.recommended is not None
    assert result.recommended.point == ref_result.recommended.point
    assert result.recommended.ids == ref_result.recommended.ids
    assert result.recommended.objective_mean == ref_result.recommended.objective_mean
    assert result.reason == ref_result.reason


def test_clean_run_refines_with_every_seed(clean):
    spec, _, result, records = clean
    refine = [r for r in records if r["stage"] == "refine"]
    tilts = sorted({r["point"]["tilt_deg"] for r in refine})
    assert len(tilts) == 2 and all(20 < t < 40 for t in tilts)
    for t in tilts:                                          # every refinement tilt has all its seeds
        assert sorted(r["point"]["seed"] for r in refine if r["point"]["tilt_deg"] == t) == [0, 1]
    assert len(records) == 4 + 4 and len(result.configurations) == 4


@pytest.mark.parametrize("keep", ["all but one seed of each tilt", "grid and one seed of the first tilt"])
def test_rerun_after_kill_in_refinement_equals_clean_run(clean, tmp_path, keep):
    spec, ref, _, records = clean
    out = tmp_path / "killed"
    shutil.copytree(ref, out)
    refine = [r for r in records if r["stage"] == "refine"]
    tilts = sorted({r["point"]["tilt_deg"] for r in refine})
    if keep == "all but one seed of each tilt":
        cases = [[r["id"] for r in refine if r["point"]["tilt_deg"] == t and r["point"]["seed"] == 1] for t in tilts]
    else:                                                    # killed after the first seed of one probe
        cases = [[r["id"] for r in refine if not (r["point"]["tilt_deg"] == t and r["point"]["seed"] == 0)]
                 for t in tilts]
    for deleted in cases:
        for pid in deleted:
            os.remove(out / "points" / f"{pid}.h5")
        assert ResultStore.open(str(out)).ids() != ResultStore.open(str(ref)).ids()
        result = run_study(spec, str(out), progress=False)
        _assert_same_as_clean(clean, out, result)


def test_refinement_ignores_partly_evaluated_tilts_and_refine_points_when_starting(clean, tmp_path):
    """The refinement starts from the grid's recommendation even when refined points are in the store."""
    spec, ref, _, _ = clean
    store = ResultStore.open(str(ref))
    grid = planner.analyse(store, grid_only=True)
    assert {c.stage for c in grid.configurations} == {"grid"} and len(grid.configurations) == 2
    assert all(i in planner.grid_ids(spec) for c in grid.configurations for i in c.ids)


# ------------------------------------------------------------------------------------------------- Dask
def test_dask_study_with_refinement_equals_in_process(clean, tmp_path):
    """The refinement calls the runner again after the grid: the spec must still reach the workers."""
    pytest.importorskip("distributed")
    spec, _, _, _ = clean
    out = tmp_path / "dask"
    result = run_study(spec, str(out), dask="local", workers=2, progress=False)
    _assert_same_as_clean(clean, out, result)


def _kill_worker_once(spec, point, stage):
    """Kills its Dask worker the first time it runs (marker file beside the study file), then evaluates."""
    from lamino.studies.point import evaluate_point

    marker = os.path.join(os.path.dirname(spec.source), "killed")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return evaluate_point(spec, point, stage)


def test_dask_lost_worker_is_resubmitted(clean, tmp_path):
    """A worker killed mid-run, with the scheduler allowed no failure (KilledWorker): the runner resubmits the
    lost point and the study, refinement included, ends like the clean run."""
    pytest.importorskip("distributed")
    import dask

    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    spec = load_spec(str(path))
    out = tmp_path / "killed-worker"
    store = ResultStore.create(str(out), spec)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with Runner(spec, store, workers=2, dask="local", progress=False, evaluate=_kill_worker_once) as runner:
            runner.run(spec.points(), stage="grid")
            planner.refine_tilt(spec, runner)
            submissions = runner._submissions
    assert submissions == 4, "the grid is submitted twice (the lost point again), each of 2 refinement tilts once"
    assert os.path.exists(tmp_path / "killed")
    _assert_same_as_clean(clean, out, planner.analyse(ResultStore.open(str(out))))


def _always_kill_worker(spec, point, stage):
    os._exit(1)


def test_dask_gives_up_after_retries_with_one_line_error(tmp_path):
    pytest.importorskip("distributed")
    import dask

    path = tmp_path / "tiny.toml"
    path.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]").replace("tilt_deg = [20, 40]", "tilt_deg = [20]"))
    spec = load_spec(str(path))
    store = ResultStore.create(str(tmp_path / "lost"), spec)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with Runner(spec, store, workers=1, dask="local", progress=False, retries=1,
                    evaluate=_always_kill_worker) as runner:
            with pytest.raises(RuntimeError, match=r"lost 2 times \(KilledWorker: .*\); 1 points not computed") as err:
                runner.run(spec.points())
    assert "\n" not in str(err.value) and not store.ids()

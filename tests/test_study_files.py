"""Study files and folders: whole-spec validation before anything is created, output paths checked up front,
the results-folder lock (live and stale), clean-up of dead runs' temporaries and unreadable point files."""

import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import tiny_star_study

from lamino.io.files import LOCK_NAME, FolderLock, atomic_write, clean_temporaries
from lamino.studies.spec import load_spec, point_id
from lamino.studies.store import PointResult, ResultStore

SPEC = tiny_star_study("""
[study]
name = "files"
description = "a small Siemens star on a beam line"
""", """
[sweep]
tilt_deg = [20, 40]
n_views = [8, 12]
seeds = [0]

[objective]
weights = { ssim = 1.0 }

[planner]
refine = "none"
""")


def _write(tmp_path, text=SPEC, name="files.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_result(spec, point) -> PointResult:
    sl = {k: np.zeros((4, 4), np.float32) for k in ("xy", "xz", "yz")}
    return PointResult(point_id(spec, point), point, {"ssim": 0.5}, {"total": 0.1}, {}, sl, sl)


# ------------------------------------------------------------------------------------------------- spec
@pytest.mark.parametrize("change, words", [
    (("description = ", "descripton = "), ["[study] descripton", "unknown key", "name, description"]),
    (("noise = true", "noise = \"no\""), ["[simulate] noise", "'no'", "true or false"]),
    (("n_bins = 1", "n_bins = 0"), ["[simulate] n_bins", "≥ 1"]),
    (("seeds = [0]", "seeds = [-1]"), ["[sweep] seeds", "-1", "from 0 to 4294967295"]),
    (("seed = 0", "seed = -3"), ["[phantom] seed", "from 0 to 4294967295"]),
    (("seed = 0", "seed = 0\ninstances = 2"), ["[phantom] seed", "together with instances"]),
    (("seed = 0", "instances = 0"), ["[phantom] instances", "from 1 to 100"]),
    (("seed = 0", "seeds = [1, 1]"), ["[phantom] seeds", "different integers"]),
    (("seed = 0", "seeds = []"), ["[phantom] seeds", "different integers"]),
    (("n_views = [8, 12]", "n_views = [1, 12]"), ["[sweep] n_views", "≥ 2"]),
    (("[recon]\n", "[geometry]\nn_views = 1\n\n[recon]\n"), ["[geometry] n_views", "≥ 2"]),
    (("[recon]\n", "[geometry]\ntilt_deg = \"30\"\n\n[recon]\n"), ["[geometry] tilt_deg", "[0, 90)"]),
    (("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"star_isotropy >= 2\"]"),
     ["[objective] constraints", "star_isotropy >= 2", "[0, 1]"]),
    (("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"ssim > 1\"]"),
     ["[objective] constraints", "ssim > 1", "[-1, 1]"]),
    (("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"scan_time_s < 0\"]"),
     ["[objective] constraints", "scan_time_s < 0"]),
    (("name = \"files\"", "name = \"/tmp/abs\""), ["[study] name", "plain name"]),
    (("name = \"files\"", "name = \"a/b\""), ["[study] name", "plain name"]),
    (("name = \"files\"", "name = \"..\""), ["[study] name", "plain name"]),
    (("[recon]\n", "[recon]\niterations = 0\n"), ["[recon] iterations", "≥ 1"]),
    (("[recon]\n", "[recon]\nfilter = \"box\"\n"), ["[recon] filter", "ram-lak"]),
    (("[recon]\n", "[recon]\nrings = \"yes\"\n"), ["[recon] rings", "true"]),
    (("energy_kev = 30.0", "energy_kev = -30.0"), ["[scanner]"]),
])
def test_bad_specs_fail_at_parse_time(tmp_path, change, words):
    old, new = change
    assert old in SPEC
    path = _write(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(ValueError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(path) and "\n" not in message
    for word in words:
        assert word in message, message


def test_limited_angle_with_fbp_is_refused_at_parse_time(tmp_path):
    path = _write(tmp_path, SPEC.replace("[sweep]\n", "[sweep]\ntrajectory = [\"cl\", \"limited-angle\"]\n"))
    with pytest.raises(ValueError, match="limited-angle.*sirt"):
        load_spec(path)


def test_constraints_inside_the_metric_range_are_accepted(tmp_path):
    text = SPEC.replace("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"star_isotropy >= 1\","
                        " \"ssim > -1\", \"scan_time_s <= 7200\", \"psnr >= 100\"]")
    assert len(load_spec(_write(tmp_path, text)).constraints) == 4


# ------------------------------------------------------------------------------------------------- files
def test_atomic_write_names_its_writer_and_clean_temporaries_keeps_live_ones(tmp_path):
    seen = []
    with atomic_write(str(tmp_path / "a.h5"), ".h5") as tmp:
        seen.append(os.path.basename(tmp))
        open(tmp, "w").close()
    assert seen[0].startswith(f".a.h5.lamino-{os.getpid()}-") and os.listdir(tmp_path) == ["a.h5"]
    old = time.time() - 7200
    dead = tmp_path / f".b.h5.lamino-{_dead_pid()}-abcdefgh.h5"
    live = tmp_path / f".c.h5.lamino-{os.getpid()}-abcdefgh.h5"
    legacy_old, legacy_new = tmp_path / ".d.h5.abcdefgh.h5", tmp_path / ".e.h5.abcdefgh.h5"
    for p in (dead, live, legacy_old, legacy_new):
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    os.utime(legacy_new, None)                            # a fresh unnamed temporary: kept
    removed = clean_temporaries(str(tmp_path))
    assert sorted(removed) == sorted([str(dead), str(legacy_old)])
    assert sorted(os.listdir(tmp_path)) == sorted(["a.h5", live.name, legacy_new.name])


def test_temporary_folders_name_their_writer_and_only_dead_writers_folders_are_cleaned(tmp_path):
    from lamino.io.files import temporary_folder

    made = temporary_folder(str(tmp_path / "report"))
    assert os.path.basename(made).startswith(f".report.lamino-{os.getpid()}-") and os.path.isdir(made)
    os.rmdir(made)
    old = time.time() - 7200
    dead = tmp_path / f".report.lamino-{_dead_pid()}-abcdefgh"            # a report build of a killed run
    live = tmp_path / f".report.lamino-{os.getpid()}-abcdefgh"            # one being built now
    unnamed = tmp_path / ".report.abcdefgh"                                # a hidden folder lamino did not name
    for d in (dead, live, unnamed):
        (d / "figs").mkdir(parents=True)
        (d / "figs" / "a.png").write_bytes(b"x")
        os.utime(d, (old, old))
    assert clean_temporaries(str(tmp_path), prefix="report") == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, unnamed.name])
    assert (live / "figs" / "a.png").exists()


def test_folder_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(f"{os.getpid()} {socket.gethostname()}\n")       # another live run (this pid, alive)
    with pytest.raises(ValueError, match=f"in use by process {os.getpid()}") as err:
        FolderLock(str(tmp_path)).acquire()
    assert "\n" not in str(err.value)
    lock.write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    with pytest.warns(UserWarning, match="stale lock"), FolderLock(str(tmp_path)) as held:
        assert lock.read_text().split() == [str(os.getpid()), socket.gethostname()]
        with FolderLock(str(tmp_path)):                                  # re-entrant in one process
            pass
        assert lock.exists() and held.acquired
    assert not lock.exists()                                             # released on exit
    with pytest.raises(RuntimeError), FolderLock(str(tmp_path)):
        raise RuntimeError("boom")
    assert not lock.exists()                                             # and on errors


# ------------------------------------------------------------------------------------------------- store
def test_store_lock_live_and_stale(tmp_path):
    spec = load_spec(_write(tmp_path))
    out = tmp_path / "results"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    with pytest.raises(ValueError, match=f"in use by process {os.getpid()}"):
        ResultStore.create(str(out), spec)
    assert sorted(os.listdir(out)) == [LOCK_NAME]                        # nothing written
    (out / LOCK_NAME).write_text(f"{_dead_pid()} {socket.gethostname()}\n")
    with pytest.warns(UserWarning, match="stale lock"):
        store = ResultStore.create(str(out), spec)
    assert (out / LOCK_NAME).read_text().split()[0] == str(os.getpid())
    store.close()
    assert not (out / LOCK_NAME).exists()
    store = ResultStore.create(str(out), spec)
    assert (out / LOCK_NAME).exists()
    del store                                                            # the lock lives as long as the store
    assert not (out / LOCK_NAME).exists()


def test_store_for_another_study_creates_nothing(tmp_path):
    spec = load_spec(_write(tmp_path))
    out = tmp_path / "results"
    with ResultStore.create(str(out), spec):
        pass
    other = load_spec(_write(tmp_path, SPEC.replace("n_spokes = 8", "n_spokes = 12"), "other.toml"))
    with pytest.raises(ValueError, match="different study"):
        ResultStore.create(str(out), other)
    assert not (out / LOCK_NAME).exists()                                # the lock is released on the error


def test_truncated_point_file_is_skipped_and_recomputed(tmp_path):
    spec = load_spec(_write(tmp_path))
    out = tmp_path / "results"
    points = spec.points()
    with ResultStore.create(str(out), spec) as store:
        for p in points[:2]:
            store.write(_fake_result(spec, p))
    bad = out / "points" / f"{point_id(spec, points[1])}.h5"
    bad.write_bytes(bad.read_bytes()[:100])                              # truncated
    dead = out / "points" / f".x.h5.lamino-{_dead_pid()}-abcdefgh.h5"
    dead.write_bytes(b"x")
    stray = out / f".summary.csv.lamino-{_dead_pid()}-abcdefgh.csv"
    stray.write_bytes(b"x")
    report_tmp = out / ".report-abc123"
    report_tmp.mkdir()
    os.utime(report_tmp, (time.time() - 7200,) * 2)
    opened = ResultStore.open(str(out))                                  # study report: skip with a warning
    with pytest.warns(UserWarning, match="unreadable"):
        assert opened.ids() == {point_id(spec, points[0])}
    assert [r["id"] for r in opened.records()] == [point_id(spec, points[0])]
    with pytest.warns(UserWarning, match="unreadable"):                  # resume: deleted, so recomputed
        store = ResultStore.create(str(out), spec)
    assert not bad.exists() and not dead.exists() and not stray.exists() and not report_tmp.exists()
    assert store.ids() == {point_id(spec, points[0])}
    store.close()


# ------------------------------------------------------------------------------------------------- command line
def _fails(argv, capsys, *words):
    from lamino.cli import main

    assert main(argv) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "error" in err, err
    for word in words:
        assert word in err, err
    return err


def test_cli_output_paths_are_checked_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    spec = _write(tmp_path)
    _fails(["simulate", "--phantom", "lego", "--out", str(afile / "scan.h5")], capsys, "--out", "is a file")
    _fails(["demo", "--out", str(afile / "demo.png")], capsys, "--out", "is a file")
    _fails(["phantom", "show", "lego", "--out", str(tmp_path / "nofolder" / "p.png")], capsys, "does not exist")
    _fails(["simulate", "--phantom", "lego", "--seed", "-1", "--out", str(tmp_path / "s.h5")], capsys, "--seed -1")
    _fails(["recon", str(tmp_path / "missing.h5"), "--out", str(afile / "r.h5")], capsys, "--out", "is a file")
    _fails(["recon", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "r.h5"), "--png",
            str(tmp_path / "nofolder" / "r.png")], capsys, "--png", "does not exist")
    _fails(["study", "run", spec, "--out", str(afile / "results")], capsys, "--out", "is a file")
    _fails(["study", "run", spec, "--out", str(afile)], capsys, "--out", "existing file")
    _fails(["plan", spec, "--out", str(tmp_path / "res"), "--report", str(afile)], capsys, "--report",
           "existing file")
    _fails(["study", "report", str(tmp_path / "nowhere"), "--out", str(afile)], capsys)
    _fails(["dataset", "generate", "--phantom", "lego", "--count", "1", "--out", str(afile / "ds")], capsys,
           "is a file")
    assert afile.read_text() == "keep"
    assert sorted(os.listdir(tmp_path)) == ["afile", "files.toml"]          # nothing written


@pytest.mark.parametrize("extra, words", [
    (["--views", "1"], ["--views 1", "2"]),
    (["--count", "0"], ["--count 0"]),
    (["--count", "10000000"], ["--count 10000000"]),
    (["--det", "0,64"], ["--det"]),
    (["--seed", "-2"], ["--seed -2"]),
    (["--tilt", "95"], ["--tilt 95"]),
    (["--vary", "n_views=1|8"], ["n_views", "from 2"]),
])
def test_cli_dataset_refuses_absurd_counts(tmp_path, capsys, extra, words):
    argv = ["dataset", "generate", "--phantom", "lego", "--count", "2", "--out", str(tmp_path / "ds")]
    for i in range(0, len(extra), 2):
        if extra[i] in argv:
            argv[argv.index(extra[i]) + 1] = extra[i + 1]
        else:
            argv += extra[i:i + 2]
    _fails(argv, capsys, *words)
    assert not (tmp_path / "ds").exists()


def test_cli_bad_spec_and_locked_folder_create_nothing(tmp_path, capsys):
    bad = _write(tmp_path, SPEC.replace("description = ", "descripton = "), "bad.toml")
    _fails(["study", "run", bad, "--out", str(tmp_path / "res")], capsys, "[study] descripton")
    assert not (tmp_path / "res").exists()
    absolute = _write(tmp_path, SPEC.replace("name = \"files\"", f"name = \"{tmp_path / 'abs'}\""), "abs.toml")
    _fails(["plan", absolute], capsys, "[study] name", "plain name")
    assert not (tmp_path / "abs").exists()
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / LOCK_NAME).write_text(f"{os.getpid()} {socket.gethostname()}\n")
    _fails(["study", "run", _write(tmp_path), "--out", str(locked)], capsys, f"process {os.getpid()}")
    assert sorted(os.listdir(locked)) == [LOCK_NAME]


def test_cli_error_exit_without_traceback(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    out = subprocess.run([sys.executable, "-m", "lamino.cli", "plan", _write(tmp_path), "--report", str(afile),
                          "--out", str(tmp_path / "res")], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert afile.read_text() == "keep" and not (tmp_path / "res").exists()


def test_cli_simulate_removes_dead_runs_temporaries_of_its_output(tmp_path, capsys):
    from lamino.cli import main

    old = time.time() - 7200
    dead = tmp_path / f".s.h5.lamino-{_dead_pid()}-abcdefgh.h5"
    live = tmp_path / f".s.h5.lamino-{os.getpid()}-abcdefgh.h5"
    other = tmp_path / f".t.h5.lamino-{_dead_pid()}-abcdefgh.h5"         # another output's: not simulate's business
    for p in (dead, live, other):
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    assert main(["simulate", "--phantom", "siemens_star", "--param", "radius_mm=0.3", "--param", "n_spokes=8",
                 "--scanner", "esrf_id19", "--det", "8,8", "--spacing", "0.1", "--views", "2", "--no-truth",
                 "--out", str(tmp_path / "s.h5")]) == 0
    assert sorted(os.listdir(tmp_path)) == sorted(["s.h5", live.name, other.name])


def test_a_grid_outside_the_measured_region_is_refused_and_one_past_it_warned(tmp_path):
    outside = SPEC.replace("grid = { shape = [6, 16, 16], voxel_size = 0.045 }",
                           "grid = { shape = [6, 16, 16], voxel_size = 0.045, center = [0.0, 0.0, 40.0] }")
    with pytest.raises(ValueError, match=r"\[recon\] grid .* lies outside what the scan measures") as err:
        load_spec(_write(tmp_path, outside))
    assert "\n" not in str(err.value)
    from lamino.studies.build import coverage_warning

    wide = load_spec(_write(tmp_path, SPEC.replace("shape = [6, 16, 16]", "shape = [6, 40, 40]"), "wide.toml"))
    assert re.fullmatch(r"\[recon\] grid extends past what the scan measures: \d+% of its voxels leave the "
                        r"detector in some views at tilt 40°; .*", coverage_warning(wide))

"""Jobs far too large for the machine are refused at once, with the estimate and what to change."""

import numpy as np
import pytest

from lamino.cli import main
from lamino.geometry import Geometry, VolumeGrid
from lamino.io import Scan
from lamino.recon.reconstruct import estimate_bytes, reconstruct
from lamino.resources import GIB, check_memory, machine_memory_bytes


def test_machine_memory_is_the_physical_memory_or_the_override(monkeypatch):
    monkeypatch.delenv("LAMINO_MEMORY_GB", raising=False)
    import os

    physical = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < machine_memory_bytes() <= physical
    monkeypatch.setenv("LAMINO_MEMORY_GB", "2.5")
    assert machine_memory_bytes() == int(2.5 * GIB)
    for bad in ("zero", "0", "-1"):
        monkeypatch.setenv("LAMINO_MEMORY_GB", bad)
        with pytest.raises(ValueError, match="LAMINO_MEMORY_GB"):
            machine_memory_bytes()


def test_check_memory_says_need_have_and_advice(monkeypatch):
    monkeypatch.setenv("LAMINO_MEMORY_GB", "1")
    check_memory(0.9 * GIB, "a job", "do less")                  # fits: no error
    with pytest.raises(ValueError, match=r"a job needs about 3\.0 GiB .* the 1\.0 GiB this machine has: do less"):
        check_memory(3 * GIB, "a job", "do less")


def test_recon_estimate_counts_projections_and_volumes():
    g = Geometry.parallel(30.0, 10, (20, 30), 1.0)
    grid = VolumeGrid((8, 9, 11), 1.0)
    proj, vol = 10 * 20 * 30, 8 * 9 * 11
    assert estimate_bytes(g, grid, "fbp") == 4 * (4 * proj + 3 * vol)
    assert estimate_bytes(g, grid, "cgls") == 4 * (5 * proj + 5 * vol)
    assert estimate_bytes(g, grid, "fista-tv") > estimate_bytes(g, grid, "sirt")


def test_reconstruct_refuses_a_grid_beyond_the_machine_before_allocating():
    g = Geometry.parallel(30.0, 4, (8, 8), 1.0)
    huge = VolumeGrid((4000, 4000, 4000), 0.01)                  # 256 GB of float32 per volume
    with pytest.raises(ValueError, match=r"fbp of 4 views onto a 4000×4000×4000 grid needs about 71\d\.\d GiB"):
        reconstruct(np.zeros((4, 8, 8), np.float32), g, huge, "fbp")


def test_cli_recon_of_an_absurd_grid_is_one_line_and_writes_nothing(tmp_path, capsys):
    g = Geometry.parallel(30.0, 4, (8, 8), 1.0)
    ones = np.ones((4, 8, 8), np.float32)
    Scan(counts=ones, flats=ones[:1], darks=0 * ones[:1], geometry=g).save(str(tmp_path / "scan.h5"))
    out = tmp_path / "vol.h5"
    assert main(["recon", str(tmp_path / "scan.h5"), "--grid", "4000,0.01", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs about" in err and "GiB" in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:the geometry.s detector")
def test_simulate_refuses_a_scan_beyond_the_machine_before_tracing(tmp_path, capsys):
    from lamino import phantoms
    from lamino.simulate import simulate
    from lamino.simulate.simulate import estimate_bytes

    g = Geometry.parallel(30.0, 4000, (4000, 4000), 0.01)
    lego = phantoms.get("lego")
    need = estimate_bytes(g, len(lego.materials), truth=False)
    assert need >= 4 * 4000**3 * (len(lego.materials) + 1)               # path lengths and counts
    with pytest.raises(ValueError, match=r"simulating 4000 views of 4000×4000 pixels needs about \d+\.\d GiB"):
        simulate(lego, g, "esrf_id19", truth=False)
    out = tmp_path / "o.h5"
    assert main(["simulate", "--phantom", "lego", "--views", "4000", "--det", "4000,4000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs about" in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


def _tiny_study(tmp_path):
    from conftest import tiny_star_study

    from lamino.studies.spec import load_spec

    text = tiny_star_study('[study]\nname = "tiny"\n', """
[sweep]
tilt_deg = [20, 40]
n_views = [8, 12]
seeds = [0]

[objective]
weights = { ssim = 1.0 }

[planner]
refine = "none"
""")
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return load_spec(str(path))


def test_study_estimate_is_its_largest_point_simulated_and_reconstructed(tmp_path):
    from lamino.simulate.simulate import estimate_bytes as simulate_bytes
    from lamino.studies.run import study_memory_bytes

    spec = _tiny_study(tmp_path)
    need, point, g = study_memory_bytes(spec)
    assert point["n_views"] == 12 and g.n_views == 12 and g.det_shape == (12, 20)       # the largest point
    grid = VolumeGrid((6, 16, 16), 0.045)
    proj, vol = 12 * 12 * 20, 6 * 16 * 16
    # siemens star: 2 materials (silicon, gold); fbp holds 4 projection-sized and 3 volume-sized arrays
    assert need == simulate_bytes(g, 2, grid, truth=True) + 4 * (4 * proj + 3 * vol)
    assert simulate_bytes(g, 2, grid, truth=True) >= 4 * (proj * 3 + vol * 4)


def test_study_beyond_the_machine_is_refused_before_its_results_folder_exists(tmp_path, monkeypatch):
    from lamino.studies.run import run_study, study_memory_bytes

    spec = _tiny_study(tmp_path)
    need = study_memory_bytes(spec)[0]
    out = tmp_path / "results"
    monkeypatch.setenv("LAMINO_MEMORY_GB", str(0.5 * need / GIB))
    with pytest.raises(ValueError) as err:
        run_study(spec, str(out), progress=False)
    message = str(err.value)
    assert message.startswith("study 'tiny': its largest point (12 views of 12×20 pixels, fbp) needs about")
    assert "fewer views" in message and "\n" not in message and "at once" not in message
    assert not out.exists()
    # 1.5 × one point fits in process, not two worker processes at once
    monkeypatch.setenv("LAMINO_MEMORY_GB", str(1.5 * need / GIB))
    with pytest.raises(ValueError, match=r"× 2 points at once needs about .* fewer workers"):
        run_study(spec, str(out), workers=2, progress=False)
    with pytest.raises(ValueError, match=r"× 2 points at once"):
        run_study(spec, str(out), dask="local", progress=False)
    assert not out.exists()

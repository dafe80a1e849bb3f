import subprocess
import sys

import numpy as np
import pytest

from lamino import __version__
from lamino.cli import main


def test_help_and_version():
    out = subprocess.run([sys.executable, "-m", "lamino.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout
    out = subprocess.run([sys.executable, "-m", "lamino.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout


def test_demo_writes_a_png(tmp_path):
    target = tmp_path / "demo.png"
    assert main(["demo", "--out", str(target), "--size", "32", "--views", "8"]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [target]                     # no temporary files left behind


@pytest.mark.parametrize("argv, message", [
    (["demo", "--out", "x.txt"], "png"),
    (["demo", "--size", "4", "--out", "y.png"], "--size"),
    (["demo", "--views", "0", "--out", "z.png"], "n_views"),
])
def test_bad_input_is_one_line_error(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_not_overwritten(tmp_path, capsys):
    target = tmp_path / "demo.png"
    target.write_bytes(b"keep")
    assert main(["demo", "--out", str(target), "--size", "32", "--views", "4"]) == 2
    assert target.read_bytes() == b"keep"


def test_phantom_list_and_show(tmp_path, capsys):
    assert main(["phantom", "list"]) == 0
    assert "siemens_star: n_spokes=36" in capsys.readouterr().out
    target = tmp_path / "star.png"
    assert main(["phantom", "show", "siemens_star", "--param", "n_spokes=12", "--size", "48",
                 "--out", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG"
    assert main(["phantom", "show", "siemens_star", "--param", "n_spokes=1", "--out", str(tmp_path / "x.png")]) == 2
    assert "n_spokes" in capsys.readouterr().err
    assert main(["phantom", "show", "nope", "--out", str(tmp_path / "y.png")]) == 2
    assert main(["phantom", "show", "siemens_star", "--param", "oops", "--out", str(tmp_path / "z.png")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["star.png"]


def test_scanners_lists_every_preset(capsys):
    from lamino.simulate import Scanner

    assert main(["scanners"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in Scanner.presets())


def test_simulate_writes_a_scan_that_loads(tmp_path, capsys):
    from lamino.simulate import Scan

    target = tmp_path / "scan.h5"
    argv = ["simulate", "--phantom", "siemens_star", "--param", "n_spokes=12", "--scanner", "esrf_id19",
            "--det", "24,32", "--spacing", "0.25", "--tilt", "30", "--views", "6", "--no-truth", "--out",
            str(target)]
    assert main(argv) == 0
    assert "mean transmission" in capsys.readouterr().out
    scan = Scan.load(str(target))
    assert scan.counts.shape == (6, 24, 32) and scan.geometry.tilt_deg == 30.0
    assert scan.phantom["params"]["n_spokes"] == 12
    assert list(tmp_path.iterdir()) == [target]
    assert main(argv) == 2                                           # exists: refused, file unchanged
    assert Scan.load(str(target)).counts.shape == (6, 24, 32)


@pytest.mark.parametrize("extra, message", [
    (["--scanner", "nope"], "nikon_xt225"),
    (["--kvp", "500"], "kvp"),
    (["--exposure", "0"], "exposure_s"),
    (["--scanner", "esrf_id19", "--sod", "100"], "--sod"),
    (["--phantom", "nope"], "unknown phantom"),
    (["--out", "scan.txt"], "HDF5"),
])
def test_simulate_bad_input_is_one_line_error(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["simulate", "--phantom", "lego", "--views", "2", "--det", "8,8", "--out", "scan.h5", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_recon_writes_a_volume_and_a_picture(tmp_path, capsys):
    from lamino.io import Volume

    scan_path, out, png = tmp_path / "scan.h5", tmp_path / "recon.h5", tmp_path / "recon.png"
    assert main(["simulate", "--phantom", "siemens_star", "--param", "n_spokes=8", "--param", "thickness_mm=0.05",
                 "--scanner", "esrf_id19", "--energy", "15", "--exposure", "4e-5", "--det", "24,32", "--spacing",
                 "0.2", "--tilt", "30", "--views", "24", "--out", str(scan_path)]) == 0
    assert main(["recon", str(scan_path), "--method", "sirt", "--iterations", "3", "--out", str(out), "--png",
                 str(png)]) == 0
    assert "sirt of" in capsys.readouterr().out
    vol = Volume.load(out)
    assert vol.method == "sirt" and len(vol.history["residual"]) == 3 and vol.data.max() > 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    # --rings removes the detector's stripes (gain errors of single pixels) before reconstructing
    plain, destriped = tmp_path / "plain.h5", tmp_path / "destriped.h5"
    assert main(["recon", str(scan_path), "--out", str(plain)]) == 0
    assert main(["recon", str(scan_path), "--rings", "--out", str(destriped)]) == 0
    a, b = Volume.load(plain).data, Volume.load(destriped).data
    assert 0 < np.abs(a - b).max() < 0.5 * np.abs(a).max()


@pytest.mark.parametrize("extra, message", [
    (["--iterations", "0", "--method", "sirt"], "--iterations"),
    (["--grid", "12,abc"], "--grid"),
    ([], "does not exist"),
])
def test_recon_bad_input_is_one_line_error(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["recon", "missing.h5", "--out", "r.h5", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_bench_prints_throughput(capsys):
    assert main(["bench", "--size", "16", "--views", "4", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "16³ voxels × 4 views" in out
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["forward", "adjoint", "backproject", "fbp"]
    assert main(["bench", "--size", "4"]) == 2


def test_phantom_show_greys_out_what_a_scanner_does_not_measure(tmp_path, capsys):
    target = tmp_path / "seen.png"
    assert main(["phantom", "show", "siemens_star", "--size", "32", "--scanner", "esrf_id19", "--tilt", "30",
                 "--out", str(target)]) == 0
    assert target.read_bytes()[:4] == b"\x89PNG" and "not measured in every view" in capsys.readouterr().out
    assert main(["phantom", "show", "siemens_star", "--scanner", "esrf_id19", "--tilt", "95",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "--tilt" in capsys.readouterr().err

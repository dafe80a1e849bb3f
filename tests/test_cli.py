import subprocess
import sys

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

"""Bad input to every ``lamino`` command, table-driven: each case exits with 2, prints exactly one line on stderr
that names what was wrong (no traceback), and writes nothing, neither in the working folder nor beside the inputs.

The valid inputs (a tiny scan, a tiny study file, an empty results folder) and the damaged files are made once per
module; almost every case must fail at argument or spec validation, before any heavy work."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from conftest import tiny_star_study

from lamino.cli import main

SPEC = tiny_star_study("""
[study]
name = "bad-inputs"
description = "the valid study that the bad ones change"
""", """
[sweep]
tilt_deg = [20, 40]
n_views = [8]
seeds = [0]

[objective]
weights = { ssim = 1.0 }

[planner]
refine = "none"
""")

# study files that each change one thing of SPEC: (old, new) replaced once, or the whole text
BAD_SPECS = {
    "empty": "",
    "syntax": "[study\nname = \"x\"\n",
    "not_utf8": b"\xff\xfe[study]\n",
    "unknown_table": ("[planner]\n", "[extras]\nx = 1\n\n[planner]\n"),
    "no_sweep": ("[sweep]\ntilt_deg = [20, 40]\nn_views = [8]\nseeds = [0]\n", ""),
    "study_name_empty": ('name = "bad-inputs"', 'name = ""'),
    "study_name_int": ('name = "bad-inputs"', "name = 5"),
    "phantom_unknown": ('name = "siemens_star"', 'name = "unicorn"'),
    "phantom_key": ("seed = 0\n", "seed = 0\ncolour = \"red\"\n"),
    "phantom_seed_float": ("seed = 0\n", "seed = 1.5\n"),
    "phantom_param_unknown": ("n_spokes = 8\n", "n_spokes = 8\nwobble = 2\n"),
    "phantom_param_range": ("n_spokes = 8\n", "n_spokes = 1\n"),
    "phantom_param_nan": ("radius_mm = 0.3\n", "radius_mm = nan\n"),
    "scanner_unknown": ('preset = "esrf_id19"', 'preset = "esrf_id99"'),
    "scanner_key": ("exposure_s = 0.0005\n", "exposure_s = 0.0005\nwarp_drive = true\n"),
    "scanner_det_zero": ("det_shape = [12, 20]", "det_shape = [0, 20]"),
    "scanner_det_text": ("det_shape = [12, 20]", "det_shape = \"12x20\""),
    "scanner_spacing_nan": ("det_spacing = 0.04", "det_spacing = nan"),
    "scanner_exposure_inf": ("exposure_s = 0.0005", "exposure_s = inf"),
    "scanner_energy_text": ("energy_kev = 30.0", "energy_kev = \"hot\""),
    "geometry_key": ("[simulate]\n", "[geometry]\nwobble = 1\n\n[simulate]\n"),
    "geometry_tilt_nan": ("[simulate]\n", "[geometry]\ntilt_deg = nan\n\n[simulate]\n"),
    "simulate_bins_float": ("n_bins = 1", "n_bins = 1.5"),
    "simulate_key": ("n_bins = 1\n", "n_bins = 1\nphotons = 3\n"),
    "simulate_method": ("n_bins = 1\n", "n_bins = 1\nmethod = \"magic\"\n"),
    "simulate_scatter_nan": ("n_bins = 1\n", "n_bins = 1\nscatter_spr = nan\n"),
    "recon_method": ("[recon]\n", "[recon]\nmethod = \"art\"\n"),
    "recon_iterations_text": ("[recon]\n", "[recon]\niterations = \"ten\"\n"),
    "recon_lam_nan": ("[recon]\n", "[recon]\nlam = nan\n"),
    "recon_key": ("[recon]\n", "[recon]\nsmooth = 1\n"),
    "grid_shape_2": ("shape = [6, 16, 16]", "shape = [6, 16]"),
    "grid_voxel_zero": ("voxel_size = 0.045", "voxel_size = 0"),
    "grid_voxel_nan": ("voxel_size = 0.045", "voxel_size = nan"),
    "sweep_tilt_nan": ("tilt_deg = [20, 40]", "tilt_deg = [20, nan]"),
    "sweep_tilt_90": ("tilt_deg = [20, 40]", "tilt_deg = [20, 90]"),
    "sweep_tilt_empty": ("tilt_deg = [20, 40]", "tilt_deg = []"),
    "sweep_views_float": ("n_views = [8]", "n_views = [8.5]"),
    "sweep_views_text": ("n_views = [8]", "n_views = [\"8\"]"),
    "sweep_views_huge": ("n_views = [8]", "n_views = [1000000000]"),
    "sweep_seeds_float": ("seeds = [0]", "seeds = [1.5]"),
    "sweep_axis_unknown": ("seeds = [0]\n", "seeds = [0]\nspeed = [1]\n"),
    "sweep_exposure_zero": ("seeds = [0]\n", "seeds = [0]\nexposure_s = [0]\n"),
    "sweep_exposure_inf": ("seeds = [0]\n", "seeds = [0]\nexposure_s = [inf]\n"),
    "metric_unknown": ("weights = { ssim = 1.0 }", "weights = { sharpness = 1.0 }"),
    "weight_nan": ("weights = { ssim = 1.0 }", "weights = { ssim = nan }"),
    "constraint_malformed": ("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"ssim >> 1\"]"),
    "constraint_metric": ("weights = { ssim = 1.0 }", "weights = { ssim = 1.0 }\nconstraints = [\"wow < 1\"]"),
    "metrics_unknown": ("[objective]\n", "[metrics]\nnames = [\"ssim\", \"bogus\"]\n\n[objective]\n"),
    "planner_refine": ('refine = "none"', 'refine = "magic"'),
    "planner_key": ('refine = "none"', 'refine = "none"\npatience = 3'),
}


def _bad_spec_text(change) -> str | bytes:
    if isinstance(change, tuple):
        old, new = change
        assert old in SPEC, old
        return SPEC.replace(old, new, 1)
    return change


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    """Folder of the valid and the damaged input files (made once)."""
    from lamino.geometry import Geometry
    from lamino.io import Scan
    from lamino.studies.spec import load_spec
    from lamino.studies.store import ResultStore

    root = tmp_path_factory.mktemp("inputs")
    g = Geometry.parallel(30.0, 8, (16, 16), 0.1)
    counts = np.random.default_rng(0).uniform(400, 900, (8, 16, 16))
    Scan(counts=counts, flats=np.full((1, 16, 16), 1000.0), darks=np.zeros((1, 16, 16)), geometry=g,
         scanner={"name": "test"}, phantom={"name": "slab"}).save(str(root / "scan.h5"))
    (root / "empty.h5").write_bytes(b"")
    (root / "text.h5").write_text("counts: 1 2 3\n")
    data = (root / "scan.h5").read_bytes()
    (root / "truncated.h5").write_bytes(data[: len(data) // 3])
    with h5py.File(root / "nogeometry.h5", "w") as f:
        f["entry/instrument/detector/data"] = np.ones((2, 4, 4), np.float32)
    (root / "spec.toml").write_text(SPEC)
    for name, change in BAD_SPECS.items():
        text = _bad_spec_text(change)
        path = root / f"bad_{name}.toml"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    ResultStore.create(str(root / "results"), load_spec(str(root / "spec.toml"))).close()   # no points yet
    other = SPEC.replace("seed = 0\n", "seed = 1\n", 1)                      # another phantom: another study
    (root / "other.toml").write_text(other)
    ResultStore.create(str(root / "other_results"), load_spec(str(root / "other.toml"))).close()
    (root / "notresults").mkdir()
    (root / "corrupt_results").mkdir()
    (root / "corrupt_results" / "study.toml").write_text("[study\n")
    (root / "binary_results").mkdir()
    (root / "binary_results" / "study.toml").write_bytes(b"\xff\xfe[study]\n")
    (root / "unknown_results").mkdir()
    (root / "unknown_results" / "study.toml").write_text(_bad_spec_text(BAD_SPECS["sweep_axis_unknown"]))
    return root


def _listing(folder) -> dict:
    """Every entry under ``folder`` (hidden ones too), with the size and modification time of files."""
    found = {}
    for parent, dirs, files in os.walk(folder):
        for name in dirs:
            found[os.path.relpath(os.path.join(parent, name), folder)] = "dir"
        for name in files:
            st = os.stat(os.path.join(parent, name))
            found[os.path.relpath(os.path.join(parent, name), folder)] = (st.st_size, st.st_mtime_ns)
    return found


SIM = ["simulate", "--phantom", "lego", "--scanner", "esrf_id19", "--det", "8,8", "--spacing", "0.5", "--views", "2",
       "--no-noise", "--no-truth", "--out", "s.h5"]
NIKON = ["simulate", "--phantom", "lego", "--det", "8,8", "--views", "2", "--no-noise", "--no-truth", "--out",
         "s.h5"]
REC = ["recon", "{fx}/scan.h5", "--out", "r.h5"]
DEMO = ["demo", "--size", "16", "--views", "2", "--out", "d.png"]
SHOW = ["phantom", "show", "siemens_star", "--size", "16", "--out", "p.png"]
GEN = ["dataset", "generate", "--phantom", "lego", "--count", "1", "--det", "8,8", "--views", "2", "--out", "ds"]
BENCH = ["bench", "--size", "8", "--views", "2", "--repeats", "1"]
RUN = ["study", "run", "{fx}/spec.toml", "--out", "res"]
REPORT = ["study", "report", "{fx}/results"]
PLAN = ["plan", "{fx}/spec.toml", "--out", "res"]
LOW = {"LAMINO_MEMORY_GB": "1"}


def _with(base: list[str], *extra: str) -> list[str]:
    """``base`` with each ``--flag value`` of ``extra`` replacing the one there (or added)."""
    argv = list(base)
    i = 0
    while i < len(extra):
        flag = extra[i]
        if flag.startswith("--") and i + 1 < len(extra) and not extra[i + 1].startswith("--") and flag in argv:
            argv[argv.index(flag) + 1] = extra[i + 1]
            i += 2
        else:
            argv.append(flag)
            i += 1
    return argv


# (id, argv, fragment of the one-line error, environment)
CASES = [
    # ------------------------------------------------------------------------------------- the command line itself
    ("top-unknown-command", ["reconstruct"], "invalid choice: 'reconstruct'", None),
    ("top-unknown-flag", ["--verbose"], "--verbose", None),
    ("phantom-no-action", ["phantom"], "ACTION", None),
    ("phantom-unknown-action", ["phantom", "draw"], "invalid choice: 'draw'", None),
    ("phantom-list-extra", ["phantom", "list", "--all"], "--all", None),
    ("scanners-extra", ["scanners", "nikon_xt225"], "unrecognized arguments", None),
    ("study-no-action", ["study"], "ACTION", None),
    ("dataset-no-action", ["dataset"], "ACTION", None),
    ("dataset-unknown-action", ["dataset", "list"], "invalid choice: 'list'", None),
    # ------------------------------------------------------------------------------------- demo
    ("demo-size-0", _with(DEMO, "--size", "0"), "--size 0", None),
    ("demo-size-negative", _with(DEMO, "--size", "-16"), "--size -16", None),
    ("demo-size-text", _with(DEMO, "--size", "abc"), "--size", None),
    ("demo-size-float", _with(DEMO, "--size", "16.5"), "--size", None),
    ("demo-size-huge", _with(DEMO, "--size", "100000"), "needs about", LOW),
    ("demo-views-negative", _with(DEMO, "--views", "-3"), "n_views", None),
    ("demo-views-text", _with(DEMO, "--views", "many"), "--views", None),
    ("demo-tilt-nan", _with(DEMO, "--tilts", "nan"), "--tilts", None),
    ("demo-tilt-inf", _with(DEMO, "--tilts", "inf"), "--tilts", None),
    ("demo-tilt-90", _with(DEMO, "--tilts", "0", "90"), "--tilts", None),
    ("demo-tilt-negative", _with(DEMO, "--tilts", "-10"), "--tilts", None),
    ("demo-tilt-text", _with(DEMO, "--tilts", "steep"), "--tilts", None),
    ("demo-tilts-none", [*DEMO, "--tilts"], "--tilts", None),
    ("demo-out-jpg", _with(DEMO, "--out", "d.jpg"), "png", None),
    ("demo-out-no-folder", _with(DEMO, "--out", "nofolder/d.png"), "does not exist", None),
    ("demo-out-exists", _with(DEMO, "--out", "exists.png"), "exists", None),
    ("demo-out-folder", _with(DEMO, "--out", "folder.png"), "folder", None),
    # ------------------------------------------------------------------------------------- phantom show
    ("show-unknown", ["phantom", "show", "unicorn", "--out", "p.png"], "unicorn", None),
    ("show-empty-name", ["phantom", "show", "", "--size", "16", "--out", "p.png"], "phantom", None),
    ("show-size-0", _with(SHOW, "--size", "0"), "--size 0", None),
    ("show-size-15", _with(SHOW, "--size", "15"), "--size 15", None),
    ("show-size-huge", _with(SHOW, "--size", "100000"), "--size 100000", None),
    ("show-size-text", _with(SHOW, "--size", "big"), "--size", None),
    ("show-param-text", [*SHOW, "--param", "n_spokes=many"], "n_spokes", None),
    ("show-param-negative", [*SHOW, "--param", "n_spokes=-3"], "n_spokes", None),
    ("show-param-float", [*SHOW, "--param", "n_spokes=12.5"], "n_spokes", None),
    ("show-param-nan", [*SHOW, "--param", "radius_mm=nan"], "radius_mm", None),
    ("show-param-inf", [*SHOW, "--param", "radius_mm=inf"], "radius_mm", None),
    ("show-param-zero", [*SHOW, "--param", "radius_mm=0"], "radius_mm", None),
    ("show-param-unknown", [*SHOW, "--param", "wobble=1"], "wobble", None),
    ("show-param-no-key", [*SHOW, "--param", "=3"], "--param", None),
    ("show-param-no-value", [*SHOW, "--param", "n_spokes"], "--param", None),
    ("show-out-jpg", _with(SHOW, "--out", "p.jpg"), "png", None),
    ("show-out-parent-file", _with(SHOW, "--out", "afile/p.png"), "is a file", None),
    ("show-out-exists", _with(SHOW, "--out", "exists.png"), "exists", None),
    ("show-out-folder", _with(SHOW, "--out", "folder.png"), "folder", None),
    # ------------------------------------------------------------------------------------- simulate
    ("sim-phantom-unknown", _with(SIM, "--phantom", "unicorn"), "unicorn", None),
    ("sim-phantom-missing", [a for a in SIM if a not in ("--phantom", "lego")], "--phantom", None),
    ("sim-scanner-case", _with(SIM, "--scanner", "ESRF_ID19"), "ESRF_ID19", None),
    ("sim-views-0", _with(SIM, "--views", "0"), "--views 0", None),
    ("sim-views-negative", _with(SIM, "--views", "-5"), "--views -5", None),
    ("sim-views-text", _with(SIM, "--views", "abc"), "--views", None),
    ("sim-views-float", _with(SIM, "--views", "1.5"), "--views", None),
    ("sim-det-trailing-comma", _with(SIM, "--det", "4000,"), "--det", None),
    ("sim-det-text", _with(SIM, "--det", "a,b"), "--det", None),
    ("sim-det-three", _with(SIM, "--det", "8,8,8"), "--det", None),
    ("sim-det-zero", _with(SIM, "--det", "0,8"), "--det", None),
    ("sim-det-negative", _with(SIM, "--det", "-8"), "--det", None),
    ("sim-det-float", _with(SIM, "--det", "8.5,8"), "--det", None),
    ("sim-spacing-zero", _with(SIM, "--spacing", "0"), "spacing", None),
    ("sim-spacing-nan", _with(SIM, "--spacing", "nan"), "spacing", None),
    ("sim-spacing-inf", _with(SIM, "--spacing", "inf,0.5"), "spacing", None),
    ("sim-spacing-negative", [*SIM, "--spacing=-0.5,0.5"], "--spacing", None),
    ("sim-spacing-text", _with(SIM, "--spacing", "fine"), "--spacing", None),
    ("sim-tilt-nan", [*SIM, "--tilt", "nan"], "tilt_deg", None),
    ("sim-tilt-inf", [*SIM, "--tilt", "inf"], "tilt_deg", None),
    ("sim-tilt-90", [*SIM, "--tilt", "90"], "tilt_deg", None),
    ("sim-tilt-negative", [*SIM, "--tilt", "-1"], "tilt_deg", None),
    ("sim-tilt-text", [*SIM, "--tilt", "steep"], "--tilt", None),
    ("sim-energy-zero", [*SIM, "--energy", "0"], "energy_kev", None),
    ("sim-energy-nan", [*SIM, "--energy", "nan"], "energy_kev", None),
    ("sim-energy-huge", [*SIM, "--energy", "1e9"], "energy_kev", None),
    ("sim-exposure-nan", [*SIM, "--exposure", "nan"], "exposure_s", None),
    ("sim-exposure-negative", [*SIM, "--exposure", "-1"], "exposure_s", None),
    ("sim-exposure-inf", [*SIM, "--exposure", "inf"], "exposure_s", None),
    ("sim-kvp-nan", [*NIKON, "--kvp", "nan"], "kvp", None),
    ("sim-kvp-zero", [*NIKON, "--kvp", "0"], "kvp", None),
    ("sim-kvp-negative", [*NIKON, "--kvp", "-100"], "kvp", None),
    ("sim-kvp-text", [*NIKON, "--kvp", "high"], "--kvp", None),
    ("sim-kvp-beamline", [*SIM, "--kvp", "100"], "kvp", None),
    ("sim-sod-negative", [*NIKON, "--sod", "-100"], "sod", None),
    ("sim-sod-nan", [*NIKON, "--sod", "nan"], "sod", None),
    ("sim-sdd-below-sod", [*NIKON, "--sod", "200", "--sdd", "100"], "sdd", None),
    ("sim-sdd-inf", [*NIKON, "--sdd", "inf"], "sdd", None),
    ("sim-seed-text", [*SIM, "--seed", "abc"], "--seed", None),
    ("sim-seed-float", [*SIM, "--seed", "1.5"], "--seed", None),
    ("sim-seed-huge", [*SIM, "--seed", str(2**70)], "seed", None),
    ("sim-method-unknown", [*SIM, "--method", "magic"], "--method", None),
    ("sim-param-unknown", [*SIM, "--param", "wobble=1"], "wobble", None),
    ("sim-param-no-value", [*SIM, "--param", "wobble"], "--param", None),
    ("sim-set-unknown", [*SIM, "--set", "warp_drive=1"], "warp_drive", None),
    ("sim-set-nan", [*SIM, "--set", "read_noise_adu=nan"], "read_noise_adu", None),
    ("sim-set-text", [*SIM, "--set", "read_noise_adu=loud"], "read_noise_adu", None),
    ("sim-set-no-key", [*SIM, "--set", "=2"], "--set", None),
    ("sim-absurd-size", _with(SIM, "--views", "100000", "--det", "3000,3000"), "needs about", None),
    ("sim-memory-low", _with(SIM, "--views", "64", "--det", "256,256"), "needs about",
     {"LAMINO_MEMORY_GB": "0.001"}),
    ("sim-memory-env-text", SIM, "LAMINO_MEMORY_GB", {"LAMINO_MEMORY_GB": "lots"}),
    ("sim-memory-env-negative", SIM, "LAMINO_MEMORY_GB", {"LAMINO_MEMORY_GB": "-4"}),
    ("sim-out-txt", _with(SIM, "--out", "s.txt"), "HDF5", None),
    ("sim-out-empty", _with(SIM, "--out", ""), "HDF5", None),
    ("sim-out-no-folder", _with(SIM, "--out", "nofolder/s.h5"), "does not exist", None),
    ("sim-out-folder", _with(SIM, "--out", "folder.h5"), "folder", None),
    ("sim-out-exists", _with(SIM, "--out", "exists.h5"), "exists", None),
    # ------------------------------------------------------------------------------------- recon
    ("recon-scan-missing-arg", ["recon", "--out", "r.h5"], "scan", None),
    ("recon-scan-empty", ["recon", "{fx}/empty.h5", "--out", "r.h5"],
     "empty.h5", None),
    ("recon-scan-truncated", ["recon", "{fx}/truncated.h5", "--out", "r.h5"], "truncated.h5", None),
    ("recon-scan-text", ["recon", "{fx}/text.h5", "--out", "r.h5"], "text.h5", None),
    ("recon-scan-no-geometry", ["recon", "{fx}/nogeometry.h5", "--out", "r.h5"], "nogeometry.h5", None),
    ("recon-scan-folder", ["recon", "{fx}", "--out", "r.h5"], "inputs", None),
    ("recon-scan-toml", ["recon", "{fx}/spec.toml", "--out", "r.h5"], "spec.toml", None),
    ("recon-method-unknown", [*REC, "--method", "art"], "--method", None),
    ("recon-iterations-text", [*REC, "--method", "sirt", "--iterations", "ten"], "--iterations", None),
    ("recon-iterations-float", [*REC, "--method", "sirt", "--iterations", "1.5"], "--iterations", None),
    ("recon-iterations-negative", [*REC, "--method", "cgls", "--iterations", "-3"], "--iterations -3", None),
    ("recon-lam-nan", [*REC, "--method", "fista-tv", "--iterations", "1", "--lam", "nan"], "lam", None),
    ("recon-lam-inf", [*REC, "--method", "fista-tv", "--iterations", "1", "--lam", "inf"], "lam", None),
    ("recon-lam-negative", [*REC, "--method", "fista-tv", "--iterations", "1", "--lam", "-1"], "lam", None),
    ("recon-lam-text", [*REC, "--method", "fista-tv", "--lam", "strong"], "--lam", None),
    ("recon-filter-unknown", [*REC, "--filter", "box"], "box", None),
    ("recon-filter-empty", [*REC, "--filter", ""], "filter", None),
    ("recon-grid-trailing-comma", [*REC, "--grid", "4000,"], "--grid", None),
    ("recon-grid-text", [*REC, "--grid", "a,b"], "--grid", None),
    ("recon-grid-three", [*REC, "--grid", "16,16,0.05"], "--grid", None),
    ("recon-grid-zero", [*REC, "--grid", "0,0.05"], "--grid", None),
    ("recon-grid-voxel-zero", [*REC, "--grid", "16,0"], "--grid", None),
    ("recon-grid-voxel-negative", [*REC, "--grid", "16,-0.05"], "--grid", None),
    ("recon-grid-voxel-nan", [*REC, "--grid", "16,nan"], "--grid", None),
    ("recon-grid-voxel-inf", [*REC, "--grid", "16,inf"], "--grid", None),
    ("recon-grid-size-nan", [*REC, "--grid", "nan,0.05"], "--grid", None),
    ("recon-grid-size-inf", [*REC, "--grid", "inf,0.05"], "--grid", None),
    ("recon-grid-size-float", [*REC, "--grid", "16.5,0.05"], "--grid", None),
    ("recon-grid-absurd", [*REC, "--grid", "2000,4000,4000,0.01"], "needs about", None),
    ("recon-memory-low", [*REC, "--grid", "64,0.05"], "needs about", {"LAMINO_MEMORY_GB": "0.0001"}),
    ("recon-memory-env-zero", REC, "LAMINO_MEMORY_GB", {"LAMINO_MEMORY_GB": "0"}),
    ("recon-out-txt", _with(REC, "--out", "r.txt"), "HDF5", None),
    ("recon-out-no-folder", _with(REC, "--out", "nofolder/r.h5"), "does not exist", None),
    ("recon-out-folder", _with(REC, "--out", "folder.h5"), "folder", None),
    ("recon-out-exists", _with(REC, "--out", "exists.h5"), "exists", None),
    ("recon-png-txt", [*REC, "--png", "r.txt"], "--png", None),
    ("recon-png-parent-file", [*REC, "--png", "afile/r.png"], "--png", None),
    ("recon-png-exists", [*REC, "--png", "exists.png"], "--png", None),
    ("recon-png-folder", [*REC, "--png", "folder.png"], "--png", None),
    # ------------------------------------------------------------------------------------- study run
    *[(f"run-spec-{name}", ["study", "run", f"{{fx}}/bad_{name}.toml", "--out", "res"], frag, None)
      for name, frag in {
          "empty": "[study]", "syntax": "TOML", "not_utf8": "TOML", "unknown_table": "[extras]",
          "no_sweep": "[sweep]", "study_name_empty": "[study] name", "study_name_int": "[study] name",
          "phantom_unknown": "unicorn", "phantom_key": "colour", "phantom_seed_float": "[phantom] seed",
          "phantom_param_unknown": "wobble", "phantom_param_range": "n_spokes", "phantom_param_nan": "radius_mm",
          "scanner_unknown": "esrf_id99", "scanner_key": "warp_drive", "scanner_det_zero": "[scanner] det_shape",
          "scanner_det_text": "[scanner] det_shape", "scanner_spacing_nan": "[scanner] det_spacing",
          "scanner_exposure_inf": "[scanner] exposure_s", "scanner_energy_text": "[scanner] energy_kev",
          "geometry_key": "wobble",
          "geometry_tilt_nan": "tilt_deg", "simulate_bins_float": "n_bins", "simulate_key": "photons",
          "simulate_method": "[simulate] method", "simulate_scatter_nan": "scatter_spr",
          "recon_method": "[recon] method", "recon_iterations_text": "iterations", "recon_lam_nan": "lam",
          "recon_key": "smooth", "grid_shape_2": "grid", "grid_voxel_zero": "grid", "grid_voxel_nan": "grid",
          "sweep_tilt_nan": "tilt_deg", "sweep_tilt_90": "tilt_deg", "sweep_tilt_empty": "tilt_deg",
          "sweep_views_float": "n_views", "sweep_views_text": "n_views", "sweep_views_huge": "n_views",
          "sweep_seeds_float": "seeds", "sweep_axis_unknown": "speed", "sweep_exposure_zero": "exposure_s",
          "sweep_exposure_inf": "exposure_s", "metric_unknown": "sharpness", "weight_nan": "weights",
          "constraint_malformed": "ssim >> 1", "constraint_metric": "wow", "metrics_unknown": "bogus",
          "planner_refine": "refine", "planner_key": "patience",
      }.items()],
    ("run-spec-missing", ["study", "run", "nothere.toml", "--out", "res"], "nothere.toml", None),
    ("run-spec-folder", ["study", "run", "{fx}", "--out", "res"], "inputs", None),
    ("run-spec-hdf5", ["study", "run", "{fx}/scan.h5", "--out", "res"], "scan.h5", None),
    ("run-no-out", ["study", "run", "{fx}/spec.toml"], "--out", None),
    ("run-workers-negative", [*RUN, "--workers", "-1"], "--workers -1", None),
    ("run-workers-text", [*RUN, "--workers", "all"], "--workers", None),
    ("run-out-file", _with(RUN, "--out", "exists.h5"), "existing file", None),
    ("run-out-no-parent", _with(RUN, "--out", "afile/deeper/res"), "is a file", None),
    ("run-out-other-study", _with(RUN, "--out", "{fx}/other_results"), "different study", None),
    # ------------------------------------------------------------------------------------- study report
    ("report-missing", ["study", "report", "nowhere"], "nowhere", None),
    ("report-file", ["study", "report", "exists.h5"], "exists.h5", None),
    ("report-not-results", ["study", "report", "{fx}/notresults"], "study.toml", None),
    ("report-corrupt-toml", ["study", "report", "{fx}/corrupt_results"], "study.toml", None),
    ("report-toml-not-utf8", ["study", "report", "{fx}/binary_results"], "binary_results/study.toml", None),
    ("report-spec-unknown-key", ["study", "report", "{fx}/unknown_results"], "speed", None),
    ("report-no-points", REPORT, "no finished points", None),
    ("report-out-file", [*REPORT, "--out", "exists.h5"], "existing file", None),
    ("report-out-parent-file", [*REPORT, "--out", "afile/report"], "is a file", None),
    ("report-extra-flag", [*REPORT, "--workers", "2"], "--workers", None),
    # ------------------------------------------------------------------------------------- plan
    *[(f"plan-spec-{name}", ["plan", f"{{fx}}/bad_{name}.toml"], frag, None) for name, frag in {
        "empty": "[study]", "syntax": "TOML", "phantom_unknown": "unicorn",
        "scanner_spacing_nan": "[scanner] det_spacing",
        "sweep_views_huge": "n_views", "metric_unknown": "sharpness", "weight_nan": "weights",
        "planner_refine": "refine", "recon_key": "smooth",
    }.items()],
    ("plan-spec-missing", ["plan", "nothere.toml"], "nothere.toml", None),
    ("plan-workers-negative", [*PLAN, "--workers", "-4"], "--workers -4", None),
    ("plan-workers-float", [*PLAN, "--workers", "1.5"], "--workers", None),
    ("plan-out-file", _with(PLAN, "--out", "exists.h5"), "--out", None),
    ("plan-out-parent-file", _with(PLAN, "--out", "afile/res"), "is a file", None),
    ("plan-report-parent-file", [*PLAN, "--report", "afile/report"], "--report", None),
    ("plan-report-file", [*PLAN, "--report", "exists.png"], "--report", None),
    # ------------------------------------------------------------------------------------- dataset generate
    ("gen-phantom-unknown", _with(GEN, "--phantom", "unicorn"), "unicorn", None),
    ("gen-count-text", _with(GEN, "--count", "many"), "--count", None),
    ("gen-count-float", _with(GEN, "--count", "1.5"), "--count", None),
    ("gen-count-negative", _with(GEN, "--count", "-1"), "--count -1", None),
    ("gen-views-0", _with(GEN, "--views", "0"), "--views 0", None),
    ("gen-views-text", _with(GEN, "--views", "lots"), "--views", None),
    ("gen-views-huge", _with(GEN, "--views", "100000000"), "--views 100000000", None),
    ("gen-det-trailing-comma", _with(GEN, "--det", "4000,"), "--det", None),
    ("gen-det-text", _with(GEN, "--det", "a,b"), "--det", None),
    ("gen-det-negative", _with(GEN, "--det", "-8"), "--det", None),
    ("gen-det-huge", _with(GEN, "--det", "8,1000000"), "--det", None),
    ("gen-spacing-zero", [*GEN, "--spacing", "0"], "--spacing", None),
    ("gen-spacing-nan", [*GEN, "--spacing", "nan"], "--spacing", None),
    ("gen-spacing-inf", [*GEN, "--spacing", "0.1,inf"], "--spacing", None),
    ("gen-tilt-nan", [*GEN, "--tilt", "nan"], "--tilt", None),
    ("gen-tilt-inf", [*GEN, "--tilt", "inf"], "--tilt", None),
    ("gen-tilt-negative", [*GEN, "--tilt", "-1"], "--tilt", None),
    ("gen-seed-text", [*GEN, "--seed", "x"], "--seed", None),
    ("gen-vary-unknown-bare", [*GEN, "--vary", "colour"], "colour", None),
    ("gen-vary-range-text", [*GEN, "--vary", "tilt_deg=a:b"], "--vary tilt_deg", None),
    ("gen-vary-range-tilt", [*GEN, "--vary", "tilt_deg=20:95"], "tilt_deg", None),
    ("gen-vary-tilt-nan", [*GEN, "--vary", "tilt_deg=nan:40"], "--vary tilt_deg", None),
    ("gen-vary-views-float", [*GEN, "--vary", "n_views=8.5|9"], "n_views", None),
    ("gen-vary-unknown-param", [*GEN, "--vary", "param.wobble=1:2"], "wobble", None),
    ("gen-vary-unknown-axis", [*GEN, "--vary", "speed=1:2"], "speed", None),
    ("gen-param-unknown", [*GEN, "--param", "wobble=1"], "wobble", None),
    ("gen-param-no-value", [*GEN, "--param", "wobble"], "--param", None),
    ("gen-scanner-unknown", [*GEN, "--scanner", "xray9000"], "xray9000", None),
    ("gen-set-unknown", [*GEN, "--set", "warp_drive=1"], "warp_drive", None),
    ("gen-set-nan", [*GEN, "--set", "exposure_s=nan"], "exposure_s", None),
    ("gen-absurd-size", _with(GEN, "--det", "20000,20000", "--views", "4000"), "needs about", LOW),
    ("gen-out-file", _with(GEN, "--out", "exists.h5"), "existing file", None),
    ("gen-out-parent-file", _with(GEN, "--out", "exists.png/ds"), "is a file", None),
    ("gen-no-out", [a for a in GEN if a not in ("--out", "ds")], "--out", None),
    # ------------------------------------------------------------------------------------- bench
    ("bench-size-0", _with(BENCH, "--size", "0"), "--size 0", None),
    ("bench-size-text", _with(BENCH, "--size", "big"), "--size", None),
    ("bench-size-huge", _with(BENCH, "--size", "100000"), "needs about", LOW),
    ("bench-views-1", _with(BENCH, "--views", "1"), "--views 1", None),
    ("bench-views-negative", _with(BENCH, "--views", "-2"), "--views -2", None),
    ("bench-tilt-nan", [*BENCH, "--tilt", "nan"], "tilt_deg", None),
    ("bench-tilt-90", [*BENCH, "--tilt", "90"], "tilt_deg", None),
    ("bench-tilt-negative", [*BENCH, "--tilt", "-5"], "tilt_deg", None),
    ("bench-tilt-text", [*BENCH, "--tilt", "steep"], "--tilt", None),
    ("bench-repeats-0", _with(BENCH, "--repeats", "0"), "--repeats 0", None),
    ("bench-repeats-negative", _with(BENCH, "--repeats", "-1"), "--repeats -1", None),
    ("bench-repeats-float", _with(BENCH, "--repeats", "2.5"), "--repeats", None),
    ("bench-beam-unknown", [*BENCH, "--beam", "fan"], "--beam", None),
]


def test_there_are_enough_cases_and_their_ids_are_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 151


@pytest.mark.parametrize("argv, fragment, env", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_writes_nothing(argv, fragment, env, fx, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LAMINO_MEMORY_GB", raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "exists.h5").write_text("keep")
    (tmp_path / "exists.png").write_text("keep")
    (tmp_path / "folder.h5").mkdir()
    (tmp_path / "folder.png").mkdir()
    before = _listing(tmp_path), _listing(fx)
    argv = [a.replace("{fx}", str(fx)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:                       # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    assert lines[0].startswith("lamino") and "error" in lines[0], err
    assert "Traceback" not in err and fragment in err, err
    assert (_listing(tmp_path), _listing(fx)) == before, "a file was written"

"""Bad input gives one-line ValueErrors (what was wrong, what is allowed), never deep tracebacks or silent garbage:
geometry dicts, damaged scan and volume files, seeds, NaN/inf data, a geometry whose detector is not the scanner's."""

from __future__ import annotations

import json
import math
import warnings

import h5py
import numpy as np
import pytest

from lamino.cli import main
from lamino.geometry import Geometry, VolumeGrid
from lamino.io import Scan, Volume, flat_dark_correct
from lamino.phantoms import Box, Phantom, place
from lamino.projector import Projector
from lamino.recon import cgls, fbp, fdk, operator_norm, sirt
from lamino.simulate import Detector, Scanner, simulate

DET = (4, 6)


def _geometry() -> Geometry:
    return Geometry.parallel(tilt_deg=30, n_views=3, det_shape=DET, det_spacing=0.5)


def _scan(counts=None) -> Scan:
    g = _geometry()
    rng = np.random.default_rng(0)
    counts = rng.uniform(100, 900, (g.n_views, *DET)) if counts is None else counts
    return Scan(counts=counts, flats=np.full((1, *DET), 1000.0), darks=np.full((1, *DET), 10.0), geometry=g,
                scanner={"name": "test"}, phantom={"name": "slab"}, provenance={"seed": 0})


def _one_line(err: str) -> str:
    err = err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------- Geometry.from_dict
def test_geometry_from_dict_empty_names_beam():
    with pytest.raises(ValueError, match=r"geometry key 'beam' is missing: give 'parallel' or 'cone'"):
        Geometry.from_dict({})


def test_geometry_from_dict_missing_det_shape_names_it_and_the_keys_needed():
    d = _geometry().to_dict()
    del d["det_shape"]
    with pytest.raises(ValueError, match=r"geometry key 'det_shape' is missing: a parallel-beam geometry dict needs "
                                         r"beam, det_shape, det_spacing, tilt_deg, angles_deg"):
        Geometry.from_dict(d)
    cone = Geometry.cone(tilt_deg=20, n_views=2, det_shape=DET).to_dict()
    del cone["sod"]
    with pytest.raises(ValueError, match=r"geometry key 'sod' is missing: .*sod, sdd"):
        Geometry.from_dict(cone)


def test_geometry_from_dict_bad_beam():
    with pytest.raises(ValueError, match=r"geometry key 'beam' is 'fan': give 'parallel' or 'cone'"):
        Geometry.from_dict({**_geometry().to_dict(), "beam": "fan"})


@pytest.mark.parametrize("key, value, allowed", [
    ("tilt_deg", "30", r"a number in \[0, 90\) degrees"),
    ("det_spacing", ["0.5", 0.5], "a number or"),
    ("angles_deg", [0.0, "x", 2.0], "a list of view angles"),
    ("det_shape", True, r"\(rows, cols\), integers ≥ 1"),
    ("cor_offset", {"x": 1}, "a number"),
])
def test_geometry_from_dict_wrong_type_names_key_and_what_is_allowed(key, value, allowed):
    with pytest.raises(ValueError, match=rf"geometry key '{key}'=.* is not allowed: give {allowed}"):
        Geometry.from_dict({**_geometry().to_dict(), key: value})


def test_geometry_from_dict_unknown_key_and_not_a_dict():
    with pytest.raises(ValueError, match=r"geometry key 'tilt' is not allowed: the keys are beam, det_shape"):
        Geometry.from_dict({**_geometry().to_dict(), "tilt": 30})
    with pytest.raises(ValueError, match=r"geometry of type list is not allowed: give a dict"):
        Geometry.from_dict([1, 2])


def test_geometry_from_dict_round_trips_still():
    for g in (_geometry(), Geometry.cone(tilt_deg=20, n_views=2, det_shape=DET, det_offset=(0.1, 0.2)),
              Geometry.from_vectors(_geometry().vectors(), DET)):
        assert Geometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g


# ---------------------------------------------------------------------------------------------- damaged files
@pytest.fixture
def scan_file(tmp_path):
    path = str(tmp_path / "scan.h5")
    _scan().save(path)
    return path


def _damage(path: str, dataset: str, value=None) -> None:
    with h5py.File(path, "a") as f:
        del f[dataset]
        if value is not None:
            f[dataset] = value


def test_not_hdf5_names_the_file(tmp_path):
    path = tmp_path / "scan.h5"
    path.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match=r"scan\.h5' is not an HDF5 file"):
        Scan.load(path)
    with pytest.raises(ValueError, match=r"scan\.h5' is not an HDF5 file"):
        Volume.load(path)


def test_missing_geometry_names_file_and_dataset(scan_file):
    _damage(scan_file, "entry/lamino/geometry")
    with pytest.raises(ValueError, match=r"scan\.h5' lacks /entry/lamino/geometry: a lamino file needs a JSON text"):
        Scan.load(scan_file)


@pytest.mark.parametrize("dataset", ["entry/instrument/detector/data", "entry/instrument/detector/image_key",
                                     "entry/lamino/scanner"])
def test_missing_dataset_names_file_and_dataset(scan_file, dataset):
    _damage(scan_file, dataset)
    with pytest.raises(ValueError, match=rf"scan\.h5' lacks /{dataset}"):
        Scan.load(scan_file)


def test_corrupt_json_names_file_and_dataset(scan_file):
    _damage(scan_file, "entry/lamino/provenance", "{not json")
    with pytest.raises(ValueError, match=r"scan\.h5' has corrupt JSON in /entry/lamino/provenance .*JSON object"):
        Scan.load(scan_file)
    _damage(scan_file, "entry/lamino/provenance", "[1, 2]")
    with pytest.raises(ValueError, match=r"scan\.h5' has a JSON list in /entry/lamino/provenance"):
        Scan.load(scan_file)


def test_corrupt_geometry_names_file_and_key(scan_file):
    d = _geometry().to_dict()
    del d["angles_deg"]
    _damage(scan_file, "entry/lamino/geometry", json.dumps(d))
    with pytest.raises(ValueError, match=r"scan\.h5' has a corrupt /entry/lamino/geometry: geometry key 'angles_deg' "
                                         r"is missing"):
        Scan.load(scan_file)


def test_inconsistent_geometry_names_file(scan_file):
    d = _geometry().to_dict()
    d["det_shape"] = [5, 6]
    _damage(scan_file, "entry/lamino/geometry", json.dumps(d))
    with pytest.raises(ValueError, match=r"scan\.h5' holds an inconsistent scan: counts with shape"):
        Scan.load(scan_file)


def test_damaged_volume_file_names_it(tmp_path):
    path = str(tmp_path / "vol.h5")
    grid = VolumeGrid((2, 3, 4), 0.5)
    Volume(np.zeros(grid.shape), grid, _geometry(), method="fbp").save(path)
    _damage(path, "entry/lamino/grid", "{}")
    with pytest.raises(ValueError, match=r"vol\.h5' has a corrupt /entry/lamino/grid: KeyError"):
        Volume.load(path)
    _damage(path, "entry/data/data")
    with pytest.raises(ValueError, match=r"vol\.h5' lacks /entry/data/data"):
        Volume.load(path)


def test_cli_recon_of_damaged_file_is_one_line(scan_file, tmp_path, capsys):
    _damage(scan_file, "entry/lamino/geometry")
    assert main(["recon", scan_file, "--out", str(tmp_path / "r.h5")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "lacks /entry/lamino/geometry" in err and "scan.h5" in err


# ---------------------------------------------------------------------------------------------- seeds
def _slab() -> Phantom:
    return Phantom.build("slab", [place(Box((40.0, 40.0, 0.8)), "aluminium", label="slab")])


def _beamline(det=DET) -> Scanner:
    return Scanner.preset("esrf_id19", energy_kev=30.0).replace(detector=Detector.ideal(det, 0.5))


@pytest.mark.parametrize("seed", ["abc", -1, 1.5, True, None, 2**32])
def test_simulate_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match=rf"seed={seed!r} is not allowed: give an integer from 0 to 4294967295"):
        simulate(_slab(), _geometry(), _beamline(), seed=seed, truth=False)


def test_operator_norm_rejects_negative_seed():
    with pytest.raises(ValueError, match=r"seed=-1 is not allowed: give an integer from 0"):
        operator_norm(Projector(_geometry(), VolumeGrid((2, 3, 3), 0.5)), seed=-1)


# ---------------------------------------------------------------------------------------------- NaN / inf
def test_nan_counts_are_rejected_with_their_number():
    counts = np.full((3, *DET), 500.0)
    counts[0, 1, 1] = np.nan
    counts[2, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"counts are not allowed: 2 of 72 values are NaN or inf"):
        flat_dark_correct(counts, np.full(DET, 1000.0), np.zeros(DET))
    with pytest.raises(ValueError, match=r"counts are not allowed: 2 of 72 values"):
        _scan(counts).line_integrals()


def test_huge_finite_values_are_not_mistaken_for_inf():
    counts = np.full((3, *DET), 1e308)            # their sum overflows; each is finite
    assert np.all(np.isfinite(flat_dark_correct(counts, np.full(DET, 1000.0), np.zeros(DET))))
    g, grid = _geometry(), VolumeGrid((2, 3, 3), 0.5)
    assert fbp(np.full((g.n_views, *DET), 3e38, np.float32), g, grid).shape == grid.shape     # no ValueError


def test_dead_pixels_are_not_errors():
    flat = np.full((1, *DET), 1000.0)
    flat[0, 0, 0] = 10.0                   # F − D = 0: no open beam
    flat[0, 1, 1] = np.nan                 # broken flat pixel
    out = flat_dark_correct(np.full((3, *DET), 500.0), flat, np.full((1, *DET), 10.0))
    working = -np.log(490.0 / 990.0)       # every other pixel: T = (500 − 10) / (1000 − 10)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[:, [0, 1], [0, 1]], working, rtol=1e-6)    # filled from their neighbours


def test_nan_counts_in_a_file_name_the_file(tmp_path, capsys):
    counts = np.full((3, *DET), 500.0)
    counts[1, 2, 3] = np.nan
    path = str(tmp_path / "nan_scan.h5")
    _scan(counts).save(path)
    scan = Scan.load(path)
    assert scan.source == path
    with pytest.raises(ValueError, match=r"counts of '.*nan_scan\.h5' are not allowed: 1 of 72 values are NaN"):
        scan.line_integrals()
    assert main(["recon", path, "--out", str(tmp_path / "r.h5")]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "nan_scan.h5" in err and "1 of 72 values are NaN or inf" in err
    assert not (tmp_path / "r.h5").exists()


def _bad_projections(g: Geometry) -> np.ndarray:
    p = np.zeros((g.n_views, *g.det_shape), np.float32)
    p[0, 0, :3] = np.nan
    p[-1, -1, -1] = -np.inf
    return p


def test_fbp_and_fdk_reject_non_finite_projections():
    g, grid = _geometry(), VolumeGrid((2, 3, 3), 0.5)
    with pytest.raises(ValueError, match=r"projections are not allowed: 4 of 72 values are NaN or inf"):
        fbp(_bad_projections(g), g, grid)
    cone = Geometry.cone(tilt_deg=20, n_views=3, sod=100.0, sdd=200.0, det_shape=DET, det_spacing=0.5)
    with pytest.raises(ValueError, match=r"projections are not allowed: 4 of 72 values are NaN or inf"):
        fdk(_bad_projections(cone), cone, grid)


@pytest.mark.parametrize("method", [sirt, cgls])
def test_iterative_methods_reject_non_finite_projections_and_start(method):
    g, grid = _geometry(), VolumeGrid((2, 3, 3), 0.5)
    with pytest.raises(ValueError, match=r"projections are not allowed: 4 of 72 values are NaN or inf"):
        method(_bad_projections(g), g, grid, iterations=1)
    x0 = np.zeros(grid.shape, np.float32)
    x0[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"x0 is not allowed: 1 of 18 values are NaN or inf"):
        method(np.zeros((g.n_views, *DET), np.float32), g, grid, iterations=1, x0=x0)


# ---------------------------------------------------------------------------------------------- detector mismatch
def test_simulate_warns_once_when_the_geometry_detector_is_not_the_scanners():
    g = _geometry()
    lengths = {"aluminium": np.zeros((g.n_views, *DET))}
    with pytest.warns(UserWarning, match=r"the geometry's detector \(4×6 pixels of 0\.5 mm\) differs from the "
                                         r"scanner's \(5×6 pixels of 0\.5 mm\): simulating the geometry's") as rec:
        scan = simulate(_slab(), g, _beamline((5, 6)), noise=False, truth=False, lengths=lengths)
    assert len([w for w in rec if "differs from the scanner" in str(w.message)]) == 1
    assert scan.counts.shape == (g.n_views, *DET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(_slab(), g, _beamline(), noise=False, truth=False, lengths=lengths)

"""Scan dataset: NXtomo HDF5 round trip, independent NXtomo reader, TIFF export and flat/dark correction."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.io import GroundTruth, Scan, correction, flat_dark_correct, nxtomo

DET = (8, 10)


def _geometries() -> dict[str, Geometry]:
    par = Geometry.parallel(tilt_deg=30, n_views=6, det_shape=DET, det_spacing=0.1)
    return {
        "parallel": par,
        "cone": Geometry.cone(tilt_deg=20, n_views=6, sod=100.0, sdd=400.0, det_shape=DET, det_spacing=(0.2, 0.25),
                              cor_offset=0.3, det_offset=(0.1, -0.2), det_roll_deg=1.5),
        "vectors": Geometry.from_vectors(par.vectors() * 1.01, det_shape=DET, beam="parallel"),
    }


def _scan(geometry: Geometry | None = None, truth: bool = True, seed: int = 0) -> Scan:
    g = geometry or _geometries()["parallel"]
    rng = np.random.default_rng(seed)
    gt = None
    if truth:
        grid = VolumeGrid((4, 5, 6), voxel_size=(0.1, 0.2, 0.3), center=(0.0, 0.5, -0.25))
        mu = rng.random(grid.shape).astype(np.float32)
        gt = GroundTruth(mu=mu, grid=grid, energy_kev=60.0, labels={"pores": mu > 0.7, "particles": mu < 0.2})
    return Scan(
        counts=rng.uniform(100, 4000, (g.n_views, *DET)).astype(np.float32),
        flats=rng.uniform(4000, 5000, (3, *DET)).astype(np.float32),
        darks=rng.uniform(90, 110, (2, *DET)).astype(np.float32),
        geometry=g,
        scanner={"name": "nikon_xt225", "beam": g.beam, "kvp": 100.0, "current_ua": 80.0,
                 "filters": [["Cu", 0.5]], "energy_kev": None},
        phantom={"name": "ssb_pellet", "params": {"radius": 1.5, "layers": [1, 2, 3]}},
        truth=gt,
        provenance={"lamino": "0.1.0", "seed": np.int64(seed), "date": "2025-01-02T03:04:05+00:00"},
    )


def _assert_same(a: Scan, b: Scan) -> None:
    for name in ("counts", "flats", "darks"):
        x, y = getattr(a, name), getattr(b, name)
        assert y.dtype == np.float32 and np.array_equal(x, y), name
    assert a.geometry == b.geometry
    assert np.array_equal(a.geometry.vectors(), b.geometry.vectors())
    assert a.scanner == b.scanner and a.phantom == b.phantom and a.provenance == b.provenance
    assert a.truth == b.truth


# ---------------------------------------------------------------------------------------------- HDF5
@pytest.mark.parametrize("kind", ["parallel", "cone", "vectors"])
def test_save_load_round_trip_is_exact(tmp_path, kind):
    scan = _scan(_geometries()[kind])
    path = tmp_path / "scan.h5"
    assert scan.save(path) == str(path)
    back = Scan.load(path)
    _assert_same(scan, back)
    assert back.provenance["seed"] == 0 and type(back.provenance["seed"]) is int
    assert list(back.truth.labels) == ["pores", "particles"]          # label order kept
    assert back.truth.labels["pores"].dtype == bool and back.truth.mu.dtype == np.float32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]


def test_round_trip_without_truth_and_with_single_2d_flat_dark(tmp_path):
    g = _geometries()["parallel"]
    scan = Scan(np.ones((6, *DET)), flats=np.full(DET, 5.0), darks=np.zeros(DET), geometry=g)
    assert scan.flats.shape == (1, *DET) and scan.counts.dtype == np.float32
    back = Scan.load(scan.save(tmp_path / "s.h5"))
    _assert_same(scan, back)
    assert back.truth is None and back.scanner == {} and back.phantom == {} and back.provenance == {}


def test_file_layout_follows_nxtomo_and_compresses_truth(tmp_path):
    scan = _scan(_geometries()["cone"])
    path = scan.save(tmp_path / "scan.h5")
    g = scan.geometry
    with h5py.File(path, "r") as f:
        entry = f["entry"]
        assert entry.attrs["NX_class"] == "NXentry" and entry["definition"].asstr()[()] == "NXtomo"
        assert entry["start_time"].asstr()[()] == "2025-01-02T03:04:05+00:00"
        assert entry["instrument"].attrs["NX_class"] == "NXinstrument"
        src = entry["instrument/source"]
        assert src["type"].asstr()[()] == "Fixed Tube X-ray" and src["probe"].asstr()[()] == "x-ray"
        det = entry["instrument/detector"]
        assert det.attrs["NX_class"] == "NXdetector"
        assert det["data"].shape == (2 + 3 + 6, *DET) and det["data"].dtype == np.float32
        assert list(det["image_key"][()]) == [2, 2, 1, 1, 1, 0, 0, 0, 0, 0, 0]
        assert np.array_equal(det["data"][0:2], scan.darks) and np.array_equal(det["data"][5:], scan.counts)
        assert det["x_pixel_size"][()] == pytest.approx(0.25e-3) and det["x_pixel_size"].attrs["units"] == "m"
        assert det["y_pixel_size"][()] == pytest.approx(0.2e-3)
        assert det["distance"][()] == pytest.approx(0.3) and det["distance"].attrs["units"] == "m"
        rot = entry["sample/rotation_angle"]
        assert rot.attrs["units"] == "degree" and np.allclose(rot[5:], g.angles_deg) and rot.shape == (11,)
        assert entry["control"].attrs["NX_class"] == "NXmonitor" and entry["control/data"].shape == (11,)
        assert entry["control/data"][0] == pytest.approx(80e-6) and entry["control/data"].attrs["units"] == "A"
        nxdata = entry["data"]
        assert nxdata.attrs["NX_class"] == "NXdata" and nxdata.attrs["signal"] == "data"
        assert nxdata.get("data", getlink=True).path == "/entry/instrument/detector/data"
        assert np.array_equal(nxdata["rotation_angle"][()], rot[()])
        lam = entry["lamino"]
        assert np.array_equal(lam["vectors"][()], g.vectors()) and lam["tilt_deg"][()] == 20.0
        assert Geometry.from_dict(json.loads(lam["geometry"].asstr()[()])) == g
        assert json.loads(lam["phantom"].asstr()[()]) == scan.phantom
        for ds in (lam["truth/mu"], lam["truth/labels/pores"]):
            assert ds.compression == "gzip" and ds.compression_opts == 4


def test_existing_file_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "scan.h5"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match="exists; pass overwrite=True"):
        _scan().save(path)
    assert path.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]
    _scan(seed=1).save(path, overwrite=True)
    _assert_same(Scan.load(path), _scan(seed=1))


def test_failed_write_leaves_no_temp_files_and_keeps_the_old_file(tmp_path, monkeypatch):
    old = _scan(seed=1)
    old.save(tmp_path / "old.h5")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(nxtomo, "_write_lamino", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _scan().save(tmp_path / "new.h5")
    with pytest.raises(RuntimeError, match="disk full"):
        _scan().save(tmp_path / "old.h5", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.h5"]
    monkeypatch.undo()
    _assert_same(Scan.load(tmp_path / "old.h5"), old)


def test_unserialisable_metadata_is_refused_before_writing(tmp_path):
    scan = _scan()
    scan.provenance = {"callback": object()}
    with pytest.raises(ValueError, match="provenance is not allowed"):
        scan.save(tmp_path / "s.h5")
    assert list(tmp_path.iterdir()) == []


def test_load_refuses_files_that_are_not_lamino_scans(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        Scan.load(text)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_group("entry").attrs["NX_class"] = "NXentry"
    with pytest.raises(ValueError, match="not a lamino scan file"):
        Scan.load(plain)
    with pytest.raises(FileNotFoundError):
        Scan.load(tmp_path / "missing.h5")


@pytest.mark.parametrize("kind", ["cone", "parallel"])
def test_independent_nxtomo_reader_sees_the_same_frames(tmp_path, kind):
    nxtomo = pytest.importorskip("nxtomo")
    scan = _scan(_geometries()[kind])
    scan.scanner["energy_kev"] = 25.0 if kind == "parallel" else None       # monochromatic beam line
    path = scan.save(tmp_path / "scan.h5")
    nx = nxtomo.NXtomo().load(path, data_path="entry", detector_data_as="as_numpy_array")
    det = nx.instrument.detector
    keys = [int(getattr(k, "value", k)) for k in det.image_key_control]
    assert keys == [2, 2, 1, 1, 1] + [0] * 6
    assert [int(getattr(k, "value", k)) for k in det.image_key] == keys
    assert det.data.shape == (11, *DET) and np.array_equal(det.data[5:], scan.counts)
    dv, du = scan.geometry.det_spacing
    assert det.x_pixel_size.to("mm").magnitude == pytest.approx(du)
    assert det.y_pixel_size.to("mm").magnitude == pytest.approx(dv)
    if kind == "parallel":
        assert nx.instrument.beam.incident_energy.to("keV").magnitude == pytest.approx(25.0)
    if kind == "cone":
        assert det.distance.to("mm").magnitude == pytest.approx(300.0)
        assert nx.instrument.source.distance.to("mm").magnitude == pytest.approx(-100.0)
        assert np.allclose(nx.control.data.to("uA").magnitude, 80.0)
    angles = nx.sample.rotation_angle.to("degree").magnitude
    assert np.allclose(angles[5:], scan.geometry.angles_deg) and len(angles) == 11
    source = {"cone": "Fixed Tube X-ray", "parallel": "Synchrotron X-ray Source"}[kind]
    assert str(getattr(nx.instrument.source.type, "value", nx.instrument.source.type)) == source
    assert nx.sample.name == "ssb_pellet"


# ---------------------------------------------------------------------------------------------- validation
def test_construction_validates_shapes_with_one_line_errors():
    g = _geometries()["parallel"]
    good = dict(counts=np.ones((6, *DET)), flats=np.ones((2, *DET)), darks=np.zeros((1, *DET)), geometry=g)
    cases = [
        (dict(counts=np.ones((5, *DET))), "counts with shape"),
        (dict(counts=np.ones(DET)), "counts with shape"),
        (dict(flats=np.ones((2, 8, 9))), "flats with shape"),
        (dict(darks=np.ones((0, *DET))), "darks with shape"),
        (dict(geometry="parallel"), "geometry="),
        (dict(scanner=None), "scanner of type"),
        (dict(truth={"mu": 1}), "truth of type"),
    ]
    for change, message in cases:
        with pytest.raises(ValueError, match=message) as info:
            Scan(**{**good, **change})
        assert "\n" not in str(info.value)
    grid = VolumeGrid((4, 5, 6))
    with pytest.raises(ValueError, match="mu with shape"):
        GroundTruth(np.zeros((4, 5, 5)), grid, 60.0)
    with pytest.raises(ValueError, match="must be bool"):
        GroundTruth(np.zeros((4, 5, 6)), grid, 60.0, labels={"a": np.zeros((4, 5, 6))})
    with pytest.raises(ValueError, match="label name"):
        GroundTruth(np.zeros((4, 5, 6)), grid, 60.0, labels={"a/b": np.zeros((4, 5, 6), bool)})
    with pytest.raises(ValueError, match="energy_kev"):
        GroundTruth(np.zeros((4, 5, 6)), grid, -1.0)


def test_summary_properties():
    scan = _scan()
    assert scan.n_views == 6 and scan.shape == (6, *DET)
    text = repr(scan)
    assert "tilt 30°" in text and "6 views of 8×10 px" in text and "truth 4×5×6" in text and "\n" not in text


# ---------------------------------------------------------------------------------------------- correction
def test_flat_dark_correct_recovers_known_line_integrals(monkeypatch):
    rng = np.random.default_rng(3)
    p = rng.uniform(0.0, 6.0, (7, *DET))
    flat = rng.uniform(2000, 60000, DET)
    dark = rng.uniform(50, 150, DET)
    counts = (flat * np.exp(-p) + dark).astype(np.float32)
    flats = np.stack([flat * 0.9, flat, flat * 1.1]) + dark                  # raw flats average to F + D
    darks = np.stack([dark - 5, dark + 5])                                    # average to D
    out = flat_dark_correct(counts, flats.astype(np.float32), darks.astype(np.float32))
    assert out.dtype == np.float32 and out.shape == p.shape
    np.testing.assert_allclose(out, p, rtol=0, atol=1e-5)
    monkeypatch.setattr(correction, "_CHUNK_BYTES", 8 * DET[0] * DET[1] * 2)   # two views per chunk
    flats, darks = flats.astype(np.float32), darks.astype(np.float32)
    assert np.array_equal(flat_dark_correct(counts, flats, darks), out)
    scan = Scan(counts, flats, darks, Geometry.parallel(n_views=7, det_shape=DET))
    assert np.array_equal(scan.line_integrals(), out)


def test_flat_dark_correct_is_always_finite():
    flat = np.full((1, 2, 3), 1000.0)
    dark = np.full((1, 2, 3), 100.0)
    flat[0, 1, 2] = 100.0            # F − D = 0: dead pixel
    flat[0, 1, 1] = np.nan           # broken flat
    flat[0, 1, 0], dark[0, 1, 0] = 1e-300, 0.0     # F − D tiny: T overflows to inf
    counts = np.array([[[0.0, -50.0, 100.0], [1e300, 1e9, 550.0]]])
    out = flat_dark_correct(counts, flat, dark, min_transmission=1e-4)
    assert np.all(np.isfinite(out))
    floor = -math.log(1e-4)
    np.testing.assert_allclose(out[0, 0], [floor, floor, floor], rtol=1e-6)  # I ≤ D: T clipped
    # no open beam (F − D = 0, NaN or 1e-300): defective, filled from their working neighbours (all at the floor)
    np.testing.assert_allclose(out[0, 1], [floor, floor, floor], rtol=1e-6)
    kept = flat_dark_correct(counts, flat, dark, min_transmission=1e-4, fill_defects=False)
    assert kept[0, 1, 1] == 0.0 and kept[0, 1, 2] == 0.0                    # unfilled: T = 1
    with pytest.raises(ValueError, match="counts are not allowed: 2 of 6 values are NaN or inf"):
        flat_dark_correct(np.array([[[0.0, np.nan, 1.0], [np.inf, 1.0, 1.0]]]), flat, dark)
    with pytest.raises(ValueError, match="min_transmission"):
        flat_dark_correct(counts, flat, dark, min_transmission=0.0)
    with pytest.raises(ValueError, match="flats with shape"):
        flat_dark_correct(counts, np.ones((1, 3, 2)), dark)


# ---------------------------------------------------------------------------------------------- TIFF
def test_export_tiff_writes_one_file_per_view_plus_flat_and_dark(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    scan = _scan()
    folder = tmp_path / "tiffs"
    paths = scan.export_tiff(folder)
    tifs = sorted(p for p in os.listdir(folder) if p.endswith(".tif"))
    assert len(tifs) == scan.n_views + 2 and sorted(os.listdir(folder)) == sorted(os.path.basename(p) for p in paths)
    for i in range(scan.n_views):
        image = tifffile.imread(folder / f"proj_{i:04d}.tif")
        assert image.dtype == np.float32 and np.array_equal(image, scan.counts[i])
    np.testing.assert_allclose(tifffile.imread(folder / "flat.tif"), scan.flats.mean(0), rtol=1e-6)
    np.testing.assert_allclose(tifffile.imread(folder / "dark.tif"), scan.darks.mean(0), rtol=1e-6)
    assert Geometry.from_dict(json.loads((folder / "geometry.json").read_text())) == scan.geometry
    with pytest.raises(ValueError, match="not empty; pass overwrite=True"):
        scan.export_tiff(folder)
    short = Scan(scan.counts[:4], scan.flats, scan.darks, Geometry.parallel(n_views=4, det_shape=DET))
    short.export_tiff(folder, overwrite=True)
    assert len([p for p in os.listdir(folder) if p.startswith("proj_")]) == 4       # stale views removed
    assert not [p for p in os.listdir(folder) if p.startswith("tmp")]


def test_volume_round_trip_and_nxtomoproc_layout(tmp_path):
    import h5py

    from lamino.io import Volume

    grid = VolumeGrid((3, 4, 5), (0.2, 0.1, 0.1), center=(0.0, 1.0, -1.0))
    data = np.random.default_rng(0).random(grid.shape).astype(np.float32)
    g = Geometry.parallel(tilt_deg=30.0, n_views=6, det_shape=(8, 10), det_spacing=0.1)
    vol = Volume(data, grid, g, method="sirt", params={"iterations": 5}, history={"residual": [3.0, 2.0]},
                 provenance={"scan": "scan.h5"})
    path = tmp_path / "recon.h5"
    vol.save(path)
    back = Volume.load(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.grid == grid and back.geometry == g and back.method == "sirt"
    assert back.params == {"iterations": 5} and back.history == {"residual": [3.0, 2.0]}
    with h5py.File(path, "r") as f:
        assert f["entry/definition"].asstr()[()] == "NXtomoproc"
        np.testing.assert_allclose(f["entry/data/y"][()], grid.axis(1))
        assert f["entry/data/data"].attrs["units"] == "1/mm"
    with pytest.raises(ValueError, match="exists"):
        vol.save(path)
    with pytest.raises(ValueError, match="shape"):
        Volume(data[:2], grid)


def test_defective_pixels_are_filled_from_their_neighbours():
    """A 3 × 3 cluster of dead pixels and a hot one (stuck at saturation in every frame) on a linear ramp of line
    integrals: the mean of the 8-neighbours of an isolated pixel on a linear ramp is exact; a cluster's rim is
    filled from one side, so it is off by at most one diagonal step of the ramp (0.07)."""
    rows, cols = 12, 16
    li = 0.1 + 0.05 * np.arange(cols)[None, None, :] + 0.02 * np.arange(rows)[None, :, None] + np.zeros((2, 1, 1))
    dark, flat = np.full((1, rows, cols), 100.0), np.full((1, rows, cols), 10100.0)
    counts = 100.0 + 10000.0 * np.exp(-li)
    flat[0, 4:7, 4:7] = dark[0, 4:7, 4:7]                            # dead cluster: no signal
    dark[0, 9, 12] = flat[0, 9, 12] = counts[:, 9, 12] = 65535.0     # hot: saturated everywhere
    out = flat_dark_correct(counts, flat, dark)
    cluster = np.zeros((rows, cols), bool)
    cluster[4:7, 4:7] = True
    np.testing.assert_allclose(out[:, ~cluster], li[:, ~cluster], rtol=1e-5)      # the hot pixel exactly
    assert np.max(np.abs(out - li)[:, cluster]) <= 0.07 + 1e-6
    raw = flat_dark_correct(counts, flat, dark, fill_defects=False)
    assert np.all(raw[:, 4:7, 4:7] == 0.0) and np.all(raw[:, 9, 12] == 0.0)

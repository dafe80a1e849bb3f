"""Region-of-interest CL, iterative (lamino.recon.iterative with sample_size): the plate of tests/test_recon_roi.py.

The reference is the same solver, at the same iterations, on untruncated data (the wide detector) and a grid that
holds the whole plate (its 4 layers, 81 × 81 voxels, aligned with ROI), cropped to ROI. The truncated data are the
central columns of the same forward projection. With ``sample_size`` the solver runs on the measured support,
which here is the whole plate (the detector's rows see the plate from edge to edge along the beam).
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
import pytest
from test_recon_roi import PLATE, ROI, VS, geometries, plate_volume

from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon import cgls, fista_tv, reconstruct, sirt
from lamino.recon.truncation import measured_support

HOLDS_PLATE = VolumeGrid((4, 81, 81), VS)      # the plate's 4 layers (|z| < 0.4 mm), ±8.1 mm laterally
ITERATIONS = {"cgls": 20, "sirt": 10, "fista-tv": 20}
SOLVERS = {"cgls": cgls, "sirt": sirt, "fista-tv": lambda *a, **kw: fista_tv(*a, lam=TV_WEIGHT, **kw)}
TV_WEIGHT = 1e-3        # a light TV weight: the plate's beads and crack stay (μ 0.2 /mm, 0.2 mm voxels)
# (FISTA-TV's step 1/‖A M‖² is that of the support's own voxels: with ‖A‖ of the support's whole box, it was 9 %)
TOLERANCE = {"cgls": 0.05, "sirt": 0.05, "fista-tv": 0.05}


@pytest.fixture(scope="module", params=["parallel", "cone"])
def data(request):
    grid, vol = plate_volume()
    wide, narrow = geometries(request.param, 30.0)
    full = np.asarray(Projector(wide, grid).forward(jnp.asarray(vol)))
    start = (wide.det_shape[1] - narrow.det_shape[1]) // 2
    truncated = full[:, :, start:start + narrow.det_shape[1]]
    z = ROI.axis(0)[:, None, None]
    region = narrow.field_of_view(ROI, margin=1.0) & (np.abs(z) < PLATE[0] / 2 - VS)
    return request.param, wide, narrow, full, truncated, region


def _crop(volume) -> np.ndarray:
    """HOLDS_PLATE → ROI: the central 25 × 25 columns, its 4 layers padded by the 2 empty ones ROI has."""
    off = (HOLDS_PLATE.shape[1] - ROI.shape[1]) // 2
    return np.pad(np.asarray(volume), ((1, 1), (0, 0), (0, 0)))[:, off:off + ROI.shape[1], off:off + ROI.shape[2]]


def relative_rms(test, reference, region) -> float:
    """RMS of (test − reference) over ``region`` / std of the reference there."""
    diff = (np.asarray(test) - reference)[region]
    return float(np.sqrt(np.mean(diff ** 2)) / np.std(reference[region]))


@pytest.mark.parametrize("method", ["cgls", "sirt", "fista-tv"])
def test_support_solve_matches_the_untruncated_solve(data, method):
    beam, wide, narrow, full, truncated, region = data
    solver, it = SOLVERS[method], ITERATIONS[method]
    reference = _crop(solver(full, wide, HOLDS_PLATE, iterations=it).volume)
    t0 = time.perf_counter()
    roi = solver(truncated, narrow, ROI, iterations=it, sample_size=PLATE)
    seconds = time.perf_counter() - t0
    plain = solver(truncated, narrow, ROI, iterations=it)
    with_size, without = relative_rms(roi.volume, reference, region), relative_rms(plain.volume, reference, region)
    print(f"{beam} {method} {it} it: relative RMS with sample_size {with_size:.4f}, without {without:.4f} "
          f"({seconds:.1f} s on {roi.params['support_shape']})")
    assert roi.volume.shape == ROI.shape and roi.grid == ROI
    assert roi.params["support_shape"] == [6, 81, 81]
    assert with_size <= TOLERANCE[method], with_size
    assert without > 0.3, without                    # the defect: attenuation from outside the grid


def test_measured_support_is_the_slab_that_rays_cross():
    """Parallel CT (tilt 0): rays run in the planes z = const, so every measured ray crosses the whole box along
    the beam. A 2 mm wide detector at angle 0 only (rays along y) sees the columns |x| ≤ 1 mm of the box, on all
    its layers; the requested 1-voxel grid at the centre is a sub-block of the support grid. Voxel centres lie on
    multiples of 0.5 mm: the box's 2 mm thickness overlaps 5 layers (those at ±1 mm half), its 6 mm 13 rows."""
    g = Geometry.parallel(0.0, angles_deg=[0.0], det_shape=(20, 4), det_spacing=0.5)
    s = measured_support(g, VolumeGrid((1, 1, 1), 0.5), (2.0, 6.0, 8.0))
    assert s.grid.voxel_size == (0.5, 0.5, 0.5)
    assert s.grid.shape[:2] == (5, 13)
    xs = s.grid.axis(2)[np.flatnonzero(s.mask.any(axis=(0, 1)))]
    assert xs.min() >= -1.0 - 0.5 and xs.max() <= 1.0 + 0.5   # the detector's 2 mm, up to a voxel's footprint
    assert s.mask[:, :, s.crop[2]].all()
    assert s.grid.axis(2)[s.crop[2]][0] == 0.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_size=(0.0, 10, 10)), "sample_size"),
    (dict(sample_size=(-1.0, 10, 10)), "sample_size"),
    (dict(sample_size=(1.0, 10, 10), grid=VolumeGrid((2, 4, 4), 0.5, center=(0.0, 0.0, 40.0))), "grid"),
    (dict(sample_size=(1.0, 1e5, 1e5), grid=VolumeGrid((2, 4, 4), 0.001)), "memory"),
])
def test_bad_region_of_interest_options_are_one_line_errors(kwargs, message):
    g = Geometry.parallel(30.0, 8, (8, 8), 0.5)
    kw = {"grid": VolumeGrid((2, 4, 4), 0.5), **kwargs}
    for method in ("cgls", "sirt", "fista-tv"):
        with pytest.raises(ValueError, match=message) as err:
            reconstruct(np.zeros((8, 8, 8)), g, kw["grid"], method, sample_size=kw["sample_size"], iterations=2,
                        lam=0.1)
        assert "\n" not in str(err.value)


def test_fista_tv_and_reconstruct_take_sample_size():
    """FISTA-TV through :func:`reconstruct` (default λ) on a small truncated plate: the requested grid comes
    back, the support grid is recorded, and the layers outside the slab stay 0."""
    g = Geometry.parallel(30.0, 24, (24, 8), 0.4)
    plate = (0.8, 8.0, 8.0)
    world = VolumeGrid((4, 21, 21), 0.4)
    z, y, x = np.meshgrid(*[world.axis(k) for k in range(3)], indexing="ij")
    vol = np.where((np.abs(z) < 0.4) & (np.abs(y) < 4.0) & (np.abs(x) < 4.0), 0.2, 0.0).astype(np.float32)
    b = np.asarray(Projector(g, world).forward(jnp.asarray(vol)))
    roi = VolumeGrid((4, 5, 5), 0.4)
    rec = reconstruct(b, g, roi, "fista-tv", iterations=5, sample_size=plate)
    assert rec.volume.shape == roi.shape and rec.grid == roi
    assert rec.params["support_shape"][0] == 4 and rec.params["support_shape"][1] > roi.shape[1]
    assert rec.params["sample_size"] == [0.8, 8.0, 8.0]
    assert np.all(np.asarray(rec.volume)[[0, 3]] == 0)          # layers at ±0.6 mm lie outside the 0.8 mm slab

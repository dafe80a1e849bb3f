"""Region-of-interest CL (lamino.recon.truncation): a flat plate much wider than the detector.

The reference is the same reconstruction from an untruncated detector that sees the whole plate; the region-of-
interest data are its central columns (parallel beam) or the central columns of a cone-beam detector. Both come
from one forward projection, so any difference inside the fully measured region is the truncation's.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon.coverage import TAPER_PIXELS, unmeasured_share
from lamino.recon.fbp import fbp
from lamino.recon.truncation import sample_extents

VS = 0.2                       # mm, voxels and detector pixels at the sample
MU = 0.2                       # 1/mm, the plate
PLATE = (0.8, 16.0, 16.0)      # (z, y, x) mm
ROI = VolumeGrid((6, 25, 25), VS)


def plate_volume() -> tuple[VolumeGrid, np.ndarray]:
    """The plate with 12 beads (μ 0.5, r 0.3 mm) and a slanted crack, on a grid that holds all of it."""
    grid = VolumeGrid((6, 84, 84), VS)
    z, y, x = np.meshgrid(*[grid.axis(k) for k in range(3)], indexing="ij")
    vol = np.where((np.abs(z) < PLATE[0] / 2) & (np.abs(y) < PLATE[1] / 2) & (np.abs(x) < PLATE[2] / 2), MU, 0.0)
    rng = np.random.default_rng(3)
    beads = [(0.8, 0.6), (-1.0, -0.8), (0.3, -1.6)] + [tuple(rng.uniform(-7, 7, 2)) for _ in range(9)]
    for cx, cy in beads:
        vol = np.where((x - cx) ** 2 + (y - cy) ** 2 + z ** 2 < 0.3 ** 2, 0.5, vol)
    crack = (np.abs(x - 0.4 - 0.2 * y) < 0.12) & (np.abs(z) < PLATE[0] / 2) & (np.abs(y) < 5)
    return grid, np.where(crack, 0.0, vol).astype(np.float32)


def geometries(beam: str, tilt: float) -> tuple[Geometry, Geometry]:
    """(untruncated, 5.2 mm wide) detectors with the same column centres, 180 views."""
    if beam == "parallel":
        return (Geometry.parallel(tilt, 180, (72, 128), VS), Geometry.parallel(tilt, 180, (72, 26), VS))
    kw = dict(sod=150.0, sdd=300.0, det_spacing=2 * VS)
    return Geometry.cone(tilt, 180, det_shape=(80, 136), **kw), Geometry.cone(tilt, 180, det_shape=(80, 26), **kw)


@pytest.fixture(scope="module", params=[("parallel", 30.0), ("cone", 30.0), ("parallel", 45.0)],
                ids=lambda p: f"{p[0]}-{p[1]:g}")
def case(request):
    beam, tilt = request.param
    grid, vol = plate_volume()
    wide, narrow = geometries(beam, tilt)
    full = np.asarray(Projector(wide, grid).forward(jnp.asarray(vol)))
    start = (wide.det_shape[1] - narrow.det_shape[1]) // 2
    truncated = full[:, :, start:start + narrow.det_shape[1]]
    reference = np.asarray(fbp(full, wide, ROI, extend=False))
    z = ROI.axis(0)[:, None, None]
    # fully measured: inside the detector's window (lamino.recon.coverage) in every view
    region = narrow.field_of_view(ROI, margin=0.5 + TAPER_PIXELS) & (np.abs(z) < PLATE[0] / 2 - VS)
    return narrow, truncated, reference, region


def errors(test, reference, region) -> tuple[float, float, float]:
    """(relative RMS difference / std of the reference, bias / μ, cupping (edge − centre) / μ) in ``region``."""
    diff = (np.asarray(test) - reference)[region]
    rel = float(np.sqrt(np.mean(diff ** 2)) / np.std(reference[region]))
    r = np.hypot(*np.meshgrid(ROI.axis(1), ROI.axis(2), indexing="ij")) * np.ones(ROI.shape)
    radius = r[region]
    cupping = diff[radius > 0.75 * radius.max()].mean() - diff[radius < 0.35 * radius.max()].mean()
    return rel, float(diff.mean() / MU), float(cupping / MU)


def test_extended_rows_match_the_untruncated_reconstruction(case):
    geometry, truncated, reference, region = case
    rel, bias, cupping = errors(fbp(truncated, geometry, ROI, sample_size=PLATE), reference, region)
    print(f"extended: relative RMS {rel:.4f}, bias {bias:+.4f} μ, cupping {cupping:+.4f} μ")
    assert rel < 0.02 and abs(bias) < 0.01 and abs(cupping) < 0.01, (rel, bias, cupping)


def test_zero_padding_is_biased_and_cupped(case):
    """The defect the extension removes: zero-padded truncated rows (extend=False)."""
    geometry, truncated, reference, region = case
    rel, bias, cupping = errors(fbp(truncated, geometry, ROI, extend=False), reference, region)
    assert rel > 0.3 and bias > 0.08 and cupping > 0.04, (rel, bias, cupping)


def test_unbounded_default_leaves_the_tail_bias_of_eq_1(case):
    """Without sample_size the plate is taken as unbounded: the bias is the tail of eq. (1) of the module beyond
    the plate's true edge, −(c / (2π² Δu))·Σ_views 2/K₂ backprojected (negative, a few % of μ here)."""
    geometry, truncated, reference, region = case
    rel, bias, cupping = errors(fbp(truncated, geometry, ROI), reference, region)
    assert -0.06 < bias < -0.005 and abs(cupping) < 0.01, (rel, bias, cupping)


def test_sample_extents_of_a_box_are_its_projection():
    """Parallel CT at angle 0 (rays along y, detector u along x): a (z, y, x) = 2 × 6 × 4 mm box spans
    u = x ∈ ±2 mm on rows z ∈ ±1 mm; turned by 90° (rays along −x, u along y) it spans u ∈ ±3 mm."""
    g = Geometry.parallel(0.0, angles_deg=[0.0, 90.0], det_shape=(8, 10), det_spacing=0.5)
    ext = sample_extents(g, (2.0, 6.0, 4.0))
    # 10 columns at u = −2.25 … 2.25 mm: at 0° the box (±2 mm) ends on the detector → no extension
    assert np.all(ext[0] == 0)
    # at 90° it reaches 3 mm, 0.75 mm = 1.5 pixels beyond the outer centres, on the rows z = −0.75 … 0.75 mm
    # (rows 2..5 of z = −1.75 … 1.75); the other rows do not see it
    np.testing.assert_allclose(ext[1, 2:6], 1.5, atol=1e-5)
    assert np.all(ext[1, [0, 1, 6, 7]] == 0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_size=(0.0, 10, 10)), "sample_size"),
    (dict(sample_size=(1.0, 10)), "sample_size"),
    (dict(sample_size=(np.nan, 10, 10)), "sample_size"),
    (dict(extend="yes"), "extend"),
])
def test_bad_truncation_options_are_one_line_errors(kwargs, message):
    g = Geometry.parallel(30.0, 8, (8, 8), 0.5)
    with pytest.raises(ValueError, match=message) as err:
        fbp(np.zeros((8, 8, 8)), g, VolumeGrid((4, 4, 4), 0.5), **kwargs)
    assert "\n" not in str(err.value)


def test_partially_measured_voxels_fade_without_streaks(case):
    """In the band where voxels leave the detector for part of the turn (measured in 50–100 % of the views), the
    zero-padded FBP rings (a bright ring in xy); the region-of-interest FBP follows the reference there."""
    geometry, truncated, reference, region = case
    fraction = geometry.measured_fraction(ROI)
    z = ROI.axis(0)[:, None, None]
    band = (fraction > 0.5) & (fraction < 1.0) & (np.abs(z) < PLATE[0] / 2 - VS)
    before = np.asarray(fbp(truncated, geometry, ROI, extend=False)) - reference
    after = np.asarray(fbp(truncated, geometry, ROI, sample_size=PLATE)) - reference
    rms_before, rms_after = (float(np.sqrt(np.mean(d[band] ** 2))) for d in (before, after))
    print(f"boundary band: RMS error {rms_before / MU:.3f} μ before, {rms_after / MU:.3f} μ after")
    assert rms_after < 0.25 * rms_before and rms_after < 0.1 * MU, (rms_before, rms_after)


def test_measured_fraction_of_parallel_cl_is_the_arc_inside_the_detector():
    """Parallel CL, detector half-width R: a voxel of the mid-plane at in-plane radius r > R projects inside in
    the views where |r·sin(φ − φ₀)| < R, a fraction (2/π)·asin(R/r) of the turn; inside r < R, all views."""
    g = Geometry.parallel(30.0, 720, (64, 40), 0.1)
    grid = VolumeGrid((1, 1, 5), (0.1, 0.1, 0.5), (0.0, 0.0, 2.0))       # x = 1.0, 1.5, … 3.0 mm
    radius = 2.0 - 0.05                                                  # to the outer pixel centre
    r = grid.axis(2)
    expected = np.where(r < radius, 1.0, 2 / np.pi * np.arcsin(np.minimum(1.0, radius / r)))
    np.testing.assert_allclose(g.measured_fraction(grid, margin=0.5)[0, 0], expected, atol=4 / 720)
    np.testing.assert_array_equal(g.field_of_view(grid, margin=0.5), g.measured_fraction(grid, margin=0.5) == 1)


def test_unmeasured_share_of_grids_inside_across_and_outside_the_field_of_view():
    """Parallel CL at 30°, a 3.2 mm square detector: a 2 mm grid at the centre is measured in every view; a grid
    50 mm away in none (a one-line error for the CLI and studies); a 6.4 mm grid partly — its corners, beyond
    the 1.6 mm radius, leave the detector for part of the turn."""
    g = Geometry.parallel(30.0, 36, (32, 32), 0.1)
    assert unmeasured_share(g, VolumeGrid((8, 20, 20), 0.1)) == (0.0, 0.0)
    assert unmeasured_share(g, VolumeGrid((8, 8, 8), 0.1, (0.0, 0.0, 50.0)))[1] == 1.0
    partial, never = unmeasured_share(g, VolumeGrid((8, 64, 64), 0.1))
    inside = np.pi * 1.6 ** 2 / 6.4 ** 2                  # the share of the slice inside the 1.6 mm radius
    assert 1 - inside - 0.1 < partial < 1 - inside + 0.1 and never < partial


@pytest.mark.parametrize("left, right", [(0.0, 0.0), (10.0, 300.0), (1e9, 1e9), (3.5, 0.0)])
def test_extended_filter_equals_filtering_the_explicitly_continued_row(left, right):
    """filter_extended (near part by FFT, far part by the trigamma sum) against the plain Ram-Lak filter of the
    row written out in full: its mean edge values continued as far as ``left``/``right`` pixels (10⁹: 4000)."""
    from lamino.recon.analytic import extended_response
    from lamino.recon.filters import filter_rows
    from lamino.recon.truncation import EDGE_PIXELS, filter_extended

    du, n = 0.1, 40
    row = np.random.default_rng(1).uniform(0.5, 1.5, n)
    reach = [int(min(e, 4000)) for e in (left, right)]
    long = np.concatenate([np.full(reach[0], row[:EDGE_PIXELS].mean()), row,
                           np.full(reach[1], row[-EDGE_PIXELS:].mean())])
    expected = np.asarray(filter_rows(long, du))[reach[0]:reach[0] + n]
    response, n_fft = extended_response(n, du, "ram-lak", 1.0)
    extents = np.array([[[min(left, 4000), min(right, 4000)]]], np.float32)
    got = np.asarray(filter_extended(jnp.asarray(row[None, None], jnp.float32), extents, response, du, n_fft))[0, 0]
    np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())


def test_odd_inverse_squares_is_the_sum():
    from lamino.recon.truncation import odd_inverse_squares

    k = np.arange(1, 20001, 2, dtype=float)
    for a, b in [(1, 1), (1, 3), (2, 50), (33, 9999), (5, 4)]:
        expected = np.sum(1 / k[(k >= a) & (k <= b)] ** 2)
        assert float(odd_inverse_squares(jnp.float32(a), jnp.float32(b))) == pytest.approx(expected, rel=1e-5,
                                                                                             abs=1e-9)

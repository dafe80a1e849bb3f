"""Projection preprocessing: ring suppression, beam-hardening linearisation, binning and cropping."""

import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.io import flat_dark_correct
from lamino.materials import get_material
from lamino.projector import Projector
from lamino.recon import preprocess
from lamino.recon.preprocess import (
    beam_hardening_curve,
    bin_projections,
    crop_projections,
    linearize_beam_hardening,
    suppress_rings,
)


def _gaussian_blobs(geometry, blobs):
    """Parallel-beam projections of isotropic 3-D Gaussians ((x, y, z) mm, σ mm, peak line integral)."""
    rows, cols = geometry.det_shape
    r, c = np.indices((rows, cols))
    out = np.zeros((geometry.n_views, rows, cols))
    for centre, sigma, peak in blobs:
        rc = geometry.project_points([centre])[:, 0]
        out += peak * np.exp(-((r - rc[:, 0, None, None]) ** 2 + (c - rc[:, 1, None, None]) ** 2) / (2 * sigma**2))
    return out.astype(np.float32)


def _rms(a):
    return float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))


def test_flat_dark_correct_is_the_core_function():
    assert preprocess.flat_dark_correct is flat_dark_correct


# ---------------------------------------------------------------------------------------------- rings
@pytest.fixture(scope="module")
def smooth_sinogram():
    g = Geometry.parallel(30.0, 60, (40, 64), 1.0)
    return _gaussian_blobs(g, [((0.0, 0.0, 0.0), 9.0, 1.0), ((8.0, -4.0, 2.0), 5.0, 0.5)])


def _gain_stripes(cols):
    gain = np.ones(cols)
    gain[[10, 25, 26, 41, 50]] = [0.97, 1.05, 1.04, 0.98, 0.96]     # four bad columns, one of them 2 px wide
    return -np.log(gain)                                            # added to −ln T of every view and row


def test_ring_suppression_removes_stripes_and_spares_a_smooth_object(smooth_sinogram):
    clean = smooth_sinogram
    stripe = _gain_stripes(clean.shape[2]).astype(np.float32)
    dirty = clean + stripe
    out = suppress_rings(dirty)
    assert out.dtype == np.float32 and out.shape == dirty.shape
    assert _rms(out - clean) < 0.1 * _rms(stripe * np.ones_like(clean))     # > 90 % of the stripe removed
    assert _rms(suppress_rings(clean) - clean) < 0.01 * _rms(clean)        # < 1 % change without stripes
    # Rivers' plain Gaussian high-pass removes less of a narrow stripe and takes more of the object
    gauss = suppress_rings(dirty, sigma_px=2.0, method="gaussian")
    assert _rms(gauss - clean) > _rms(out - clean)


def test_ring_suppression_of_a_constant_stripe_on_an_empty_detector():
    proj = np.zeros((10, 4, 32), np.float32)
    proj[:, :, 16] = 0.2
    out = suppress_rings(proj)
    assert np.abs(out).max() < 1e-4 * 0.2


def test_ring_suppression_rejects_bad_settings():
    p = np.zeros((3, 4, 16), np.float32)
    with pytest.raises(ValueError, match="sigma_px"):
        suppress_rings(p, sigma_px=0)
    with pytest.raises(ValueError, match="method"):
        suppress_rings(p, method="sorting")
    with pytest.raises(ValueError, match="width_px"):
        suppress_rings(p, width_px=4)
    with pytest.raises(ValueError, match="projections with shape"):
        suppress_rings(np.zeros((4, 16)))


# ---------------------------------------------------------------------------------------------- beam hardening
def _spectrum():
    """Kramers bremsstrahlung of an 80 kV tube behind 1 mm Al, detected by an energy-integrating detector."""
    al = get_material("aluminium")
    e = np.arange(15.0, 80.0, 1.0)
    fluence = (80.0 - e) / e * np.exp(-al.mu(e) * 1.0)
    return e, fluence * e


def test_beam_hardening_linearisation_of_an_aluminium_wedge():
    e, w = _spectrum()
    mu = get_material("aluminium").mu(e)
    thickness = np.linspace(0.0, 10.0, 64)
    wedge = np.broadcast_to(thickness, (3, 8, 64))                      # views, rows, cols
    poly = -np.log(np.tensordot(np.exp(-wedge[..., None] * mu), w / w.sum(), axes=1)).astype(np.float32)
    np.testing.assert_allclose(poly, beam_hardening_curve(e, w, "aluminium", wedge), rtol=1e-5)
    corrected, coeffs = linearize_beam_hardening(poly, e, w, "aluminium", max_thickness_mm=10.0)
    mu_mean = np.sum(w * mu) / np.sum(w)

    def linearity(p):
        line = np.polyfit(thickness, p[0, 0], 1)
        resid = p[0, 0] - np.polyval(line, thickness)
        return 1 - np.sum(resid**2) / np.sum((p[0, 0] - p[0, 0].mean()) ** 2)

    assert linearity(poly) < 0.995                                     # beam hardening is strong here
    assert linearity(corrected) > 0.9999
    assert np.abs(corrected[0, 0] - mu_mean * thickness).max() < 0.005 * mu_mean * 10.0
    assert coeffs.shape == (4,) and coeffs[0] == 0.0 and coeffs[1] == pytest.approx(1.0, abs=0.05)
    assert corrected.shape == poly.shape and corrected.dtype == np.float32


def test_beam_hardening_reference_energy_and_monochromatic_limit():
    e, w = _spectrum()
    al = get_material("aluminium")
    t = np.linspace(0.0, 5.0, 11)
    poly = beam_hardening_curve(e, w, al, t)
    corrected, _ = linearize_beam_hardening(poly, e, w, al, 5.0, reference_kev=40.0)
    np.testing.assert_allclose(corrected, al.mu(40.0) * t, rtol=0.01, atol=1e-3)
    # one energy: −ln T is already linear and the correction is the identity
    mono, coeffs = linearize_beam_hardening(0.3 * t, [50.0], [1.0], "aluminium", 5.0)
    np.testing.assert_allclose(mono, 0.3 * t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(coeffs, [0.0, 1.0, 0.0, 0.0], atol=1e-6)


def test_beam_hardening_rejects_bad_inputs():
    e, w = _spectrum()
    with pytest.raises(ValueError, match="weights"):
        linearize_beam_hardening(np.zeros(3), e, w[:-1], "aluminium", 5.0)
    with pytest.raises(ValueError, match="max_thickness_mm"):
        linearize_beam_hardening(np.zeros(3), e, w, "aluminium", -1.0)
    with pytest.raises(ValueError, match="degree"):
        linearize_beam_hardening(np.zeros(3), e, w, "aluminium", 5.0, degree=0)
    with pytest.raises(ValueError, match="unknown material"):
        linearize_beam_hardening(np.zeros(3), e, w, "unobtainium", 5.0)


# ---------------------------------------------------------------------------------------------- bin / crop
GRID = VolumeGrid((24, 24, 24), 1.0)


def _smooth_volume(grid):
    z, y, x = np.meshgrid(*[grid.axis(i) for i in range(3)], indexing="ij")
    vol = np.exp(-((x - 2.0) ** 2 + (y + 1.0) ** 2 + (z - 1.5) ** 2) / (2 * 4.0**2))
    vol += 0.5 * np.exp(-((x + 4.0) ** 2 + (y - 3.0) ** 2 + (z + 2.0) ** 2) / (2 * 3.0**2))
    return (0.05 * vol).astype(np.float32)


def _geometries():
    kw = dict(cor_offset=0.4, det_offset=(1.3, -0.9), det_roll_deg=3.0)
    par = Geometry.parallel(30.0, 6, (37, 43), (0.9, 0.8), **kw)
    cone = Geometry.cone(25.0, 6, sod=120.0, sdd=240.0, det_shape=(37, 43), det_spacing=(1.8, 1.6), **kw)
    custom = Geometry.from_vectors(cone.vectors(), cone.det_shape, beam="cone")
    return {"parallel": par, "cone": cone, "vectors": custom}


@pytest.mark.parametrize(("kind", "factor"), [("parallel", 2), ("cone", (3, 2)), ("vectors", (2, 3))])
def test_binning_keeps_the_object_where_it_was(kind, factor):
    g = _geometries()[kind]
    vol = _smooth_volume(GRID)
    fine = np.asarray(Projector(g, GRID).forward(vol))
    binned, gb = bin_projections(fine, g, factor)
    fv, fu = (factor, factor) if isinstance(factor, int) else factor
    assert gb.det_shape == (37 // fv, 43 // fu) and binned.shape == (6, *gb.det_shape)
    assert gb.det_spacing == pytest.approx((g.det_spacing[0] * fv, g.det_spacing[1] * fu))
    coarse = np.asarray(Projector(gb, GRID).forward(vol))
    err = _rms(binned - coarse) / _rms(coarse)
    assert err < 0.02                                                     # interpolation error only
    if kind != "vectors":                                                 # the offset update matters
        naive = gb.replace(det_offset=g.det_offset)
        assert _rms(binned - np.asarray(Projector(naive, GRID).forward(vol))) / _rms(coarse) > 3 * err


@pytest.mark.parametrize("kind", ["parallel", "cone", "vectors"])
def test_cropping_keeps_the_object_where_it_was(kind):
    g = _geometries()[kind]
    vol = _smooth_volume(GRID)
    full = np.asarray(Projector(g, GRID).forward(vol))
    cropped, gc = crop_projections(full, g, rows=slice(5, 30), cols=slice(None, -8))
    assert gc.det_shape == (25, 35) and gc.det_spacing == g.det_spacing
    np.testing.assert_array_equal(cropped, full[:, 5:30, :35])
    again = np.asarray(Projector(gc, GRID).forward(vol))
    assert _rms(cropped - again) < 1e-4 * _rms(cropped)                   # the same rays
    pts = np.array([[2.0, -1.0, 1.5], [-4.0, 3.0, -2.0]])
    np.testing.assert_allclose(gc.project_points(pts), g.project_points(pts) - [5, 0], atol=1e-9)


def test_bin_and_crop_reject_bad_arguments():
    g = _geometries()["parallel"]
    p = np.zeros((6, 37, 43), np.float32)
    with pytest.raises(ValueError, match="factor"):
        bin_projections(p, g, 0)
    with pytest.raises(ValueError, match="factor"):
        bin_projections(p, g, 2.5)
    with pytest.raises(ValueError, match="factor"):
        bin_projections(p, g, 50)
    with pytest.raises(ValueError, match="projections with shape"):
        bin_projections(p[:, :-1], g, 2)
    with pytest.raises(ValueError, match="rows"):
        crop_projections(p, g, rows=slice(0, 30, 2))
    with pytest.raises(ValueError, match="cols"):
        crop_projections(p, g, cols=slice(20, 10))
    with pytest.raises(ValueError, match="rows"):
        crop_projections(p, g, rows=(0, 10))


# ---------------------------------------------------------------------------------------------- NaN and inf
def _bad(shape=(3, 4, 6)):
    """Projections with one NaN and one inf (rows 1 and 2, column 2)."""
    p = np.ones(shape, np.float32)
    p[0, 1, 2], p[2, 2, 2] = np.nan, np.inf
    return p


@pytest.mark.parametrize("call", [
    lambda p, g: preprocess.suppress_rings(p),
    lambda p, g: preprocess.bin_projections(p, g, 2),
    lambda p, g: preprocess.linearize_beam_hardening(p, [30.0, 60.0], [1.0, 1.0], "aluminium", 5.0),
    lambda p, g: preprocess.crop_projections(p, g, rows=slice(0, 4), cols=slice(1, 5)),
], ids=["suppress_rings", "bin_projections", "linearize_beam_hardening", "crop_projections"])
def test_preprocessing_rejects_nan_and_inf_saying_how_many(call):
    g = Geometry.parallel(30.0, 3, (4, 6), 0.1)
    with pytest.raises(ValueError) as err:
        call(_bad(), g)
    message = str(err.value)
    assert "projections" in message and "2 of " in message and "NaN or inf" in message and "\n" not in message
    assert call(np.ones((3, 4, 6), np.float32), g) is not None           # the same call on finite data runs


def test_crop_may_cut_bad_pixels_away_and_curve_rejects_bad_thickness():
    g = Geometry.parallel(30.0, 3, (4, 6), 0.1)
    kept, g2 = preprocess.crop_projections(_bad(), g, cols=slice(3, 6))   # column 2 (NaN, inf) is cut away
    assert kept.shape == (3, 4, 3) and np.all(kept == 1) and g2.det_shape == (4, 3)
    with pytest.raises(ValueError, match=r"^cropped projections are not allowed: 2 of 36 values are NaN or inf"):
        preprocess.crop_projections(_bad(), g, cols=slice(0, 3))
    with pytest.raises(ValueError, match=r"^thickness_mm is not allowed: 1 of 3 values are NaN or inf"):
        preprocess.beam_hardening_curve([30.0], [1.0], "aluminium", [0.0, np.nan, 1.0])

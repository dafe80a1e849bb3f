"""Parallel-beam FBP and CL-FBP (lamino.recon.fbp) and the ramp filters (lamino.recon.filters).

Data are exact line integrals (inverse crime avoided): a ball from the phantom's analytic path lengths, and
Gaussian blobs, whose line integrals are 2-D Gaussians of the same σ and peak × σ√(2π), evaluated from the
geometry's pixel positions and ray directions.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import gaussian_projections

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms import Ellipsoid, Phantom, place
from lamino.recon.analytic import angular_weights
from lamino.recon.fbp import fbp
from lamino.recon.filters import FILTERS, filter_rows, padded_length, ramlak_kernel, ramp_filter

TILTS = (0.0, 20.0, 30.0, 45.0)


def parallel(tilt: float, n_views: int = 120, det=(64, 64), spacing: float = 0.1, **kw) -> Geometry:
    return Geometry.parallel(tilt_deg=tilt, n_views=n_views, det_shape=det, det_spacing=spacing, **kw)


def ramlak(lags, du: float) -> np.ndarray:
    """h[0] = 1/(4du²), h[odd n] = −1/(π n du)², 0 at even n ≠ 0 (Kak & Slaney §3.3.3)."""
    lags = np.asarray(lags)
    odd = -1 / (math.pi * np.where(lags == 0, 1, lags) * du) ** 2
    return np.where(lags == 0, 1 / (4 * du**2), np.where(lags % 2 == 1, odd, 0.0))


SMALL = VolumeGrid((9, 9, 9), 0.1)          # the blob's centre and its neighbours
SIGMA = 0.5                                 # 5 detector pixels: interpolation blur < 2 % at the peak


def centre(vol) -> float:
    return float(np.asarray(vol)[4, 4, 4])


# ------------------------------------------------------------------------------------------------ filters
@pytest.mark.parametrize("name", FILTERS)
def test_filter_responses(name):
    n, du = 128, 0.2
    h = ramp_filter(n, du, name)
    ram = ramp_filter(n, du, "ram-lak")
    dc = du * np.sum(ramlak_kernel(n, du))                     # the band-limited kernel's DC (Kak & Slaney)
    assert h.shape == (n,) and np.allclose(h, h[(-np.arange(n)) % n])   # real, even
    assert h[0] == pytest.approx(dc, rel=1e-12)
    assert 0 < h[0] < 1 / (4 * n * du)                         # below a quarter of the first bin's |k|
    assert h[0] == pytest.approx(2 / (math.pi**2 * n * du), rel=0.02)
    k = np.abs(np.fft.fftfreq(n, du))
    x = k / k.max()
    window = {"ram-lak": np.ones(n), "shepp-logan": np.sinc(x / 2), "cosine": np.cos(np.pi * x / 2),
              "hann": 0.5 * (1 + np.cos(np.pi * x))}[name]
    assert np.allclose(h, ram * window, rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(ram[1:] - k[1:]) < 0.01 * k.max())   # ≈ |k|
    # cutoff: zero above cutoff · Nyquist, window stretched to the cutoff
    hc = ramp_filter(n, du, name, cutoff=0.5)
    assert np.all(hc[x > 0.5 + 1e-9] == 0)
    assert np.all(hc[(x > 0) & (x < 0.5)] > 0)


def test_ramlak_nyquist_and_spatial_kernel():
    du = 0.25
    for n in (64, 256):
        h = ramp_filter(n, du)
        assert h[0] + h[n // 2] == pytest.approx(1 / (2 * du), rel=1e-12)   # |k| at Nyquist, exactly
        assert h[n // 2] == pytest.approx(1 / (2 * du), rel=0.01)
    # a filtered impulse is the discrete Ram-Lak kernel: h[0] = 1/(4du²), h[odd n] = −1/(π n du)², h[even] = 0
    cols = 33
    row = np.zeros((1, cols), np.float32)
    row[0, 16] = 1.0
    out = np.asarray(filter_rows(row, du, "ram-lak", pad=True))[0] / du
    lags = np.arange(cols) - 16
    expected = ramlak(lags, du)
    assert np.allclose(out, expected, rtol=1e-4, atol=1e-4 * expected[16])
    assert padded_length(33) == 128 and padded_length(32) == 64 and padded_length(33, pad=False) == 33


def test_filter_rows_is_linear_convolution_with_padding():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 5, 40)).astype(np.float32)
    du = 0.1
    out = np.asarray(filter_rows(jnp.asarray(rows), du, "ram-lak", pad=True))
    lags = np.arange(-39, 40)
    kern = ramlak(lags, du)
    direct = np.apply_along_axis(lambda r: np.convolve(r, kern)[39:79] * du, -1, rows.astype(np.float64))
    assert np.max(np.abs(out - direct)) < 1e-4 * np.max(np.abs(direct))


# ------------------------------------------------------------------------------------------------ CT and CL
def test_ct_fbp_of_a_ball_is_quantitative():
    g = parallel(0.0, n_views=90, det=(32, 64))
    grid = VolumeGrid((32, 64, 64), 0.1)
    mu = 0.5
    ball = Phantom.build("ball", [place(Ellipsoid((2.0, 2.0, 2.0)), "aluminium")])
    data = ball.path_lengths(g)["aluminium"] * mu
    rec = np.asarray(fbp(data, g, grid))
    assert rec.shape == grid.shape and rec.dtype == np.float32
    z, y, x = np.meshgrid(*[grid.axis(d) for d in range(3)], indexing="ij")
    r = np.sqrt(x**2 + y**2 + z**2)
    inside = rec[r < 1.5].mean()
    outside = rec[(r > 2.4) & (np.hypot(x, y) < 3.0)].mean()
    assert inside == pytest.approx(mu, rel=0.01)
    assert abs(outside) < 0.02 * mu
    print(f"CT ball: interior mean / μ = {inside / mu:.5f}, exterior mean / μ = {outside / mu:.4f}")


def test_cl_fbp_gaussian_peak_is_cos_tilt():
    peaks = {}
    for tilt in TILTS:
        g = parallel(tilt)
        peaks[tilt] = centre(fbp(gaussian_projections(g, SIGMA), g, SMALL))
        print(f"tilt {tilt:4.1f}°: peak / true = {peaks[tilt]:.5f}, / cos tilt = "
              f"{peaks[tilt] / math.cos(math.radians(tilt)):.5f}")
        assert peaks[tilt] == pytest.approx(math.cos(math.radians(tilt)), rel=0.03)
    # the sin θ / 2 factor exactly: relative to CT, only the missing cone. (The backprojector's plane prefilter
    # undoes its second interpolation's blur on average over positions; here, at the grid centre, that
    # interpolation is exact, and the prefilter sharpens this peak by 0.1–0.3 % depending on the tilt.)
    for tilt in TILTS[1:]:
        assert peaks[tilt] / peaks[0.0] == pytest.approx(math.cos(math.radians(tilt)), rel=3e-3)


def test_missing_cone_is_around_the_rotation_axis():
    tilt = 30.0
    g = parallel(tilt)
    grid = VolumeGrid((40, 40, 40), 0.1)
    sigma = 0.15
    rec = np.asarray(fbp(gaussian_projections(g, sigma), g, grid))
    z, y, x = np.meshgrid(*[grid.axis(d) for d in range(3)], indexing="ij")
    truth = np.exp(-(x**2 + y**2 + z**2) / (2 * sigma**2))
    p_rec = np.abs(np.fft.fftn(rec)) ** 2
    p_true = np.abs(np.fft.fftn(truth)) ** 2
    k = np.meshgrid(*[np.fft.fftfreq(n) for n in grid.shape], indexing="ij")     # (kz, ky, kx)
    kk = np.sqrt(sum(a**2 for a in k))
    shell = (kk > 0.04) & (kk < 0.3)
    with np.errstate(invalid="ignore"):
        angle = [np.degrees(np.arccos(np.abs(a) / kk)) for a in k]             # from the kz, ky, kx axes

    def energy(mask):
        return p_rec[mask & shell].sum() / p_true[mask & shell].sum()

    in_cone = energy(angle[0] < tilt - 5)
    out_cone = energy(angle[0] > tilt + 5)
    around_x, around_y = energy(angle[2] < tilt - 5), energy(angle[1] < tilt - 5)
    print(f"spectral energy / truth: in z cone {in_cone:.4f}, outside {out_cone:.3f}, "
          f"x cone {around_x:.3f}, y cone {around_y:.3f}")
    assert in_cone < 0.05
    assert out_cone > 0.7 and around_x > 0.7 and around_y > 0.7


def test_angular_weights():
    w = angular_weights(np.radians(np.arange(0, 360, 10.0)), 2 * np.pi)
    assert np.allclose(w, np.radians(10.0))
    a = np.radians([0.0, 10.0, 30.0, 60.0, 120.0, 180.0, 250.0, 300.0])
    w = angular_weights(a, 2 * np.pi)
    assert w.sum() == pytest.approx(2 * np.pi) and w[2] == pytest.approx(np.radians(25.0))
    w = angular_weights(np.radians(np.arange(0, 360, 2.0)), np.pi)       # CT: 360° folds onto 180°
    assert np.allclose(w, np.radians(1.0))
    with pytest.raises(ValueError, match="angles_deg"):
        angular_weights(np.radians(np.arange(0, 300, 1.0)), 2 * np.pi)


def test_nonuniform_and_short_scan_weights():
    rng = np.random.default_rng(1)
    uniform = centre(fbp(gaussian_projections(parallel(0.0), SIGMA), parallel(0.0), SMALL))
    for angles in (np.linspace(0, 180, 90, endpoint=False), np.linspace(0, 200, 100),
                   np.sort(rng.uniform(0, 360, 120))):
        g = Geometry.parallel(tilt_deg=0, angles_deg=angles, det_shape=(64, 64), det_spacing=0.1)
        assert centre(fbp(gaussian_projections(g, SIGMA), g, SMALL)) == pytest.approx(uniform, rel=2e-3)
    cl = centre(fbp(gaussian_projections(parallel(30.0), SIGMA), parallel(30.0), SMALL))
    g = Geometry.parallel(tilt_deg=30, angles_deg=np.sort(rng.uniform(0, 360, 120)), det_shape=(64, 64),
                          det_spacing=0.1)
    assert centre(fbp(gaussian_projections(g, SIGMA), g, SMALL)) == pytest.approx(cl, rel=5e-3)


def test_misaligned_and_vector_geometries():
    tilt = 30.0
    ref = centre(fbp(gaussian_projections(parallel(tilt), SIGMA), parallel(tilt), SMALL))
    shifted = parallel(tilt, cor_offset=0.2, det_offset=(0.1, -0.15))
    vectors = Geometry.from_vectors(shifted.vectors(), shifted.det_shape, "parallel")
    data = gaussian_projections(shifted, SIGMA)
    a = np.asarray(fbp(data, shifted, SMALL))
    b = np.asarray(fbp(jnp.asarray(data), vectors, SMALL))                 # JAX input, from_vectors
    assert np.allclose(a, b, atol=1e-5)
    assert centre(a) == pytest.approx(ref, rel=0.015) and np.argmax(a) == 4 * 81 + 4 * 9 + 4
    rolled = parallel(tilt, det_roll_deg=3.0)                               # resampled onto rows ∥ tangent
    c = np.asarray(fbp(gaussian_projections(rolled, SIGMA), rolled, SMALL))
    assert centre(c) == pytest.approx(ref, rel=0.015) and np.argmax(c) == 4 * 81 + 4 * 9 + 4


def test_voxel_size_and_chunked_filtering(monkeypatch):
    import sys

    fbp_module = sys.modules["lamino.recon.analytic"]       # the module that chunks the filtering

    g = parallel(30.0, n_views=40)
    data = gaussian_projections(g, SIGMA, center=(0.2, -0.1, 0.1))
    coarse = np.asarray(fbp(data, g, VolumeGrid((9, 9, 9), 0.1, center=(0.1, -0.1, 0.2))))
    fine = np.asarray(fbp(data, g, VolumeGrid((17, 17, 17), 0.05, center=(0.1, -0.1, 0.2))))
    assert np.argmax(coarse) == 4 * 81 + 4 * 9 + 4 and np.argmax(fine) == 8 * 289 + 8 * 17 + 8
    assert fine[8, 8, 8] == pytest.approx(coarse[4, 4, 4], rel=0.01)          # 1/mm, not per voxel
    monkeypatch.setattr(fbp_module, "_CHUNK_ELEMENTS", 64 * 128 * 7)          # 7 views per chunk
    chunked = np.asarray(fbp(data, g, VolumeGrid((9, 9, 9), 0.1, center=(0.1, -0.1, 0.2))))
    assert np.allclose(chunked, coarse, rtol=1e-5, atol=1e-6)


def test_errors_name_the_parameter():
    g = parallel(30.0, n_views=12, det=(8, 8))
    grid = VolumeGrid((4, 4, 4), 0.1)
    good = np.zeros((12, 8, 8), np.float32)
    with pytest.raises(ValueError, match="projections"):
        fbp(np.zeros((12, 8, 9)), g, grid)
    with pytest.raises(ValueError, match="filter='parzen'"):
        fbp(good, g, grid, filter="parzen")
    for cutoff in (0.0, 1.5, -1, float("nan")):
        with pytest.raises(ValueError, match="cutoff"):
            fbp(good, g, grid, cutoff=cutoff)
    with pytest.raises(ValueError, match="pad"):
        fbp(good, g, grid, pad="yes")
    with pytest.raises(ValueError, match="grid"):
        fbp(good, g, (4, 4, 4))
    short_ct = Geometry.parallel(tilt_deg=0, angles_deg=np.linspace(0, 120, 60), det_shape=(8, 8))
    with pytest.raises(ValueError, match="angles_deg.*180°"):
        fbp(np.zeros((60, 8, 8)), short_ct, grid)
    short_cl = Geometry.parallel(tilt_deg=30, angles_deg=np.linspace(0, 300, 60), det_shape=(8, 8))
    with pytest.raises(ValueError, match="angles_deg.*360°"):
        fbp(np.zeros((60, 8, 8)), short_cl, grid)
    wobble = np.asarray(g.vectors()).copy()
    wobble[1::2, 0:3] += [0.0, 0.0, 0.05]                                 # ray direction nutates
    with pytest.raises(ValueError, match="geometry.*turned about the sample z axis"):
        fbp(good, Geometry.from_vectors(wobble, (8, 8)), grid)

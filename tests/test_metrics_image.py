"""Image-quality metrics (lamino.studies.metrics.image) against analytic values and a brute-force SSIM."""

import math

import numpy as np
import pytest

from lamino.studies.metrics.image import cnr, nrmse, psnr, rmse, ssim, ssim_map


def _pair(shape=(6, 8, 10), seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.0, 2.0, shape)
    return truth + rng.normal(0.0, 0.1, shape), truth


def test_rmse_nrmse_psnr_analytic_constant_offset():
    truth = np.zeros((4, 5, 6))
    truth[:, :, 3:] = 2.0                       # range 2 (1/mm)
    recon = truth + 0.1
    assert rmse(recon, truth) == pytest.approx(0.1, rel=1e-12)
    assert nrmse(recon, truth) == pytest.approx(0.05, rel=1e-12)
    assert psnr(recon, truth) == pytest.approx(20 * math.log10(2 / 0.1), rel=1e-12)   # 26.02 dB
    assert psnr(recon, truth, data_range=1.0) == pytest.approx(20.0, rel=1e-12)
    assert psnr(truth, truth) == math.inf


def test_mask_restricts_error_and_range():
    truth = np.zeros((2, 3, 4))
    truth[0] = 1.0
    recon = truth.copy()
    recon[1] += 0.3                             # error only where the mask is off ...
    recon[0, 0, 0] += 0.4                       # ... except one voxel of 12
    mask = np.zeros(truth.shape, bool)
    mask[0] = True
    mask[1, 0, 0] = True                        # 13 voxels, truth range 1 over the mask
    expected = math.sqrt((0.4**2 + 0.3**2) / 13)
    assert rmse(recon, truth, mask) == pytest.approx(expected, rel=1e-12)
    assert nrmse(recon, truth, mask) == pytest.approx(expected, rel=1e-12)
    assert rmse(recon, truth) == pytest.approx(math.sqrt((0.4**2 + 12 * 0.3**2) / 24), rel=1e-12)


def test_rmse_accepts_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    recon, truth = _pair()
    assert rmse(jnp.asarray(recon), jnp.asarray(truth)) == pytest.approx(rmse(recon, truth), rel=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda r, t: nrmse(r, np.ones_like(t)), "truth range"),
    (lambda r, t: rmse(r[:, :, :-1], t), "recon shape"),
    (lambda r, t: rmse(r, t, np.zeros(t.shape, bool)), "mask"),
    (lambda r, t: rmse(r, t, np.full(t.shape, 0.5)), "mask dtype"),
    (lambda r, t: psnr(r, t, data_range=-1), "data_range"),
    (lambda r, t: ssim(r, t, sigma_voxels=0), "sigma_voxels"),
    (lambda r, t: rmse(np.full(t.shape, np.nan), t), "recon"),
])
def test_bad_input_raises_value_error(call, match):
    recon, truth = _pair()
    with pytest.raises(ValueError, match=match):
        call(recon, truth)


# ------------------------------------------------------------------------------------------------ SSIM
def _ssim_bruteforce_2d(x, y, span, sigma=1.5, truncate=3.5):
    """Wang et al. eq. 13 with explicit Gaussian windows over a half-sample-symmetric padding."""
    rad = int(truncate * sigma + 0.5)
    g = np.exp(-0.5 * (np.arange(-rad, rad + 1) / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    px, py = np.pad(x, rad, mode="symmetric"), np.pad(y, rad, mode="symmetric")
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    out = np.empty(x.shape)
    for a in range(x.shape[0]):
        for b in range(x.shape[1]):
            wx, wy = px[a:a + 2 * rad + 1, b:b + 2 * rad + 1], py[a:a + 2 * rad + 1, b:b + 2 * rad + 1]
            mx, my = (w * wx).sum(), (w * wy).sum()
            vx, vy = (w * (wx - mx) ** 2).sum(), (w * (wy - my) ** 2).sum()
            cxy = (w * (wx - mx) * (wy - my)).sum()
            out[a, b] = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return out


def test_ssim_matches_bruteforce_windows_on_tiny_2d_case():
    rng = np.random.default_rng(3)
    truth = rng.uniform(0, 1, (9, 11))
    recon = 0.8 * truth + rng.normal(0, 0.2, truth.shape) + 0.1
    ref = _ssim_bruteforce_2d(recon, truth, span=float(truth.max() - truth.min()))
    assert np.allclose(ssim_map(recon, truth, float(truth.max() - truth.min())), ref, rtol=0, atol=1e-10)
    assert ssim(recon, truth) == pytest.approx(ref.mean(), abs=1e-10)
    assert 0.2 < ssim(recon, truth) < 0.9


def test_ssim_identical_is_one_and_symmetric():
    recon, truth = _pair()
    assert ssim(truth, truth) == pytest.approx(1.0, abs=1e-12)
    # symmetric when both use the same data range
    assert ssim(recon, truth, data_range=2.0) == pytest.approx(ssim(truth, recon, data_range=2.0), abs=1e-12)


@pytest.mark.parametrize("a, b", [(1.0, 0.3), (0.5, 0.0), (-1.0, 2.0), (2.0, -0.5)])
def test_ssim_of_affine_map_matches_analytic_value_for_constant_windows(a, b):
    """x = m + ε·checkerboard: away from the borders G∗x = m and the local variance ε² (the Gaussian kills the
    Nyquist checkerboard), so SSIM(a x + b, x) = (2m(am+b)+C1)/(m²+(am+b)²+C1) · (2aε²+C2)/((1+a²)ε²+C2)."""
    m, eps, span = 1.0, 0.2, 1.0
    k, j, i = np.indices((16, 16, 16))
    x = m + eps * (-1.0) ** (k + j + i)
    interior = np.zeros(x.shape, bool)
    interior[6:-6, 6:-6, 6:-6] = True          # beyond the window radius (int(3.5·1.5 + 0.5) = 5) from the edges
    c1, c2 = (0.01 * span) ** 2, (0.03 * span) ** 2
    my = a * m + b
    expected = (2 * m * my + c1) / (m**2 + my**2 + c1) * (2 * a * eps**2 + c2) / ((1 + a**2) * eps**2 + c2)
    assert ssim(a * x + b, x, interior, data_range=span) == pytest.approx(expected, abs=1e-4)


def test_ssim_decreases_monotonically_with_noise():
    rng = np.random.default_rng(1)
    truth = np.zeros((12, 16, 16))
    truth[:, 4:12, 4:12] = 1.0
    noise = rng.normal(0, 1, truth.shape)
    values = [ssim(truth + s * noise, truth) for s in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)]
    assert values[0] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 0.3


# ------------------------------------------------------------------------------------------------ CNR
def test_cnr_of_gaussian_noise_is_delta_over_sigma():
    rng = np.random.default_rng(7)
    delta, sigma = 0.3, 0.1
    vol = rng.normal(0.0, sigma, (20, 40, 40))
    a = np.zeros(vol.shape, bool)
    a[:, :, :20] = True
    vol[a] += delta
    assert cnr(vol, a, ~a) == pytest.approx(delta / sigma, rel=0.03)      # 3.0
    assert cnr(vol, ~a, a) == pytest.approx(cnr(vol, a, ~a), rel=1e-12)


def test_cnr_pools_unequal_variances_and_needs_two_voxels():
    vol = np.array([0.0, 2.0, 10.0, 14.0])     # var_a = 2, var_b = 8 (ddof 1): pooled sqrt(5)
    a = np.array([True, True, False, False])
    assert cnr(vol, a, ~a) == pytest.approx(11.0 / math.sqrt(5.0), rel=1e-12)
    with pytest.raises(ValueError, match="region_b"):
        cnr(vol, a, np.array([False, False, True, False]))

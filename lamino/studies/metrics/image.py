"""Image-quality metrics of a reconstruction against its ground truth: RMSE, NRMSE, PSNR, SSIM and CNR.

Volumes are arrays of linear attenuation μ (1/mm), normally (nz, ny, nx) (any matching shape works); jax arrays
are accepted (converted with ``np.asarray``). ``mask`` is an optional boolean array of the same shape restricting
the voxels that are scored (``None`` = every voxel). Every metric returns a Python float.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from lamino import _checks

SSIM_K1 = 0.01          # Wang et al. (2004): C1 = (K1 L)²
SSIM_K2 = 0.03          # C2 = (K2 L)²
SSIM_TRUNCATE = 3.5     # Gaussian window radius in standard deviations (skimage's choice for σ = 1.5)


# ---------------------------------------------------------------------------------------------- input checks
def _volume(name: str, value: Any) -> np.ndarray:
    """``value`` as a finite float64 array with at least one element."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} (shape {arr.shape}) is not allowed: give a non-empty array of finite values")
    return arr


def _bool_mask(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a boolean array of ``shape`` (bool dtype, or integers that are all 0 or 1) with ≥ 1 True."""
    arr = np.asarray(value)
    if arr.shape != shape:
        raise ValueError(f"{name} shape {arr.shape} is not allowed: give a boolean array of shape {shape}")
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) and np.all((arr == 0) | (arr == 1))):
            raise ValueError(f"{name} dtype {arr.dtype} is not allowed: give a boolean array (or integer 0/1)")
        arr = arr.astype(bool)
    return arr


def _pair(recon: Any, truth: Any, mask: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (recon, truth, mask) with matching shapes; ``mask=None`` selects every voxel."""
    r, t = _volume("recon", recon), _volume("truth", truth)
    if r.shape != t.shape:
        raise ValueError(f"recon shape {r.shape} is not allowed: give the truth's shape {t.shape}")
    m = np.ones(t.shape, bool) if mask is None else _bool_mask("mask", mask, t.shape)
    if not m.any():
        raise ValueError("mask (all False) is not allowed: give a mask that selects at least one voxel")
    return r, t, m


def _range(truth: np.ndarray, mask: np.ndarray, data_range: Any) -> float:
    """``data_range`` if given (> 0), else max − min of the truth over the mask (error if 0)."""
    if data_range is not None:
        return _checks.positive("data_range", data_range, " (1/mm)")
    vals = truth[mask]
    span = float(vals.max() - vals.min())
    if span <= 0:
        raise ValueError(f"truth range over the mask ({span}) is not allowed: the truth must vary over the mask, "
                         "or give data_range > 0")
    return span


# ---------------------------------------------------------------------------------------------- pixel errors
def rmse(recon: Any, truth: Any, mask: Any = None) -> float:
    """Root-mean-square error (1/mm): RMSE = sqrt(mean_{mask}((r − t)²))."""
    r, t, m = _pair(recon, truth, mask)
    return float(np.sqrt(np.mean((r[m] - t[m]) ** 2)))


def nrmse(recon: Any, truth: Any, mask: Any = None) -> float:
    """Range-normalised RMSE (dimensionless): NRMSE = RMSE / (max_{mask} t − min_{mask} t); error if the range is 0."""
    r, t, m = _pair(recon, truth, mask)
    return rmse(r, t, m) / _range(t, m, None)


def psnr(recon: Any, truth: Any, mask: Any = None, data_range: Any = None) -> float:
    """Peak signal-to-noise ratio (dB): PSNR = 20 log10(L / RMSE), L = ``data_range`` (1/mm) or, by default,
    max − min of the truth over the mask. RMSE = 0 gives ``inf``."""
    r, t, m = _pair(recon, truth, mask)
    span = _range(t, m, data_range)
    err = rmse(r, t, m)
    return math.inf if err == 0 else float(20.0 * math.log10(span / err))


# ---------------------------------------------------------------------------------------------- structure
def ssim_map(recon: Any, truth: Any, data_range: float, sigma_voxels: float = 1.5) -> np.ndarray:
    """Local SSIM of Wang et al. (IEEE TIP 13, 600, 2004), eq. 13, with a Gaussian window, at every voxel:

        SSIM = (2 μ_r μ_t + C1)(2 σ_rt + C2) / ((μ_r² + μ_t² + C1)(σ_r² + σ_t² + C2)),
        C1 = (0.01 L)², C2 = (0.03 L)², L = ``data_range`` (1/mm),

    where μ = G∗x, σ_x² = G∗x² − μ_x², σ_rt = G∗(r t) − μ_r μ_t (population, not sample, moments) and G is a
    normalised Gaussian of standard deviation ``sigma_voxels`` on every axis, truncated at 3.5 σ, with
    mirror-reflected borders (``scipy.ndimage.gaussian_filter``, ``mode="reflect"``; same as skimage's
    ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)``).
    """
    r, t = _volume("recon", recon), _volume("truth", truth)
    if r.shape != t.shape:
        raise ValueError(f"recon shape {r.shape} is not allowed: give the truth's shape {t.shape}")
    span = _checks.positive("data_range", data_range, " (1/mm)")
    sigma = _checks.positive("sigma_voxels", sigma_voxels, " (voxels)")

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma, mode="reflect", truncate=SSIM_TRUNCATE)

    mu_r, mu_t = blur(r), blur(t)
    var_r = blur(r * r) - mu_r**2
    var_t = blur(t * t) - mu_t**2
    cov = blur(r * t) - mu_r * mu_t
    c1, c2 = (SSIM_K1 * span) ** 2, (SSIM_K2 * span) ** 2
    return (2 * mu_r * mu_t + c1) * (2 * cov + c2) / ((mu_r**2 + mu_t**2 + c1) * (var_r + var_t + c2))


def ssim(recon: Any, truth: Any, mask: Any = None, data_range: Any = None, sigma_voxels: float = 1.5) -> float:
    """Mean structural similarity (dimensionless, ≤ 1; 1 iff identical): the mean over ``mask`` of
    :func:`ssim_map` (3-D Gaussian-window SSIM, Wang et al. 2004). The window sees the whole volume (the mask
    only selects which local values are averaged). L = ``data_range`` or, by default, max − min of the truth over
    the mask."""
    r, t, m = _pair(recon, truth, mask)
    span = _range(t, m, data_range)
    return float(np.mean(ssim_map(r, t, span, sigma_voxels)[m]))


# ---------------------------------------------------------------------------------------------- contrast
def cnr(recon: Any, region_a: Any, region_b: Any) -> float:
    """Contrast-to-noise ratio (dimensionless) between two regions of one volume:

        CNR = |mean_a − mean_b| / sqrt((var_a + var_b) / 2),

    with sample variances (ddof = 1); each region is a boolean mask of ≥ 2 voxels. A noiseless pair of
    different means gives ``inf``; equal means with no noise give ``nan``."""
    r = _volume("recon", recon)
    vals = []
    for name, region in (("region_a", region_a), ("region_b", region_b)):
        sel = _bool_mask(name, region, r.shape)
        n = int(sel.sum())
        if n < 2:
            raise ValueError(f"{name} ({n} voxels) is not allowed: give a region of at least 2 voxels")
        vals.append(r[sel])
    a, b = vals
    diff = abs(float(a.mean() - b.mean()))
    noise = math.sqrt((float(a.var(ddof=1)) + float(b.var(ddof=1))) / 2.0)
    if noise == 0:
        return math.nan if diff == 0 else math.inf
    return diff / noise

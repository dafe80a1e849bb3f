"""Task-based detectability: the non-prewhitening (NPW) model observer's d′ at a task's location.

A detection task asks whether a known signal (a crack, a pore, a user's sphere or disk) is present at a known
place. For a reconstruction that responds linearly to a small signal, the expected reconstructed signal is
ΔḠ(f) = MTF_loc(f)·ΔS(f) — the task function ΔS seen through the local 3-D MTF of the whole simulate →
reconstruct chain — and the NPW observer, whose template is that expected signal, reaches

    d′² = [Σ_f |ΔḠ(f)|²]² / Σ_f |ΔḠ(f)|² NPS_loc(f)                                     (1)

(Gang et al., Med. Phys. 37, 1948 (2010); Stayman et al., 2019; AAPM TG-233). Here both factors are
measured in the image domain, which needs neither stationarity of the MTF nor a fitted model:

- the expected signal Δḡ is pushed through the chain itself: the noise-free reconstruction with the signal minus
  the one without it (``signal_image``), which holds the local MTF exactly;
- the local noise enters through its autocovariance C(Δ) = ⟨n(x) n(x + Δ)⟩, estimated from a noise-only image
  (a noisy reconstruction minus the noise-free one) in a box around the task, for lags |Δᵢ| ≤ ``max_lag``
  voxels; the NPS is its Fourier transform, so the denominator of (1) is Σ_Δ C(Δ) A(Δ) with A the
  template's autocorrelation (Wiener–Khinchin). Truncating the lags is Blackman–Tukey's lag window: it smooths
  the NPS estimate of a single realisation.

So d′² = (Σ_x Δḡ(x)²)² / Σ_Δ C(Δ) A(Δ), A(Δ) = Σ_x Δḡ(x) Δḡ(x + Δ), with Δḡ restricted to the task's zone
(:func:`task_zones`). ``d′ ≥ ROSE_DPRIME`` (5, the Rose criterion) counts as detectable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from lamino.studies.metrics.image import _bool_mask, _volume

ROSE_DPRIME = 5.0         # Rose criterion: a signal is reliably detected when its SNR (d′) reaches 5
MAX_LAG = 4               # voxels: lag window of the noise autocovariance (NPS smoothing)
ZONE_RADIUS = 3           # voxels around a task's footprint that belong to its template
NOISE_MARGIN = 8          # voxels around a task's zone where its local noise is measured


def _box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``margin`` voxels on every side, clipped to the array."""
    idx = np.nonzero(mask)
    return tuple(slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))
                 for i, n in zip(idx, mask.shape, strict=True))


def _correlate(a: np.ndarray, b: np.ndarray, max_lag: int) -> np.ndarray:
    """Σ_x a(x) b(x + Δ) for every lag |Δᵢ| ≤ ``max_lag``: a (2L+1)³ array, zero-padded FFT (no wrap-around)."""
    shape = [n + max_lag for n in a.shape]
    axes = tuple(range(a.ndim))
    fa, fb = np.fft.rfftn(a, shape, axes), np.fft.rfftn(b, shape, axes)
    full = np.fft.irfftn(np.conj(fa) * fb, shape, axes)
    lags = np.r_[0:max_lag + 1, -max_lag:0]
    return full[np.ix_(*[lags % n for n in shape])]


def noise_autocovariance(noise: Any, region: Any, max_lag: int = MAX_LAG) -> np.ndarray:
    """Autocovariance C(Δ) of a noise-only image over ``region`` (bool), for lags |Δᵢ| ≤ ``max_lag`` voxels.

    C(Δ) = Σ_x m(x) m(x+Δ) n(x) n(x+Δ) / Σ_x m(x) m(x+Δ), with n the noise minus its mean over the region
    and m the region: the masked (unbiased-overlap) estimator. Returns a (2L+1, 2L+1, 2L+1) array, lag 0 first
    on each axis (numpy FFT order); NaN at lags no pair of region voxels reaches."""
    n = _volume("noise", noise)
    m = _bool_mask("region", region, n.shape)
    if m.sum() < 2:
        raise ValueError("region is not allowed: it holds fewer than 2 voxels, too few to measure noise")
    lag = int(max_lag)
    if lag < 0:
        raise ValueError(f"max_lag={max_lag!r} is not allowed: give an integer ≥ 0 (voxels)")
    centred = np.where(m, n - n[m].mean(), 0.0)
    pairs = _correlate(m.astype(np.float64), m.astype(np.float64), lag)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0.5, _correlate(centred, centred, lag) / np.maximum(pairs, 1.0), np.nan)


def npw_dprime(signal: Any, autocovariance: np.ndarray) -> float:
    """Eq. (1) of the module: the NPW d′ of the expected reconstructed ``signal`` (the template, zero outside
    its zone) in noise of autocovariance ``autocovariance`` (from :func:`noise_autocovariance`, lag window
    L = (size − 1) / 2). Lags the noise estimate does not reach are left out. 0 for a zero signal."""
    s = _volume("signal", signal)
    c = np.asarray(autocovariance, np.float64)
    lag = (c.shape[0] - 1) // 2
    if c.ndim != s.ndim or any(k != 2 * lag + 1 for k in c.shape):
        raise ValueError(f"autocovariance shape {c.shape} is not allowed: give the (2L+1)^{s.ndim} array of "
                         "noise_autocovariance")
    energy = float(np.sum(s * s))
    if energy == 0.0:
        return 0.0
    inside = np.nonzero(s)
    crop = s[tuple(slice(int(i.min()), int(i.max()) + 1) for i in inside)]
    a = _correlate(crop, crop, lag)
    variance = float(np.nansum(np.where(np.isfinite(c), c, 0.0) * a))
    if not variance > 0:
        raise ValueError("the noise variance of the template is not positive: the noise image holds no noise "
                         "near the task (check that it is a noisy minus a noise-free reconstruction)")
    return energy / math.sqrt(variance)


def task_zones(footprints: Sequence[Any], radius: int = ZONE_RADIUS, region: Any = None) -> list[np.ndarray]:
    """Each task's zone: the voxels within ``radius`` voxels (Euclidean) of its footprint (bool) that lie nearer
    to it than to any other task's footprint, inside ``region`` (default everywhere). The zones are disjoint,
    so tasks close to each other (a branch at its parent crack) share no template voxel."""
    if not footprints:
        return []
    masks = [np.asarray(f, bool) for f in footprints]
    shape = masks[0].shape
    owner = np.full(shape, -1, np.int32)
    for i, m in enumerate(masks):
        if m.shape != shape:
            raise ValueError(f"footprint {i} shape {m.shape} is not allowed: give every footprint the shape {shape}")
        owner[m & (owner < 0)] = i
    if not (owner >= 0).any():
        return [np.zeros(shape, bool) for _ in masks]
    distance, nearest = ndimage.distance_transform_edt(owner < 0, return_indices=True)
    label = owner[tuple(nearest)]
    keep = distance <= radius
    if region is not None:
        keep &= _bool_mask("region", region, shape)
    return [keep & (label == i) for i in range(len(masks))]


def task_dprimes(signal_image: Any, noise_image: Any, footprints: Sequence[Any], region: Any = None,
                 radius: int = ZONE_RADIUS, max_lag: int = MAX_LAG, margin: int = NOISE_MARGIN) -> list[float]:
    """NPW d′ of every task: ``signal_image`` = noise-free reconstruction with all the tasks' signals minus the
    one without them (μ, 1/mm), ``noise_image`` = a noisy minus the noise-free reconstruction, ``footprints``
    one bool mask per task (its voxels), ``region`` the voxels that may be scored (the study's measured region).
    Each task's template is ``signal_image`` on its zone (:func:`task_zones`); its noise autocovariance is
    measured in its zone's box grown by ``margin`` voxels, inside ``region``. NaN for a task with no zone."""
    sig = _volume("signal_image", signal_image)
    noise = _volume("noise_image", noise_image)
    if noise.shape != sig.shape:
        raise ValueError(f"noise_image shape {noise.shape} is not allowed: give the signal's shape {sig.shape}")
    reg = np.ones(sig.shape, bool) if region is None else _bool_mask("region", region, sig.shape)
    out = []
    for zone in task_zones(footprints, radius, reg):
        if not zone.any():
            out.append(math.nan)
            continue
        box = _box(zone, margin + max_lag)
        template = np.where(zone, sig, 0.0)[box]
        out.append(npw_dprime(template, noise_autocovariance(noise[box], reg[box], max_lag)))
    return out


def template_dprime(present: Any, absent: Any, template: Any) -> float:
    """The empirical d′ of a linear template observer on signal-present and signal-absent ensembles
    ((k, …) arrays of images): t = Σ_x w(x) g(x) per image, d′ = (t̄₁ − t̄₀) / √((s₁² + s₀²)/2) with sample
    variances (Barrett & Myers, Foundations of Image Science, ch. 13). The reference the NPW formula is
    validated against."""
    w = _volume("template", template)
    p, a = _volume("present", present), _volume("absent", absent)
    if p.shape[1:] != w.shape or a.shape[1:] != w.shape or len(p) < 2 or len(a) < 2:
        raise ValueError(f"present {p.shape} / absent {a.shape} are not allowed: give ≥ 2 images each of the "
                         f"template's shape {w.shape}")
    t1 = np.tensordot(p, w, axes=w.ndim)
    t0 = np.tensordot(a, w, axes=w.ndim)
    return float((t1.mean() - t0.mean()) / math.sqrt((t1.var(ddof=1) + t0.var(ddof=1)) / 2))

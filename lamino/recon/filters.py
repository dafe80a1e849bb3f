"""Ramp filters for filtered backprojection (FBP, CL-FBP, FDK): frequency responses and row-wise filtering.

The Ram-Lak response is built, as recommended by Kak & Slaney (*Principles of Computerized Tomographic
Imaging*, 1988, §3.3.3), as the DFT of the *spatial* band-limited ramp kernel sampled at the
detector spacing ``du``::

    h[0] = 1 / (4 du²),   h[n] = −1 / (π n du)²  (n odd),   h[n] = 0  (n even ≠ 0)        (1)

    H[m] = du · Σ_n h[n] · exp(−2πi m n / N)        (N = padded length, n taken periodically)   (2)

so that ``H ≈ |k|`` (k in cycles/mm) and, with zero padding to N ≥ 2·cols − 1, filtering is the exact
linear convolution of each detector row with the infinite kernel (1): no DC shift, no wrap-around. The
price is that ``H[0] = du · Σ h`` is not exactly 0 but ≈ 2 / (π² N du) (< 1/4 of a frequency bin's |k|),
and for Ram-Lak ``H[0] + H[N/2] = 1 / (2 du)`` exactly (the Nyquist value of |k|).

Apodised filters multiply (2) by a window of x = |k| / (cutoff · k_Nyquist), k_Nyquist = 1 / (2 du), and
every response is zero where x > 1 (Kak & Slaney §3.3; the same windows as ASTRA and scikit-image)::

    ram-lak       1
    shepp-logan   sin(πx/2) / (πx/2)
    cosine        cos(πx/2)
    hann          (1 + cos πx) / 2

Units: projections are dimensionless line integrals; filtered rows are in 1/mm (H carries the du of the
convolution integral).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

FILTERS: tuple[str, ...] = ("ram-lak", "shepp-logan", "cosine", "hann")


def check_filter(name: str, cutoff: float) -> tuple[str, float]:
    """Validated (filter name, cutoff); one-line ValueErrors naming the parameter."""
    if not isinstance(name, str) or name.lower() not in FILTERS:
        raise ValueError(f"filter={name!r} is not allowed: use one of {', '.join(FILTERS)}")
    try:
        c = float(cutoff)
    except (TypeError, ValueError):
        c = float("nan")
    if isinstance(cutoff, bool) or not (0.0 < c <= 1.0):
        raise ValueError(f"cutoff={cutoff!r} is not allowed: give a fraction of the Nyquist frequency in (0, 1]")
    return name.lower(), c


def padded_length(n: int, pad: bool = True) -> int:
    """FFT length for ``n`` detector columns: the next power of two ≥ 2n with ``pad``, else ``n``."""
    n = int(n)
    if n < 1:
        raise ValueError(f"n={n!r} is not allowed: give a number of detector columns ≥ 1")
    return 1 << max(1, (2 * n - 1).bit_length()) if pad else n


def ramlak_kernel(n_pad: int, du: float) -> np.ndarray:
    """The spatial Ram-Lak kernel (1) in 1/mm², float64, length ``n_pad`` in periodic (FFT) order."""
    idx = np.arange(n_pad)
    lag = np.minimum(idx, n_pad - idx)
    h = np.zeros(n_pad)
    h[0] = 1.0 / (4.0 * du * du)
    odd = lag % 2 == 1
    h[odd] = -1.0 / (np.pi * lag[odd] * du) ** 2
    return h


def ramp_filter(n_pad: int, du: float, name: str = "ram-lak", cutoff: float = 1.0) -> np.ndarray:
    """Frequency response H (1/mm) of a ramp filter on ``n_pad`` samples of spacing ``du`` mm: (n_pad,) float64.

    In numpy FFT order (index m ↔ frequency ``np.fft.fftfreq(n_pad, du)[m]`` cycles/mm); real and even.
    See the module docstring for the construction (Kak & Slaney §3.3.3) and the windows.
    """
    name, cutoff = check_filter(name, cutoff)
    n_pad = int(n_pad)
    if n_pad < 2:
        raise ValueError(f"n_pad={n_pad!r} is not allowed: give an FFT length ≥ 2")
    du = float(du)
    if not (np.isfinite(du) and du > 0):
        raise ValueError(f"du={du!r} is not allowed: give a detector column spacing > 0 mm")
    resp = du * np.real(np.fft.fft(ramlak_kernel(n_pad, du)))
    x = np.abs(np.fft.fftfreq(n_pad)) / (0.5 * cutoff)       # |k| / (cutoff · k_Nyquist)
    if name == "shepp-logan":
        window = np.sinc(x / 2.0)                              # sin(πx/2)/(πx/2)
    elif name == "cosine":
        window = np.cos(0.5 * np.pi * x)
    elif name == "hann":
        window = 0.5 * (1.0 + np.cos(np.pi * x))
    else:
        window = np.ones(n_pad)
    return np.where(x <= 1.0 + 1e-12, resp * window, 0.0)


def ramp_response(cols: int, du: float, name: str = "ram-lak", cutoff: float = 1.0,
                  pad: bool = True) -> tuple[jax.Array, int]:
    """The response H (1/mm, float32 JAX, :func:`ramp_filter`) for rows of ``cols`` pixels ``du`` mm apart, and
    its FFT length :func:`padded_length` (at least 2)."""
    n_pad = max(padded_length(cols, pad), 2)
    return jnp.asarray(ramp_filter(n_pad, du, name, cutoff), jnp.float32), n_pad


@functools.partial(jax.jit, static_argnames=("n_pad",))
def _apply(rows, response, n_pad: int):
    """``rows`` (..., n) convolved along the last axis with the filter of response (n_pad,) (numpy FFT order; its
    first n_pad // 2 + 1 values are used, the response being even), zero-padded to n_pad: float32 (..., n)."""
    n = rows.shape[-1]
    spec = jnp.fft.rfft(rows, n=n_pad, axis=-1)
    out = jnp.fft.irfft(spec * response[: n_pad // 2 + 1], n=n_pad, axis=-1)
    return out[..., :n].astype(jnp.float32)


def filter_rows(proj, du: float, name: str = "ram-lak", cutoff: float = 1.0, pad: bool = True):
    """Ramp-filter every detector row (the last axis, u) of ``proj``: same shape, float32 JAX array, 1/mm.

    ``pad`` zero-pads each row to :func:`padded_length` (≥ 2·cols) so that the filter is a linear, not
    circular, convolution; without it, rows wrap around. numpy or JAX input of any leading shape.
    """
    proj = jnp.asarray(proj, jnp.float32)
    if proj.ndim < 1 or proj.shape[-1] < 1:
        raise ValueError(f"proj with shape {proj.shape} is not allowed: give an array whose last axis is u")
    response, n_pad = ramp_response(proj.shape[-1], du, name, cutoff, pad)
    return _apply(proj, response, n_pad)

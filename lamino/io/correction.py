"""Flat/dark correction of raw frames into line integrals ``−log T`` (dimensionless)."""

from __future__ import annotations

import math

import numpy as np

from lamino._checks import nonfinite_count, nonfinite_error

__all__ = ["flat_dark_correct"]

_CHUNK_BYTES = 64 * 2**20                   # working memory of flat_dark_correct per chunk of views


def flat_dark_correct(counts, flats, darks, min_transmission: float = 1e-6, *, source: str | None = None) -> np.ndarray:
    """Line integrals ``−log T`` with ``T = (I − D) / (F − D)``: (n_views, rows, cols) float32, dimensionless.

    ``counts`` (n_views, rows, cols) raw projections I; ``flats`` and ``darks`` (k, rows, cols) or (rows, cols)
    frames, averaged over their first axis into F and D. All in the same detector units (ADU or counts).
    NaN or inf ``counts`` are a ValueError saying how many (and naming the file ``source`` they came from).
    Transmissions that are non-positive or below ``min_transmission`` become ``min_transmission``; pixels with
    no open beam (F − D ≤ 0 or non-finite: dead or broken flat pixels) get T = 1 (line integral 0). The result
    is always finite. Works view-chunk by view-chunk, so ``counts`` may be any array-like that slices (e.g. an h5py
    dataset) and the working memory stays bounded.
    """
    m = float(min_transmission)
    if not (math.isfinite(m) and 0.0 < m <= 1.0):
        raise ValueError(f"min_transmission={min_transmission!r} is not allowed: it must lie in (0, 1]")
    shape = tuple(np.shape(counts))
    if len(shape) != 3:
        raise ValueError(f"counts with shape {shape} is not allowed: give (n_views, rows, cols) frames")
    n_views, rows, cols = shape
    dark = _mean_frame(darks, "darks", (rows, cols))
    open_beam = _mean_frame(flats, "flats", (rows, cols)) - dark
    lit = np.isfinite(open_beam) & (open_beam > 0)
    denominator = np.where(lit, open_beam, 1.0)
    out = np.empty(shape, dtype=np.float32)
    step = max(1, _CHUNK_BYTES // (8 * rows * cols))
    bad = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_views, step):
            raw = np.asarray(counts[start:start + step], dtype=np.float64)
            bad += nonfinite_count(raw)
            t = (raw - dark) / denominator
            t = np.where(lit, t, 1.0)
            t = np.where(np.isfinite(t), np.maximum(t, m), m)
            out[start:start + step] = -np.log(t)
    if bad:
        raise nonfinite_error("counts", bad, n_views * rows * cols, source)
    return out


def _mean_frame(frames, name: str, det_shape: tuple[int, int]) -> np.ndarray:
    """Average (k, rows, cols) or (rows, cols) frames over k: (rows, cols) float64."""
    arr = np.asarray(frames, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] != det_shape:
        raise ValueError(f"{name} with shape {arr.shape} is not allowed: give (k ≥ 1, rows, cols) = (k, "
                         f"{det_shape[0]}, {det_shape[1]}) frames")
    return arr.mean(axis=0)

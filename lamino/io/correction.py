"""Flat/dark correction of raw frames into line integrals ``−log T`` (dimensionless), with defective pixels
filled from their neighbours.

A defective pixel (dead: no signal; hot: stuck at saturation; or a broken flat) sees no open beam: its mean flat
minus dark is below :data:`DEFECT_LEVEL` × the detector's median open beam. It reads the same wrong value in every
view, so reconstruction backprojects it along the same cone each time: a ring in xy and a V in xz/yz in CL (the
ring artefact of a defective detector element; Kak & Slaney 1988 §4.2, ring artefacts). Like a scanner's
defect-pixel map, :func:`flat_dark_correct` replaces each defective pixel's line integral by the mean of its
working 8-neighbours in the same view (clusters filled from their rim inwards).
"""

from __future__ import annotations

import math

import numpy as np

from lamino._checks import nonfinite_count, nonfinite_error

__all__ = ["flat_dark_correct", "defect_fill"]

_CHUNK_BYTES = 64 * 2**20                   # working memory of flat_dark_correct per chunk of views
DEFECT_LEVEL = 0.05                         # open beam below this fraction of the median: a defective pixel


def flat_dark_correct(counts, flats, darks, min_transmission: float = 1e-6, *, source: str | None = None,
                      fill_defects: bool = True) -> np.ndarray:
    """Line integrals ``−log T`` with ``T = (I − D) / (F − D)``: (n_views, rows, cols) float32, dimensionless.

    ``counts`` (n_views, rows, cols) raw projections I; ``flats`` and ``darks`` (k, rows, cols) or (rows, cols)
    frames, averaged over their first axis into F and D. All in the same detector units (ADU or counts).
    NaN or inf ``counts`` are a ValueError saying how many (and naming the file ``source`` they came from).
    Transmissions that are non-positive or below ``min_transmission`` become ``min_transmission``. Defective
    pixels (F − D non-finite or below :data:`DEFECT_LEVEL` × its median: dead, hot or broken flat pixels) get the
    mean line integral of their working neighbours (:func:`defect_fill`), or with ``fill_defects`` False, or when
    no pixel works, T = 1 (line integral 0). The result is always finite.
    Works view-chunk by view-chunk, so ``counts`` may be any array-like that slices (e.g. an h5py
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
    if lit.any():
        lit &= open_beam >= DEFECT_LEVEL * float(np.median(open_beam[lit]))
    fill = defect_fill(~lit) if fill_defects and lit.any() and not lit.all() else None
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
            li = -np.log(t)
            if fill is not None:
                li = fill(li)
            out[start:start + step] = li
    if bad:
        raise nonfinite_error("counts", bad, n_views * rows * cols, source)
    return out


def defect_fill(defective: np.ndarray):
    """A function that replaces the ``defective`` (rows, cols) pixels of frames (n, rows, cols) by the mean of
    their working 8-neighbours, each pass filling the defective pixels that have one (clusters take several
    passes, their centres filled from their filled rims); vectorised over the frames."""
    rows, cols = defective.shape
    missing = defective.copy()
    passes = []
    while missing.any():
        r, c = np.nonzero(missing)
        dr, dc = np.meshgrid([-1, 0, 1], [-1, 0, 1], indexing="ij")
        nr, nc = r[:, None] + dr.ravel()[None], c[:, None] + dc.ravel()[None]          # (k, 9)
        inside = (nr >= 0) & (nr < rows) & (nc >= 0) & (nc < cols)
        nr, nc = np.clip(nr, 0, rows - 1), np.clip(nc, 0, cols - 1)
        use = inside & ~missing[nr, nc]
        ready = use.any(axis=1)
        if not ready.any():
            break
        passes.append((r[ready], c[ready], nr[ready], nc[ready], use[ready] / use[ready].sum(axis=1, keepdims=True)))
        missing[r[ready], c[ready]] = False

    def fill(frames: np.ndarray) -> np.ndarray:
        frames = frames.copy()
        for r, c, nr, nc, weight in passes:
            frames[:, r, c] = np.sum(frames[:, nr, nc] * weight[None], axis=-1)
        return frames

    return fill


def _mean_frame(frames, name: str, det_shape: tuple[int, int]) -> np.ndarray:
    """Average (k, rows, cols) or (rows, cols) frames over k: (rows, cols) float64."""
    arr = np.asarray(frames, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] != det_shape:
        raise ValueError(f"{name} with shape {arr.shape} is not allowed: give (k ≥ 1, rows, cols) = (k, "
                         f"{det_shape[0]}, {det_shape[1]}) frames")
    return arr.mean(axis=0)

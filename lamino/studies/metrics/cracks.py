"""Crack segmentation and detection scores for the solid-state-battery pellet (``ssb_pellet``) and similar scenes.

Cracks are voids (μ ≈ 0) or lithium (low μ) inside a matrix of higher μ (1/mm). A reconstruction is segmented
into crack / not-crack voxels inside a region (the pellet, cracks included), then scored voxel-wise (Dice,
precision, recall) against the union of the ground-truth crack masks and crack-wise (fraction of each crack's
voxels found), with cracks grouped by the inclination of their plane to the sample (xy) plane: flat cracks lie
in laminography's missing cone and are expected to be the hardest to see.

Crack ground truth follows ``phantom.params["cracks"]``: dicts with ``label`` and ``normal`` (unit vector
(x, y, z) in the sample frame); masks are boolean (nz, ny, nx) arrays keyed by label (e.g. ``voxelize().labels``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from lamino import _checks
from lamino.studies.metrics.image import _bool_mask, _volume

ORIENTATION_EDGES_DEG = (30.0, 60.0)    # plane inclination to the xy plane: flat < 30 ≤ oblique ≤ 60 < vertical
ORIENTATION_CLASSES = ("vertical", "oblique", "flat")
OTSU_BINS = 256
METHODS = ("relative", "otsu")


# ---------------------------------------------------------------------------------------------- thresholds
def otsu_threshold(values: Any) -> float:
    """Otsu's threshold (IEEE Trans. SMC 9, 62, 1979) of a 1-D sample, from a 256-bin histogram over [min, max].

    For a split after bin k with class weights ω₀, ω₁ and means μ₀, μ₁ the between-class variance is
    σ_B²(k) = ω₀ ω₁ (μ₀ − μ₁)²; the threshold is the upper edge of the maximising bin, so the low class is
    ``values < threshold``. A plateau of equal maxima (empty bins between two modes) gives its middle. A
    constant sample returns its value (nothing lies below it). Otsu assumes comparable class sizes: with a
    small crack fraction and noise the threshold drifts into the matrix peak (over-segmentation)."""
    v = _volume("values", values).ravel()
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        return lo
    counts, edges = np.histogram(v, bins=OTSU_BINS, range=(lo, hi))
    centres = 0.5 * (edges[:-1] + edges[1:])
    w0 = np.cumsum(counts)[:-1].astype(np.float64)              # split after bin k, k = 0 … bins − 2
    s0 = np.cumsum(counts * centres)[:-1]
    n, total = float(counts.sum()), float((counts * centres).sum())
    w1 = n - w0
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (s0 / w0 - (total - s0) / w1) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    best = float(between.max())
    first = int(np.argmax(between))
    run = np.flatnonzero(between[first:] < best * (1 - 1e-12))    # end of the contiguous plateau of maxima
    last = first + (int(run[0]) - 1 if run.size else between.size - 1 - first)
    return float(0.5 * (edges[first + 1] + edges[last + 1]))


def segment_cracks(recon: Any, region: Any, method: str = "relative", fraction: float = 0.5,
                   matrix_mu: float | None = None) -> np.ndarray:
    """Boolean crack map: voxels inside ``region`` (the pellet, cracks included) whose μ (1/mm) is low.

    ``"relative"``: μ < ``fraction`` · μ_matrix, μ_matrix = ``matrix_mu`` or the median of ``recon`` over
    ``region`` (cracks are a small volume fraction, so the median is the matrix). ``"otsu"``: μ <
    :func:`otsu_threshold` of ``recon[region]``. Voxels outside ``region`` are False."""
    r = _volume("recon", recon)
    reg = _bool_mask("region", region, r.shape)
    if not reg.any():
        raise ValueError("region (all False) is not allowed: give a region that selects at least one voxel")
    if method == "relative":
        frac = _checks.fraction("fraction", fraction)
        mu = float(np.median(r[reg])) if matrix_mu is None else _checks.positive("matrix_mu", matrix_mu, " (1/mm)")
        threshold = frac * mu
    elif method == "otsu":
        threshold = otsu_threshold(r[reg])
    else:
        raise ValueError(f"method={method!r} is not allowed: give one of {', '.join(METHODS)}")
    return reg & (r < threshold)


# ---------------------------------------------------------------------------------------------- voxel scores
def _scored(pred: Any, truth: Any, mask: Any) -> tuple[int, int, int]:
    """(true positives, predicted positives, truth positives) over ``mask`` (None = everything)."""
    p = _bool_mask("pred", pred, np.shape(pred))
    t = _bool_mask("truth", truth, p.shape)
    if mask is not None:
        m = _bool_mask("mask", mask, p.shape)
        p, t = p & m, t & m
    return int((p & t).sum()), int(p.sum()), int(t.sum())


def dice(pred: Any, truth: Any, mask: Any = None) -> float:
    """Dice coefficient 2|P ∩ T| / (|P| + |T|) over ``mask``; two empty sets score 1.0."""
    tp, n_pred, n_true = _scored(pred, truth, mask)
    return 1.0 if n_pred + n_true == 0 else 2.0 * tp / (n_pred + n_true)


def precision(pred: Any, truth: Any, mask: Any = None) -> float:
    """Precision |P ∩ T| / |P| over ``mask``; with no predicted positives 1.0 if the truth is empty, else 0.0."""
    tp, n_pred, n_true = _scored(pred, truth, mask)
    if n_pred == 0:
        return 1.0 if n_true == 0 else 0.0
    return tp / n_pred


def recall(pred: Any, truth: Any, mask: Any = None) -> float:
    """Recall (sensitivity) |P ∩ T| / |T| over ``mask``; an empty truth scores 1.0."""
    tp, _, n_true = _scored(pred, truth, mask)
    return 1.0 if n_true == 0 else tp / n_true


# ---------------------------------------------------------------------------------------------- crack-wise
def inclination_deg(normal: Sequence[float]) -> float:
    """Inclination (degrees, 0–90) of a crack plane to the sample xy plane: degrees(arccos(|n_z| / |n|))."""
    n = np.asarray(normal, dtype=np.float64)
    norm = float(np.linalg.norm(n)) if n.shape == (3,) else math.nan
    if not (math.isfinite(norm) and norm > 0):
        raise ValueError(f"normal={normal!r} is not allowed: give a non-zero (x, y, z) vector")
    return math.degrees(math.acos(min(1.0, abs(float(n[2])) / norm)))


def orientation_class(normal: Sequence[float]) -> str:
    """``"vertical"`` (inclination > 60°: through-thickness, normal in-plane), ``"oblique"`` (30°–60°) or
    ``"flat"`` (< 30°: parallel to the sample plane, inside CL's missing cone); edges ``ORIENTATION_EDGES_DEG``."""
    incl = round(inclination_deg(normal), 9)          # an edge normal built with cos/sin lands on its edge
    low, high = ORIENTATION_EDGES_DEG
    if incl > high:
        return "vertical"
    return "flat" if incl < low else "oblique"


@dataclasses.dataclass(frozen=True)
class CrackScores:
    """Crack-wise detection.

    ``per_crack``: (label, orientation class, detected, overlap) per detectable crack, in input order;
    ``detection_rate``: detected / detectable (nan if none detectable); ``rate_by_orientation``: the same per
    class of ``ORIENTATION_CLASSES`` (nan where a class has no detectable crack); ``n_detectable``: cracks with
    a non-empty mask; ``undetectable``: labels of cracks whose mask is empty (sub-voxel), left out of all rates.
    """

    per_crack: tuple[tuple[str, str, bool, float], ...]
    detection_rate: float
    rate_by_orientation: dict[str, float]
    n_detectable: int
    undetectable: tuple[str, ...] = ()


def _near(pred: np.ndarray, dilate: int) -> np.ndarray:
    """Voxels within ``dilate`` voxels (Chebyshev distance: 3×3×3 steps) of a predicted crack voxel."""
    if dilate == 0:
        return pred
    cube = np.ones((3,) * pred.ndim, bool)
    return ndimage.binary_dilation(pred, structure=cube, iterations=dilate)


def _rate(flags: list[bool]) -> float:
    return float(np.mean(flags)) if flags else math.nan


def crack_detection(pred: Any, crack_masks: Mapping[str, Any], cracks: Sequence[Mapping[str, Any]],
                    min_overlap: float = 0.3, dilate: int = 1) -> CrackScores:
    """Which cracks a segmentation ``pred`` finds.

    overlap = |T_c ∩ D(P)| / |T_c| for each crack's truth mask T_c, D(P) = ``pred`` dilated by ``dilate`` voxels
    (3×3×3 cube steps; 0 = no dilation, tolerating a one-voxel shift by default); a crack is detected when
    overlap ≥ ``min_overlap``. Cracks with an empty mask are not detectable and are left out of the rates.
    Every crack in ``cracks`` (dicts with ``label`` and ``normal``) needs a mask in ``crack_masks``."""
    p = _bool_mask("pred", pred, np.shape(pred))
    thr = _checks.fraction("min_overlap", min_overlap)
    if not _checks.is_int(dilate) or dilate < 0:
        raise ValueError(f"dilate={dilate!r} is not allowed: give an integer ≥ 0 (voxels)")
    near = _near(p, int(dilate))
    rows, missing = [], []
    for crack in cracks:
        label = crack["label"]
        if label not in crack_masks:
            raise ValueError(f"crack label {label!r} is not allowed: crack_masks has no mask for it")
        truth = _bool_mask(f"crack_masks[{label!r}]", crack_masks[label], p.shape)
        size = int(truth.sum())
        if size == 0:
            missing.append(label)
            continue
        overlap = float((truth & near).sum()) / size
        rows.append((label, orientation_class(crack["normal"]), overlap >= thr, overlap))
    by_class = {c: _rate([row[2] for row in rows if row[1] == c]) for c in ORIENTATION_CLASSES}
    return CrackScores(tuple(rows), _rate([row[2] for row in rows]), by_class, len(rows), tuple(missing))


# ---------------------------------------------------------------------------------------------- all in one
_SEGMENT_KW = ("fraction", "matrix_mu")
_DETECT_KW = ("min_overlap", "dilate")


def score_cracks(recon: Any, crack_masks: Mapping[str, Any], cracks: Sequence[Mapping[str, Any]], region: Any,
                 exclude: Any = None, method: str = "relative", **kw: Any) -> dict[str, float]:
    """Segment ``recon`` (:func:`segment_cracks` with ``method`` and ``fraction``/``matrix_mu`` from ``kw``) and
    score it: Dice, precision and recall inside ``region`` minus ``exclude`` (e.g. pores: voids that are not
    cracks) against the union of ``crack_masks``, and crack-wise detection (:func:`crack_detection` with
    ``min_overlap``/``dilate`` from ``kw``, on the segmentation restricted to the same scoring region).

    Returns {"crack_dice", "crack_precision", "crack_recall", "crack_detection_rate",
    "crack_detection_vertical", "crack_detection_oblique", "crack_detection_flat"} (floats; nan rates where no
    crack of that kind is detectable)."""
    unknown = sorted(set(kw) - set(_SEGMENT_KW) - set(_DETECT_KW))
    if unknown:
        raise ValueError(f"keyword {unknown[0]!r} is not allowed: give {', '.join(_SEGMENT_KW + _DETECT_KW)}")
    r = _volume("recon", recon)
    reg = _bool_mask("region", region, r.shape)
    scored = reg if exclude is None else reg & ~_bool_mask("exclude", exclude, r.shape)
    pred = segment_cracks(r, reg, method, **{k: kw[k] for k in _SEGMENT_KW if k in kw}) & scored
    truth = np.zeros(r.shape, bool)
    for label, mask in crack_masks.items():
        truth |= _bool_mask(f"crack_masks[{label!r}]", mask, r.shape)
    truth &= scored
    det = crack_detection(pred, crack_masks, cracks, **{k: kw[k] for k in _DETECT_KW if k in kw})
    out = {"crack_dice": dice(pred, truth), "crack_precision": precision(pred, truth),
           "crack_recall": recall(pred, truth), "crack_detection_rate": det.detection_rate}
    out.update({f"crack_detection_{c}": det.rate_by_orientation[c] for c in ORIENTATION_CLASSES})
    return out

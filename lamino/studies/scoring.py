"""Every metric a study can ask for, by name, computed from one reconstruction and its ground truth.

:data:`METRICS` maps each name to its unit and a one-line meaning; :func:`applicable` says which apply to a
phantom (crack metrics need ``params["cracks"]``, star metrics the Siemens star); :func:`score` computes a
selection. The formulas live in :mod:`lamino.studies.metrics`.

Regions used (each restricted to ``region``, the voxels every view of the study sees, when one is given):

- *object*: voxels whose truth μ is at least half the 99.5th percentile of μ (the densest material's body,
  e.g. the pellet or the star's spokes) — its boundary gives the edge spread and the MTF;
- *uniform*: a material's voxels that are pure (fraction ≥ 0.99) two voxels away from anything else, or empty
  voxels two voxels away from any material — noise (largest material) and CNR (the two largest regions);
- *pellet*: the ``pellet`` label together with its cracks and pores — crack segmentation.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import warnings
from typing import Any

import numpy as np
from scipy import ndimage

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms.scene import Phantom, Voxelized
from lamino.studies.tasks import CRACK_DPRIME, PORE_DPRIME, TaskImages, builtin_tasks, task_metrics

#: name → (unit, meaning); higher is better unless the meaning says lower.
METRICS: dict[str, tuple[str, str]] = {
    "rmse": ("1/mm", "root-mean-square error of μ against the raw truth, which includes the missing cone that "
                     "no CL scan measures (lower is better)"),
    "nrmse": ("", "RMSE / (max − min of the truth), against the raw truth incl. the missing cone (lower is better)"),
    "psnr": ("dB", "peak signal-to-noise ratio, 20 log10(truth range / RMSE), against the raw truth incl. the "
                   "missing cone"),
    "ssim": ("", "3-D structural similarity (Wang et al. 2004), Gaussian window σ = 1.5 voxels, against the raw "
                 "truth incl. the missing cone"),
    "rmse_ideal": ("1/mm", "RMSE of μ against the ideal-scan truth (missing cone removed: what this geometry can "
                           "measure) (lower is better)"),
    "nrmse_ideal": ("", "RMSE against the ideal-scan truth (missing cone removed) / (max − min of the truth) "
                        "(lower is better)"),
    "psnr_ideal": ("dB", "20 log10(truth range / RMSE) against the ideal-scan truth (missing cone removed: what this "
                         "geometry can measure)"),
    "ssim_ideal": ("", "3-D SSIM against the ideal-scan truth (missing cone removed: what this geometry can "
                       "measure)"),
    "cnr": ("", "contrast-to-noise ratio between the two largest pure materials"),
    "noise_std": ("1/mm", "standard deviation of μ in the uniform region (lower is better)"),
    "in_plane_fwhm_mm": ("mm", "FWHM of the line spread across in-plane edges of the object (lower is better)"),
    "through_plane_fwhm_mm": ("mm", "FWHM of the line spread across edges facing z (lower is better)"),
    "mtf50_lp_mm": ("lp/mm", "in-plane spatial frequency where the edge MTF falls to 50 %"),
    "star_limit_lp_mm": ("lp/mm", "Siemens star: highest frequency with harmonic contrast ≥ 20 %"),
    "star_isotropy": ("", "Siemens star: min / max of the contrast in angular sectors"),
    "crack_dice": ("", "Dice of the crack segmentation against the crack labels"),
    "crack_precision": ("", "fraction of segmented crack voxels that are cracks"),
    "crack_recall": ("", "fraction of crack voxels that are segmented"),
    "crack_detection_rate": ("", "fraction of (resolvable) cracks detected"),
    "crack_detection_vertical": ("", "detection rate of through-thickness cracks (plane > 60° from the sample plane)"),
    "crack_detection_oblique": ("", "detection rate of cracks inclined 30°–60° to the sample plane"),
    "crack_detection_flat": ("", "detection rate of cracks within 30° of the sample plane (missing cone)"),
    "crack_dprime": ("", "NPW-observer detectability d′ of the cracks, median over the cracks in the region"),
    "crack_dprime_vertical": ("", "median d′ of through-thickness cracks (plane > 60° from the sample plane)"),
    "crack_dprime_oblique": ("", "median d′ of cracks inclined 30°–60° to the sample plane"),
    "crack_dprime_flat": ("", "median d′ of cracks within 30° of the sample plane (missing cone)"),
    "crack_detectable_fraction": ("", "share of the cracks with d′ ≥ 5 (Rose criterion)"),
    "pore_dprime": ("", "NPW-observer detectability d′ of the pores, median over the pores in the region"),
    "missing_cone_fraction": ("", "fraction of Fourier directions the geometry does not measure (lower is better)"),
    "scan_time_s": ("s", "acquisition time, views × (exposure + readout) (lower is better)"),
    "dose_mgy": ("mGy", "water-kerma proxy of the dose at the sample (lower is better)"),
    "saturated_fraction": ("", "share of open-beam (flat) pixels at the detector's saturation level: clipped data"),
}

#: value range of the metrics whose values are bounded (a constraint outside it can never hold)
METRIC_RANGES: dict[str, tuple[float, float]] = {
    **{m: (0.0, 1.0) for m in ("crack_dice", "crack_precision", "crack_recall", "crack_detection_rate",
                               "crack_detection_vertical", "crack_detection_oblique", "crack_detection_flat",
                               "crack_detectable_fraction", "star_isotropy", "missing_cone_fraction",
                               "saturated_fraction")},
    "ssim": (-1.0, 1.0),
    "ssim_ideal": (-1.0, 1.0),
    **{m: (0.0, math.inf) for m in ("rmse", "nrmse", "rmse_ideal", "nrmse_ideal", "noise_std", "in_plane_fwhm_mm",
                                    "through_plane_fwhm_mm", "mtf50_lp_mm", "star_limit_lp_mm", "scan_time_s",
                                    "dose_mgy", "crack_dprime", "crack_dprime_vertical", "crack_dprime_oblique",
                                    "crack_dprime_flat", "pore_dprime")},
}

_CRACK = ("crack_dice", "crack_precision", "crack_recall", "crack_detection_rate", "crack_detection_vertical",
          "crack_detection_oblique", "crack_detection_flat")
_STAR = ("star_limit_lp_mm", "star_isotropy")
_IDEAL = ("rmse_ideal", "nrmse_ideal", "psnr_ideal", "ssim_ideal")
_EDGE = ("in_plane_fwhm_mm", "through_plane_fwhm_mm", "mtf50_lp_mm")
_CRACK_LABEL_FRACTION = 0.25        # a voxel a quarter covered by a crack belongs to it (thin cracks)


@dataclasses.dataclass(frozen=True, eq=False)
class ScoringInput:
    """One reconstruction and everything its metrics need: ``recon`` and ``truth`` μ (nz, ny, nx) in 1/mm on
    ``grid``, the phantom's voxelisation on that grid, the phantom, the acquisition geometry and scanner, and
    optionally the same trajectory densely sampled (``trajectory``) for the missing-cone fraction (default:
    :func:`dense_trajectory` of ``geometry``), the ``region`` (bool) where image metrics are scored (default:
    everywhere; a study passes the voxels that every one of its geometries sees completely) and the scan's
    averaged ``flats`` (for the saturated fraction; without them it is NaN) and the images of its detection
    tasks (:class:`~lamino.studies.tasks.TaskImages`, for the d′ metrics; without them those are NaN)."""

    recon: np.ndarray
    truth: np.ndarray
    grid: VolumeGrid
    voxels: Voxelized
    phantom: Phantom
    geometry: Geometry
    scanner: Any
    trajectory: Geometry | None = None
    region: np.ndarray | None = None
    flats: np.ndarray | None = None
    tasks: tuple[TaskImages, ...] = ()


def applicable(phantom: Phantom, task_names: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The metric names that apply to ``phantom``, in :data:`METRICS` order, then ``dprime_<name>`` for each
    user task of ``task_names``."""
    skip = set()
    if not phantom.params.get("cracks"):
        skip.update(_CRACK + CRACK_DPRIME)
    if not phantom.params.get("pores"):
        skip.update(PORE_DPRIME)
    if not builtin_tasks(phantom):
        skip.update(CRACK_DPRIME + PORE_DPRIME)
    if phantom.name != "siemens_star":
        skip.update(_STAR)
    return (*(m for m in METRICS if m not in skip), *(f"dprime_{n}" for n in task_names))


def is_metric(name: str, task_names: tuple[str, ...] = ()) -> bool:
    """Whether ``name`` is a metric: one of :data:`METRICS` or ``dprime_<name>`` of a user task."""
    return name in METRICS or (name.startswith("dprime_") and name[len("dprime_"):] in task_names)


def score(data: ScoringInput, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """The metrics ``names`` (default: all applicable) of one reconstruction; NaN where a metric has nothing to
    measure (e.g. no crack large enough to resolve)."""
    user = tuple(t.name for im in data.tasks for t in im.tasks if t.kind == "user")
    names = applicable(data.phantom, user) if names is None else names
    unknown = [n for n in names if not is_metric(n, user)]
    if unknown:
        raise ValueError(f"metric {unknown[0]!r} is not allowed: choose from "
                         f"{', '.join(applicable(data.phantom, user))}")
    out: dict[str, float] = {}
    wanted = set(names)
    from lamino.studies.metrics import image

    recon, truth = np.asarray(data.recon, np.float32), np.asarray(data.truth, np.float32)
    region = np.ones(recon.shape, bool) if data.region is None else np.asarray(data.region, bool)
    if not region.any():
        raise ValueError("region is empty: no voxel is seen by every view (enlarge the detector or shrink the grid)")
    if wanted & {"rmse", "nrmse", "psnr", "ssim"}:
        out.update(rmse=image.rmse(recon, truth, region), nrmse=image.nrmse(recon, truth, region),
                   psnr=image.psnr(recon, truth, region), ssim=image.ssim(recon, truth, region))
    if wanted & set(_IDEAL):
        out.update(_ideal_metrics(recon, truth, data, region))
    if wanted & {"cnr", "noise_std"}:
        out.update(_uniform_metrics(recon, data.voxels, region))
    if wanted & set(_EDGE):
        out.update(_edge_metrics(recon, truth, data.grid, region))
    if wanted & set(_STAR):
        out.update(_star_metrics(recon, truth, data.grid, data.phantom))
    if wanted & set(_CRACK):
        out.update(_crack_metrics(recon, data.voxels, data.phantom, region))
    if data.tasks and any(n in CRACK_DPRIME + PORE_DPRIME or n.startswith("dprime_") for n in wanted):
        out.update(task_metrics(data.tasks, region))
    if wanted & {"missing_cone_fraction", "dose_mgy"}:
        from lamino.studies.metrics import coverage
    if "missing_cone_fraction" in wanted:
        dense = data.trajectory or dense_trajectory(data.geometry)
        out["missing_cone_fraction"] = _cached(("cone", dense.to_dict()), coverage.missing_cone_fraction, dense)
    if "scan_time_s" in wanted:
        out["scan_time_s"] = data.scanner.scan_time_s(data.geometry.n_views)
    if "dose_mgy" in wanted:                       # dose ∝ views: computed for one view, once per scanner
        one = data.geometry.replace(angles_deg=(0.0,)) if data.geometry.custom_vectors is None else data.geometry
        per_view = _cached(("dose", data.scanner.to_dict(), one.to_dict()), coverage.dose_proxy, data.scanner, one)
        out["dose_mgy"] = per_view * data.geometry.n_views / one.n_views
    if "saturated_fraction" in wanted and data.flats is not None:
        out["saturated_fraction"] = data.scanner.detector.saturated_fraction(data.flats)
    return {n: float(out.get(n, math.nan)) for n in names}


_CACHE: collections.OrderedDict = collections.OrderedDict()
DENSE_VIEWS = 360                   # views of the dense trajectory whose Fourier coverage is scored


def _cached(key, fn, *args, cache: collections.OrderedDict = _CACHE, keep: int = 64):
    """``fn(*args)`` remembered in ``cache`` under ``key`` (JSON-able) for the last ``keep`` keys used:
    geometry-only metrics are shared by the noise repeats, exposures and reconstructions of one geometry."""
    text = json.dumps(key, sort_keys=True, default=str)
    if text not in cache:
        cache[text] = fn(*args)
        while len(cache) > keep:
            cache.popitem(last=False)
    cache.move_to_end(text)
    return cache[text]


def dense_trajectory(geometry: Geometry, n_views: int = DENSE_VIEWS) -> Geometry:
    """The same circular trajectory (tilt, angular range) with ``n_views`` views: its Fourier coverage is that of
    the trajectory, not of the angular sampling (few views leave gaps between their central planes, which
    is view aliasing, not the missing cone). Geometries given by vectors are returned unchanged."""
    if geometry.custom_vectors is not None or geometry.n_views >= n_views:
        return geometry
    angles = np.asarray(geometry.angles_deg, float)
    step = np.median(np.diff(angles)) if len(angles) > 1 else 360.0
    span = angles[-1] - angles[0] + step          # the range the views stand for, e.g. 360° for n evenly spaced
    dense = angles[0] + np.arange(n_views) * span / n_views if span >= 359.999 else np.linspace(
        angles[0], angles[-1], n_views)
    return geometry.replace(angles_deg=tuple(float(a) for a in dense))


_IDEAL_CACHE: collections.OrderedDict = collections.OrderedDict()


def ideal_scan_truth(truth: np.ndarray, grid: VolumeGrid, geometry: Geometry,
                     trajectory: Geometry | None = None) -> np.ndarray:
    """The truth as an ideal scan of ``geometry`` sees it (:func:`lamino.studies.metrics.ideal.ideal_truth`),
    remembered for the last 8 (trajectory, grid, truth) triples: noise repeats, view counts, exposures and methods
    of one tilt share it. CL geometries use their tilt's cone; others (limited-angle CT) their densely sampled
    ``trajectory`` (default :func:`dense_trajectory`)."""
    from lamino.studies.metrics import ideal

    if geometry.custom_vectors is None:
        ref, key_geometry = geometry, {"tilt_deg": float(geometry.tilt_deg)}
    else:
        ref = trajectory or dense_trajectory(geometry)
        key_geometry = ref.to_dict()
    truth = np.ascontiguousarray(truth, np.float32)
    key = [key_geometry, grid.to_dict(), hashlib.sha1(truth.tobytes()).hexdigest(), truth.shape]
    return _cached(key, ideal.ideal_truth, truth, grid, ref, cache=_IDEAL_CACHE, keep=8)   # volumes: keep few


def _ideal_metrics(recon: np.ndarray, truth: np.ndarray, data: ScoringInput, region: np.ndarray) -> dict[str, float]:
    """RMSE, NRMSE, PSNR and SSIM against the ideal-scan truth over ``region``. The range L (NRMSE, PSNR, SSIM's
    constants) is the raw truth's over the region, as for the raw metrics: one L for every tilt of a study (the
    ideal truth's own range grows with the tilt, by the over- and undershoots of the removed cone)."""
    from lamino.studies.metrics import image

    ref = ideal_scan_truth(truth, data.grid, data.geometry, data.trajectory)
    err = image.rmse(recon, ref, region)
    span = float(truth[region].max() - truth[region].min())
    if span <= 0:
        return {"rmse_ideal": err, "nrmse_ideal": math.nan, "psnr_ideal": math.nan, "ssim_ideal": math.nan}
    return {"rmse_ideal": err, "nrmse_ideal": err / span, "psnr_ideal": image.psnr(recon, ref, region, span),
            "ssim_ideal": image.ssim(recon, ref, region, span)}


def _pure(voxels: Voxelized, margin: int = 2) -> dict[str, np.ndarray]:
    """Per material, voxels at least 99 % of it, ``margin`` voxels away from other materials."""
    out = {}
    for name, frac in voxels.fractions.items():
        pure = frac >= 0.99
        if margin:
            pure = ndimage.binary_erosion(pure, iterations=margin)
        out[name] = pure
    return out


def _uniform_metrics(recon: np.ndarray, voxels: Voxelized, region: np.ndarray) -> dict[str, float]:
    """Noise in the largest pure region and CNR between the two largest pure regions ("empty" counts as one)."""
    from lamino.studies.metrics import image

    regions = _pure(voxels)
    total = sum(voxels.fractions.values()) if voxels.fractions else np.zeros(recon.shape, np.float32)
    regions["(empty)"] = ndimage.binary_erosion(total <= 0.01, iterations=2)
    regions = {name: m & region for name, m in regions.items()}
    ranked = sorted(((int(m.sum()), name, m) for name, m in regions.items()), key=lambda t: -t[0])
    ranked = [r for r in ranked if r[0] >= 8]
    solid = [r for r in ranked if r[1] != "(empty)"]
    out = {"noise_std": float(np.std(recon[solid[0][2]])) if solid else math.nan}
    out["cnr"] = image.cnr(recon, ranked[0][2], ranked[1][2]) if len(ranked) >= 2 else math.nan
    return out


def _object_mask(truth: np.ndarray) -> np.ndarray:
    top = float(np.percentile(truth, 99.5))
    return truth >= 0.5 * top if top > 0 else np.zeros(truth.shape, bool)


def _stack_mask(truth: np.ndarray) -> np.ndarray:
    """The object's footprint through its whole thickness, (nz, ny, nx): where the mean μ over z is high. A
    laminated sample (a pouch cell) has layers too thin for an edge profile, but its stack has lateral sides."""
    return np.broadcast_to(_object_mask(truth.mean(axis=0)), truth.shape)


def _edge_metrics(recon: np.ndarray, truth: np.ndarray, grid: VolumeGrid, region: np.ndarray) -> dict[str, float]:
    from lamino.studies.metrics import resolution

    inside = _object_mask(truth)
    out = dict.fromkeys(_EDGE, math.nan)
    if inside.sum() < 8 or inside.all():
        return out
    for direction, key in (("in-plane", "in_plane_fwhm_mm"), ("through-plane", "through_plane_fwhm_mm")):
        try:
            edge = resolution.edge_response(recon, inside, grid, direction=direction, mask=region)
        except ValueError:              # no edge of that orientation in this object
            if direction != "in-plane":
                continue
            try:                        # a laminate (layers thinner than the edge window): its stack's sides
                edge = resolution.edge_response(recon, _stack_mask(truth), grid, direction=direction, mask=region)
            except ValueError:
                continue
        out[key] = edge.fwhm_mm
        if direction == "in-plane":
            out["mtf50_lp_mm"] = edge.mtf50
    return out


def _star_metrics(recon: np.ndarray, truth: np.ndarray, grid: VolumeGrid, phantom: Phantom) -> dict[str, float]:
    from lamino.studies.metrics import resolution

    p = phantom.params
    if p.get("plane", "xy") == "xz":    # the star stands in the xz plane: bring its normal (−y) to +z
        recon, truth = (np.ascontiguousarray(v.transpose(1, 0, 2)[::-1]) for v in (recon, truth))
        grid = VolumeGrid((grid.shape[1], grid.shape[0], grid.shape[2]),
                          (grid.voxel_size[1], grid.voxel_size[0], grid.voxel_size[2]),
                          (-grid.center[1], grid.center[0], grid.center[2]))
    try:
        star = resolution.star_resolution(recon, truth, grid, center_mm=(0.0, 0.0, p["thickness_mm"] / 2),
                                          n_spokes=p["n_spokes"], radius_mm=p["radius_mm"],
                                          thickness_mm=p["thickness_mm"], sectors=p.get("label_sectors", 8))
    except ValueError as exc:          # e.g. spokes finer than the grid, or a star thinner than its voxelisation
        warnings.warn(f"Siemens-star metrics are NaN: {exc}", stacklevel=2)
        return dict.fromkeys(_STAR, math.nan)
    return {"star_limit_lp_mm": star.limit_lp_mm, "star_isotropy": star.isotropy}


def _crack_metrics(recon: np.ndarray, voxels: Voxelized, phantom: Phantom, region: np.ndarray) -> dict[str, float]:
    from lamino.studies.metrics import cracks as crack_metrics

    cracks = phantom.params["cracks"]
    frac = voxels.label_fractions
    masks = {c["label"]: (frac[c["label"]] >= _CRACK_LABEL_FRACTION) & region for c in cracks}
    pellet = voxels.labels.get("pellet", np.zeros(recon.shape, bool)).copy()
    for m in masks.values():
        pellet |= m
    pores = frac["pore"] >= 0.5 if "pore" in frac else None
    if pores is not None:
        pellet |= pores
    pellet &= region
    matrix = voxels.labels.get("pellet")
    matrix = matrix & region if matrix is not None else None
    matrix_mu = float(np.median(recon[matrix])) if matrix is not None and matrix.any() else None
    return crack_metrics.score_cracks(recon, masks, cracks, pellet, exclude=pores, matrix_mu=matrix_mu)

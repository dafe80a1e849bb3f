"""The core shared by the analytic reconstructions, CL-FBP (:mod:`lamino.recon.fbp`) and FDK
(:mod:`lamino.recon.fdk`): input checks, the circular scan and its angular weights, row alignment, ramp filtering
in chunks of views, and the parallel-beam CL-FBP that both hand parallel beams to.

Angular weights: w_i is half the angle between the neighbours of view i in the sorted view angles, with
wrap-around over the period (360°, or 180° for parallel CT). Uniform scans get w_i = 2π / n; non-uniform ones
get the trapezoidal/Voronoi weight of each view. Coverage is checked: the largest gap between views must be
≤ 8 × the mean spacing and ≤ half the period, otherwise a ValueError says analytic reconstruction does not
apply (CL and cone beam need a full 360° rotation, parallel CT ≥ 180°; use the iterative methods instead).

What is supported: ``Geometry.parallel`` / ``Geometry.cone`` with any tilt, angles, ``cor_offset``,
``det_offset`` and ``det_roll_deg``, and ``Geometry.from_vectors`` geometries whose views are one view turned
about the sample z axis (the rotation axis of design.md). The filter must run along the trajectory tangent
ẑ × ray (parallel) or ẑ × source (cone); when the detector rows do not (a rolled detector, a cone beam with
``cor_offset`` ≠ 0, a yawed custom detector) by more than 0.25°, the views are first resampled bilinearly onto
a virtual detector whose rows do (:func:`align_rows`; the outermost pixels may then lose data). Wobble,
helical or otherwise non-circular vectors raise a ValueError.

Pixel centres and the dual-basis solve for detector coordinates come from :mod:`lamino.geometry.frame`.
Lengths in mm, angles in radians internally, filtered views in 1/mm.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lamino import _checks
from lamino.geometry import Geometry, VolumeGrid
from lamino.geometry.frame import pixel_centres, pixel_index, plane_coordinates, split_vectors
from lamino.projector import Projector
from lamino.recon.coverage import normalise, soft_fraction, view_window
from lamino.recon.filters import _apply, check_filter, ramp_filter, ramp_response
from lamino.recon.truncation import check_sample_size, extended_length, filter_extended, sample_extents

_GAP_FACTOR = 8.0            # largest allowed gap between views, in mean spacings
_CHUNK_ELEMENTS = 1 << 24    # padded detector samples filtered at once (memory bound of the filtering)
_ALIGN_TOL = math.sin(math.radians(0.25))   # rows within 0.25° of the tangent are filtered as they are


# ------------------------------------------------------------------------------------------------ checks
def check_inputs(projections, geometry: Geometry, grid: VolumeGrid, pad) -> jax.Array:
    """Validate the common arguments of :func:`~lamino.recon.fbp.fbp` / :func:`~lamino.recon.fdk.fdk`; the
    projections as float32 JAX."""
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino.geometry.Geometry")
    if not isinstance(grid, VolumeGrid):
        raise ValueError(f"grid={type(grid).__name__} is not allowed: give a lamino.geometry.VolumeGrid")
    if not geometry.is_concrete:
        raise ValueError("geometry with traced parameters is not allowed: analytic reconstruction needs numbers")
    if not isinstance(pad, bool | np.bool_):
        raise ValueError(f"pad={pad!r} is not allowed: give True (zero-pad rows to ≥ 2·cols) or False")
    expected = (geometry.n_views, *geometry.det_shape)
    if tuple(np.shape(projections)) != expected:
        raise ValueError(f"projections with shape {tuple(np.shape(projections))} is not allowed: "
                         f"the geometry expects (n_views, rows, cols) = {expected}")
    proj = jnp.asarray(projections, jnp.float32)
    _checks.finite("projections", proj)
    return proj


# ------------------------------------------------------------------------------------------------ the scan
@dataclasses.dataclass(frozen=True)
class Views:
    """Per-view quantities of a circular (rotation about sample z) scan, float64 numpy, sample frame."""

    vectors: np.ndarray     # (n, 12) ASTRA vectors (ray or source, detector centre, u step, v step), mm
    azimuth: np.ndarray     # (n,) angle (rad) of the ray's (parallel) or source's (cone) horizontal part
    weights: np.ndarray     # (n,) angular weights w_i (rad), Σ w_i = period
    period: float           # 2π, or π for parallel CT
    cos_tilt: float         # |ẑ × r̂| (parallel) or R / SOD (cone): cos α = sin θ


def _tangents(vec: np.ndarray) -> np.ndarray:
    """Unit trajectory tangents t = ẑ × (ray or source) / |…| per view, signed along the detector's u."""
    first = vec[:, 0:3]
    t = np.stack([-first[:, 1], first[:, 0], np.zeros(len(vec))], axis=1)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return t * np.where(np.sum(t * vec[:, 6:9], 1) < 0, -1.0, 1.0)[:, None]


def circular_views(geometry: Geometry, rows: bool = True) -> Views:
    """Check that ``geometry`` is a circular scan about the sample z axis that FBP/FDK can invert.

    Raises a one-line ValueError naming what is not allowed: non-circular ``from_vectors`` trajectories,
    detector rows not along the trajectory tangent (unless ``rows`` is False), cone sources on the axis,
    insufficient coverage.
    """
    vec = np.asarray(geometry.vectors(), dtype=np.float64)
    cone = geometry.beam == "cone"
    first, det, u, v = split_vectors(vec)     # ray direction (parallel) or source position (cone), d, u, v
    horiz = np.hypot(first[:, 0], first[:, 1])
    scale = np.linalg.norm(first, axis=1)
    if np.any(horiz <= 1e-9 * np.maximum(scale, 1e-300)):
        what = "sources on the rotation axis" if cone else "rays along the rotation axis"
        raise ValueError(f"geometry is not allowed for analytic reconstruction: {what} (sample z)")
    azimuth = np.arctan2(first[:, 1], first[:, 0])
    if geometry.custom_vectors is not None:
        _check_rotation(vec, azimuth, cone)
    # detector rows must run along the trajectory tangent t = ẑ × (ray or source): see align_rows
    misfit = np.max(np.linalg.norm(np.cross(u / np.linalg.norm(u, axis=1, keepdims=True), _tangents(vec)), axis=1))
    if rows and misfit > _ALIGN_TOL + 1e-9:
        raise ValueError(f"geometry is not allowed for analytic reconstruction: detector rows (u) deviate by "
                         f"{math.degrees(math.asin(min(misfit, 1.0))):.3g}° from the trajectory tangent; "
                         "resample them with lamino.recon.analytic.align_rows")
    normal = np.cross(u, v)
    ray = (det - first) if cone else first
    cos_inc = np.abs(np.sum(normal * ray, 1)) / (np.linalg.norm(normal, axis=1) * np.linalg.norm(ray, axis=1))
    if np.any(cos_inc < 1e-6):
        raise ValueError("geometry is not allowed for analytic reconstruction: a detector plane contains its rays")
    cos_tilt = float(np.mean(horiz / scale))
    period = math.pi if (not cone and cos_tilt > 1.0 - 1e-12) else 2.0 * math.pi
    weights = angular_weights(azimuth, period, cone=cone)
    return Views(vectors=vec, azimuth=azimuth, weights=weights, period=period, cos_tilt=cos_tilt)


def _check_rotation(vec: np.ndarray, azimuth: np.ndarray, cone: bool) -> None:
    """Every view must be view 0 turned about the sample z axis (all four vectors), else ValueError."""
    turn = azimuth - azimuth[0]
    c, s = np.cos(turn), np.sin(turn)
    rot = np.zeros((len(vec), 3, 3))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -s, s, c, 1.0
    ref = vec[0].reshape(4, 3)
    predicted = np.einsum("nij,kj->nki", rot, ref)                          # (n, 4, 3)
    err = np.linalg.norm(predicted - vec.reshape(-1, 4, 3), axis=2)        # (n, 4)
    size = np.linalg.norm(ref, axis=1)                                     # directions: their own length
    points = [0, 1] if cone else [1]                                       # positions: the mm scale
    size[points] = max(float(np.max(size[points])), 1.0)
    bad = err / size[None, :] > 1e-6
    if np.any(bad):
        view = int(np.argwhere(bad.any(axis=1))[0, 0])
        raise ValueError(f"geometry is not allowed for analytic reconstruction: view {view} of the vectors is "
                         "not view 0 turned about the sample z axis (wobble, helix or other trajectory); "
                         "use lamino.recon.sirt/cgls/fista_tv")


def angular_weights(azimuth, period: float, cone: bool = False) -> np.ndarray:
    """Voronoi angular weights (rad): half the gap between each view's neighbours, angles (rad) modulo ``period``.

    Raises a ValueError when the largest gap exceeds 8 × the mean spacing or half the period (coverage
    too small for analytic reconstruction). Coincident angles share their interval.
    """
    a = np.mod(np.asarray(azimuth, dtype=np.float64), period)
    n = a.size
    order = np.argsort(a, kind="stable")
    s = a[order]
    gap_next = np.append(np.diff(s), s[0] + period - s[-1])               # gap after each sorted view
    gap_prev = np.roll(gap_next, 1)
    largest = float(np.max(gap_next))
    if n < 2 or largest > min(_GAP_FACTOR * period / n, period / 2) + 1e-9:
        need = ("parallel CT needs views over ≥ 180°" if period < 6 else
                f"{'cone-beam' if cone else 'laminography (tilt > 0)'} analytic reconstruction needs views "
                "over the full 360°")
        raise ValueError(f"geometry.angles_deg is not allowed: {need}, but these {n} views leave a "
                         f"{math.degrees(largest):.4g}° gap; use lamino.recon.sirt/cgls/fista_tv")
    w = np.empty(n)
    w[order] = 0.5 * (gap_prev + gap_next)
    return w


# ------------------------------------------------------------------------------------------------ row alignment
def align_rows(projections, geometry: Geometry) -> tuple[jax.Array, Geometry]:
    """Resample the views onto a virtual detector whose rows run along the trajectory tangent, if needed.

    FBP/FDK filter along lines parallel to t = ẑ × ray (parallel) or ẑ × source (cone). When the detector's
    u step is not along t (``det_roll_deg`` ≠ 0, a cone beam with ``cor_offset`` ≠ 0 — its source then sits
    off the detector's central column — or yawed ``from_vectors`` detectors), each view is resampled onto the
    virtual detector with the same centre, shape and v step and u step |u|·t (the method of Sun et al. 2021,
    with the virtual detector through the real one's centre): virtual pixel P' is carried along its ray to the
    real detector plane and read bilinearly (zero outside). Returns the projections and the virtual geometry
    (``from_vectors``).

    Geometries whose rows are within 0.25° of t are returned unchanged: there the filter lines stray from the
    rows by < 1/40 pixel over ±5 pixels, less than the blur of a bilinear resampling. (Measured on a Gaussian
    blob at tilt 30°: a 3° roll filtered along the rows is off by 0.3 % (L2), resampled by 0.7 %; a cone beam
    with a 3.3° tangent misfit from ``cor_offset``: 0.17 % vs 0.49 %. Edges normal to v suffer more.)
    """
    vec = np.asarray(geometry.vectors(), dtype=np.float64)
    t = _tangents(vec)
    u_len = np.linalg.norm(vec[:, 6:9], axis=1)
    if np.max(np.linalg.norm(np.cross(vec[:, 6:9] / u_len[:, None], t), axis=1)) <= _ALIGN_TOL:
        return projections, geometry
    virtual = vec.copy()
    virtual[:, 6:9] = t * u_len[:, None]
    n, rows, cols = projections.shape
    cone = geometry.beam == "cone"
    proj = map_view_chunks(lambda chunk, v, w: _resample(chunk, v, w, cone), projections,
                           chunk_size(n, rows, 2 * cols), vec, virtual)
    return proj, Geometry.from_vectors(virtual, geometry.det_shape, geometry.beam)


@functools.partial(jax.jit, static_argnames=("cone",))
def _resample(chunk, real, virtual, cone: bool):
    """Views (b, rows, cols) on the ``real`` detectors (b, 12) read at the ``virtual`` detectors' (b, 12) pixels
    (bilinear, zero outside), float32.

    Each virtual pixel centre P' is carried along its ray to the real detector plane (normal n = u × v) as in
    :func:`lamino.geometry.frame.detector_hits`, but written relative to the real detector centre d so that
    float32 keeps its precision (|f − d| ≈ SDD would cancel): with rel = P' − d,
    cone h − d = rel + (λ − 1)·(P' − f), λ = ((d − f)·n) / ((P' − f)·n); parallel h − d = rel − ((rel·n) / (f·n))·f.
    """
    det_shape = chunk.shape[1:]

    def dot(a, b):                                   # elementwise, not matmul: no TF32 on GPUs
        return jnp.sum(a * b, axis=-1)

    def one(img, real_vec, virtual_vec):
        f, d, u, v = split_vectors(real_vec)
        # the virtual view moved by −d: its pixel centres are P' − d, (rows, cols, 3)
        rel = pixel_centres(virtual_vec.at[3:6].set(virtual_vec[3:6] - d), det_shape, jnp, jnp.float32)
        normal = jnp.cross(u, v)
        if cone:                                     # along the ray from the source to the real plane
            ray = rel + (d - f)
            rel = rel + (dot(d - f, normal) / dot(ray, normal) - 1.0)[..., None] * ray
        else:
            rel = rel - (dot(rel, normal) / dot(f, normal))[..., None] * f
        row, col = pixel_index(*plane_coordinates(rel, u, v, jnp), det_shape)
        return jax.scipy.ndimage.map_coordinates(img, [row, col], order=1, mode="constant", cval=0.0)

    return jax.vmap(one)(chunk, real, virtual)


# ------------------------------------------------------------------------------------------------ view chunks
def chunk_size(n_views: int, rows: int, n_pad: int) -> int:
    """Views filtered at once so that one chunk holds ≈ 2²⁴ padded samples (memory bound)."""
    return int(max(1, min(n_views, _CHUNK_ELEMENTS // max(1, rows * n_pad))))


def map_view_chunks(fn: Callable[..., jax.Array], proj, size: int, *per_view) -> jax.Array:
    """``fn(chunk, *per_view_chunks)`` over the views in chunks of ``size``, concatenated (float32).

    The last chunk is padded with zero views (and each per-view array with copies of its last row), so every
    call has one shape and compiles once; padded results are dropped.
    """
    n, rows, cols = proj.shape
    extra = (-n) % size
    per_view = [jnp.asarray(a, jnp.float32) for a in per_view]
    per_view = [jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)]) if extra else a for a in per_view]
    out = []
    for start in range(0, n, size):
        chunk = jnp.asarray(proj[start:start + size], jnp.float32)
        m = chunk.shape[0]
        if m < size:
            chunk = jnp.concatenate([chunk, jnp.zeros((size - m, rows, cols), jnp.float32)])
        out.append(fn(chunk, *(a[start:start + size] for a in per_view))[:m])
    return out[0] if len(out) == 1 else jnp.concatenate(out)


def filter_views(proj, du: float, name: str, cutoff: float, pad: bool, scale: np.ndarray,
                 extents: np.ndarray | None = None) -> jax.Array:
    """Row-wise ramp filter of every view, times ``scale[i]``, in chunks of views: float32 (n, rows, cols).

    With ``extents`` (n, rows, 2) pixels (:func:`lamino.recon.truncation.sample_extents`) and ``pad``, each row is
    first continued beyond the detector (:func:`lamino.recon.truncation.filter_extended`)."""
    n, rows, cols = proj.shape
    if extents is not None and pad:
        response, n_fft = extended_response(cols, du, name, cutoff)
        return map_view_chunks(lambda chunk, ext, sc: filter_extended(chunk, ext, response, du, n_fft)
                               * sc[:, None, None], proj, chunk_size(n, rows, n_fft), extents, scale)
    response, n_pad = ramp_response(cols, du, name, cutoff, pad)
    return map_view_chunks(lambda chunk, sc: _filter_scale(chunk, response, sc, n_pad), proj,
                           chunk_size(n, rows, n_pad), scale)


def extended_response(cols: int, du: float, name: str, cutoff: float) -> tuple[jax.Array, int]:
    """The ramp response (float32 JAX) and FFT length for rows of ``cols`` pixels continued beyond the detector
    (:func:`lamino.recon.truncation.extended_length`)."""
    n_fft = extended_length(cols)
    return jnp.asarray(ramp_filter(n_fft, du, name, cutoff), jnp.float32), n_fft


@functools.partial(jax.jit, static_argnames=("n_pad",))
def _filter_scale(chunk, response, scale, n_pad: int):
    return _apply(chunk, response, n_pad) * scale[:, None, None]


# ------------------------------------------------------------------------------------------------ methods
@dataclasses.dataclass(frozen=True)
class Filtering:
    """The checked filtering options of :func:`~lamino.recon.fbp.fbp` and :func:`~lamino.recon.fdk.fdk`."""

    name: str                           # one of lamino.recon.filters.FILTERS
    cutoff: float                       # fraction of the Nyquist frequency, (0, 1]
    pad: bool                           # zero-pad rows to ≥ 2·cols (linear convolution)
    extend: bool                        # rows continued (lamino.recon.truncation), partial voxels normalised
                                        # and faded (lamino.recon.coverage)
    sample_size: np.ndarray | None      # (z, y, x) mm of the sample box, or None (laterally unbounded)

    def extents(self, geometry: Geometry) -> np.ndarray | None:
        """Per view and row, how far to continue each row (pixels), or None when rows are not extended."""
        return sample_extents(geometry, self.sample_size) if (self.extend and self.pad) else None


def check_arguments(projections, geometry: Geometry, grid: VolumeGrid, filter: str, cutoff: float,
                    pad, extend=True, sample_size=None) -> tuple[jax.Array, Filtering]:
    """The checked projections (float32 JAX) and :class:`Filtering` options of :func:`~lamino.recon.fbp.fbp` and
    :func:`~lamino.recon.fdk.fdk`; one-line ValueErrors naming the parameter."""
    name, cutoff = check_filter(filter, cutoff)
    if not isinstance(extend, bool | np.bool_):
        raise ValueError(f"extend={extend!r} is not allowed: give True (continue truncated rows) or False")
    proj = check_inputs(projections, geometry, grid, pad)
    return proj, Filtering(name, cutoff, bool(pad), bool(extend), check_sample_size(sample_size))


def circular_scan(proj, geometry: Geometry) -> tuple[jax.Array, Geometry, Views]:
    """The projections and geometry ready for filtering along the rows, and their :class:`Views`: checks that
    ``geometry`` is a circular scan (:func:`circular_views`), then aligns the rows (:func:`align_rows`)."""
    circular_views(geometry, rows=False)                     # fail early on non-circular scans
    proj, geometry = align_rows(proj, geometry)
    return proj, geometry, circular_views(geometry)


def parallel_fbp(proj: jax.Array, geometry: Geometry, grid: VolumeGrid, opts: Filtering) -> jax.Array:
    """Parallel-beam CT and CL-FBP, eq. (1) of :mod:`lamino.recon.fbp`, of checked projections (float32,
    (n_views, rows, cols) line integrals): the μ volume (nz, ny, nx) in 1/mm, float32.

    :meth:`lamino.projector.Projector.backproject` multiplies view i by V / |(u × v) · r̂| (V the voxel volume,
    mm³): the filtered views are pre-scaled by its inverse and by (sin θ / 2)·w_i (CL, 360°) or w_i (parallel CT,
    angles folded onto 180°). Shared by :func:`~lamino.recon.fbp.fbp` and :func:`~lamino.recon.fdk.fdk`, which
    hands parallel beams here.
    """
    proj, geometry, views = circular_scan(proj, geometry)
    first, _, u, v = split_vectors(views.vectors)
    area = np.abs(np.sum(np.cross(u, v) * first, 1)) / np.linalg.norm(first, axis=1)
    factor = 1.0 if views.period < 2 * math.pi else views.cos_tilt / 2.0
    # Projector.backproject multiplies view i by V / |(u × v) · r̂|: undo it, and apply factor · w_i
    scale = factor * views.weights * area / float(np.prod(grid.voxel_size))
    du = float(np.linalg.norm(u[0]))
    filtered = filter_views(proj, du, opts.name, opts.cutoff, opts.pad, scale, opts.extents(geometry))
    return backproject_measured(filtered, geometry, grid, views.weights, opts.extend)


def backproject_measured(filtered: jax.Array, geometry: Geometry, grid: VolumeGrid, weights: np.ndarray,
                         measured: bool = True):
    """Backproject filtered views (n, rows, cols) onto ``grid``; with ``measured`` through the detector window and
    the measured-fraction normalisation of :mod:`lamino.recon.coverage`: float32 (nz, ny, nx)."""
    if not measured:
        return Projector(geometry, grid).backproject(filtered)
    window = view_window(geometry.det_shape)
    volume = Projector(geometry, grid).backproject(filtered * window[None])
    return normalise(volume, soft_fraction(geometry, grid, weights))

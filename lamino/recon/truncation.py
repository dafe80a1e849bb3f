"""Laterally truncated projections for FBP/FDK: each detector row extended beyond the detector before the ramp.

A flat sample wider than the field of view is cut off at both ends of every detector row. Zero padding then
puts a step from the edge value c to 0 at each end, and the ramp kernel h(k) = −1/(π k Δu)² (odd lags k,
:mod:`lamino.recon.filters`) turns that step into a smooth offset of the filtered row: at a distance of K pixels
from the edge the missing tail from K to K₂ contributes

    Δu·Σ_{odd k = K..K₂} h(k)·c = −(c / (π² Δu)) · Σ_{odd k = K..K₂} 1/k²   (≈ −(c / (2π² Δu))·(1/K − 1/K₂))   (1)

Backprojected over the turn this is a bias and a cupping of the reconstruction: on a 16 mm plate seen through a
5.2 mm detector, +16 % and +7 % of its μ (docs/reconstruction.md).

Extension (on by default in :func:`lamino.recon.fbp.fbp` and :func:`lamino.recon.fdk.fdk`): each row is
continued at the mean c of its outermost :data:`EDGE_PIXELS` pixels on each side, as far as the sample reaches
on that row, then 0 — the projection of a laterally homogeneous slab, which is what a flat sample looks like
beyond the field of view. The near part of the extension (:data:`NEAR_PIXELS`, where apodising windows still
shape the kernel) is filtered by the FFT (rows zero-padded so that no lag reaches half the period); the far part
is added by (1), summed exactly with the trigamma function (:func:`odd_inverse_squares`). Both are exact for a
slab that is homogeneous outside the field of view, and the far part costs nothing however wide the sample is.

How far the sample reaches comes from ``sample_size`` = (z, y, x) mm, a box centred on the sample-frame origin:
per view and row, the columns where that box projects (:func:`sample_extents`). Without it the sample is taken
as laterally unbounded (K₂ = ∞); a finite sample taken so keeps the tail beyond its true edge as a bias (−4.6 %
of μ on the plate above). Units: pixels along rows for extents, line integrals for c, 1/mm for filtered rows.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lamino.geometry import Geometry, VolumeGrid, frame
from lamino.resources import FLOAT32, check_memory

EDGE_PIXELS = 4          # pixels averaged for the value a row is continued with (noise of one pixel / 2)
UNBOUNDED = 1e9          # extent (pixels) of a sample taken as laterally unbounded


def check_sample_size(sample_size) -> np.ndarray | None:
    """``sample_size`` as (z, y, x) mm float64, or None; one-line ValueError for anything else."""
    if sample_size is None:
        return None
    try:
        size = np.asarray(sample_size, dtype=float)
    except (TypeError, ValueError):
        size = np.full(1, np.nan)
    if size.shape != (3,) or not np.all(np.isfinite(size)) or np.any(size <= 0):
        raise ValueError(f"sample_size={sample_size!r} is not allowed: give the sample's (z, y, x) sizes, "
                         "all > 0 mm (its thickness first)")
    return size


def sample_extents(geometry: Geometry, sample_size) -> np.ndarray:
    """How far each detector row of each view runs on the sample: (n_views, rows, 2) float32 pixels beyond the
    first column (left) and the last column (right), 0 where the sample ends on the detector; :data:`UNBOUNDED`
    both sides without a ``sample_size``.

    The sample is the box ``sample_size`` = (z, y, x) mm centred on the origin. A box projects (parallel or
    central projection) onto the convex hull of its 8 corners; the hull meets the line of row r in the interval
    spanned by the crossings of that line with the 28 segments between corners (each crossing lies in the hull
    and the hull's edges are among the segments)."""
    rows, cols = geometry.det_shape
    size = check_sample_size(sample_size)
    if size is None:
        return np.full((geometry.n_views, rows, 2), UNBOUNDED, np.float32)
    half = size[::-1] / 2.0                                              # (x, y, z)
    corners = np.array([[sx, sy, sz] for sz in (-1, 1) for sy in (-1, 1) for sx in (-1, 1)], float) * half
    rc = geometry.project_points(corners)                                # (n, 8, 2) fractional (row, col)
    i, j = np.triu_indices(8, k=1)
    r0, c0, r1, c1 = rc[:, i, 0], rc[:, i, 1], rc[:, j, 0], rc[:, j, 1]  # (n, 28)
    row = np.arange(rows, dtype=float)[None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (row - r0[..., None]) / (r1 - r0)[..., None]                 # (n, 28, rows)
        col = c0[..., None] + t * (c1 - c0)[..., None]
        level = np.isclose(r0, r1)[..., None] & np.isclose(row, r0[..., None])
        hit = ((t >= 0) & (t <= 1)) | level
        lo = np.where(hit, np.where(level, np.minimum(c0, c1)[..., None], col), np.inf).min(axis=1)
        hi = np.where(hit, np.where(level, np.maximum(c0, c1)[..., None], col), -np.inf).max(axis=1)
    left = np.where(np.isfinite(lo), np.maximum(0.0, -lo), 0.0)
    right = np.where(np.isfinite(hi), np.maximum(0.0, hi - (cols - 1)), 0.0)
    return np.stack([left, right], axis=-1).astype(np.float32)


NEAR_PIXELS = 32         # extension filtered by the FFT (where apodising windows change the kernel)


def extended_length(cols: int) -> int:
    """FFT length for rows of ``cols`` pixels continued by :data:`NEAR_PIXELS` on each side: the smallest
    2^a·3^b·5^c ≥ 2·(cols + NEAR_PIXELS), so that no lag between a detector pixel and the near extension reaches
    half a period (a linear convolution there)."""
    need = 2 * (int(cols) + NEAR_PIXELS)
    n = need
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1


def odd_inverse_squares(first, last):
    """Σ 1/k² over odd k in [first, last] (first ≥ 1; 0 where last < first), exactly: with k = 2j + 1 the sum
    over j ≥ j₀ is ψ₁(j₀ + ½)/4 (ψ₁ the trigamma function, :func:`trigamma`)."""
    j0 = jnp.ceil((first - 1.0) / 2.0)
    j1 = jnp.floor((last - 1.0) / 2.0)
    return jnp.where(j1 >= j0, 0.25 * (trigamma(j0 + 0.5) - trigamma(j1 + 1.5)), 0.0)


def trigamma(x):
    """ψ₁(x) = Σ_{i ≥ 0} 1/(x + i)² for x > 0: eight terms of the sum, then the asymptotic series
    1/y + 1/(2y²) + 1/(6y³) − 1/(30y⁵) + 1/(42y⁷) at y = x + 8 (Abramowitz & Stegun 6.4.12; error < 1e-11 for
    y ≥ 8). Elementwise and cheap, unlike a general polygamma."""
    head = sum(1.0 / (x + i) ** 2 for i in range(8))
    y = x + 8.0
    inv = 1.0 / y
    inv2 = inv * inv
    return head + inv * (1.0 + inv * (0.5 + inv * (1.0 / 6.0 + inv2 * (-1.0 / 30.0 + inv2 / 42.0))))


@functools.partial(jax.jit, static_argnames=("n_fft",))
def filter_extended(rows, extents, response, du: float, n_fft: int):
    """Ramp-filter ``rows`` (b, r, n) continued beyond both ends as far as ``extents`` (b, r, 2) pixels (module
    docstring): the first :data:`NEAR_PIXELS` of the extension by FFT with ``response`` (n_fft,), the rest by
    eq. (1), summed exactly (:func:`odd_inverse_squares`). float32 (b, r, n).
    """
    n = rows.shape[-1]
    near = NEAR_PIXELS
    k = min(EDGE_PIXELS, n)
    c_left = jnp.mean(rows[..., :k], axis=-1, keepdims=True)
    c_right = jnp.mean(rows[..., -k:], axis=-1, keepdims=True)
    ext_l, ext_r = extents[..., :1], extents[..., 1:]
    dist = jnp.arange(1, near + 1, dtype=jnp.float32)      # pixels beyond the edge
    right = jnp.where(dist <= ext_r, c_right, 0.0)          # columns n .. n + near − 1
    left = jnp.where(dist[::-1] <= ext_l, c_left, 0.0)      # columns −near .. −1 (the end of the period)
    gap = jnp.zeros(rows.shape[:-1] + (n_fft - n - 2 * near,), rows.dtype)
    full = jnp.concatenate([rows, right, gap, left], axis=-1)
    spec = jnp.fft.rfft(full, axis=-1)
    out = jnp.fft.irfft(spec * response[: n_fft // 2 + 1], n=n_fft, axis=-1)[..., :n]
    # eq. (1) for lags K = d + near + 1 … d + ext (d: pixels from the output to the edge pixel, ≥ 0)
    pos = jnp.arange(n, dtype=jnp.float32)

    def tail(c, d, ext):
        return -c / (math.pi ** 2 * du) * odd_inverse_squares(d + near + 1.0, d + ext)

    out = out + tail(c_right, (n - 1) - pos, ext_r) + tail(c_left, pos, ext_l)
    return out.astype(jnp.float32)


# ------------------------------------------------------------------------------------- measured support (iterative)
@dataclasses.dataclass(frozen=True, eq=False)
class Support:
    """The measured support of a truncated scan of a flat sample (:func:`measured_support`).

    Attributes:
        grid: the support grid, same voxel size and alignment as the requested grid, which is its sub-block.
        mask: bool (nz, ny, nx) of ``grid``: voxels of the sample box that measured rays cross.
        crop: slices of ``grid`` that give the requested grid.
        requested: the requested grid.
    """

    grid: VolumeGrid
    mask: np.ndarray
    crop: tuple[slice, slice, slice]
    requested: VolumeGrid


def _corner_rays_bounds(geometry: Geometry, half_z: float, margin: float) -> np.ndarray:
    """Lateral (x, y) bounds (2, 2) mm [[x_lo, x_hi], [y_lo, y_hi]] of where the rays of the detector's corners
    (``margin`` pixels beyond the outer pixel edges) meet the planes z = ±``half_z``: the slab points any
    measured ray reaches lie within them (the preimage of the detector rectangle in a slab is the convex hull of
    those 8 points per view). ±inf on an axis where a corner ray runs parallel to the planes or behind a cone
    source (then the sample box bounds it)."""
    vec = np.asarray(geometry.vectors(), dtype=float)
    f, d, u, v = frame.split_vectors(vec)
    rows, cols = geometry.det_shape
    rr = np.array([-0.5 - margin, rows - 0.5 + margin]) - (rows - 1) / 2
    cc = np.array([-0.5 - margin, cols - 0.5 + margin]) - (cols - 1) / 2
    corners = np.stack([d + r * v + c * u for r in rr for c in cc], axis=1)         # (n, 4, 3)
    if geometry.beam == "cone":
        origin, direction = np.broadcast_to(f[:, None], corners.shape), corners - f[:, None]
    else:
        origin, direction = corners, np.broadcast_to(f[:, None], corners.shape)
    points = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for z0 in (-half_z, half_z):
            t = (z0 - origin[..., 2]) / direction[..., 2]
            ok = np.isfinite(t) & (np.abs(direction[..., 2]) > 1e-9 * np.linalg.norm(direction, axis=-1))
            if geometry.beam == "cone":
                ok &= t > 0
            if not np.all(ok):
                return np.array([[-np.inf, np.inf], [-np.inf, np.inf]])
            points.append(origin[..., :2] + t[..., None] * direction[..., :2])
    pts = np.concatenate(points, axis=1).reshape(-1, 2)
    return np.stack([pts.min(axis=0), pts.max(axis=0)], axis=-1)


def _extra_voxels(first: float, last: float, step: float, lo: float, hi: float) -> tuple[int, int]:
    """Voxels to add below ``first`` and above ``last`` (centres, mm; spacing ``step``) so that every voxel
    overlapping [lo, hi] mm is covered (0 where the grid already reaches)."""
    below = (first - lo) / step + 0.5 if np.isfinite(lo) else 0.0
    above = (hi - last) / step + 0.5 if np.isfinite(hi) else 0.0
    return max(0, math.ceil(below - 1e-6) - 1), max(0, math.ceil(above - 1e-6) - 1)


def measured_support(geometry: Geometry, grid: VolumeGrid, sample_size, peak_volumes: int = 5,
                     job: str = "iterative reconstruction") -> Support:
    """The voxels a truncated scan of the sample box ``sample_size`` = (z, y, x) mm (centred on the origin)
    measures, on ``grid`` enlarged by whole voxels (same voxel size and alignment, ``grid`` an exact sub-block).

    A voxel is in the support when it overlaps the box (thickness |z| ≤ z/2 and laterally |x| ≤ x/2, |y| ≤ y/2)
    and its centre projects within half a voxel's footprint (pixels) of the detector in at least one view
    (:func:`lamino.geometry.frame.measured_fraction` > 0), i.e. some measured ray crosses it. The candidate region is
    first bounded by the detector's corner rays met with the slab's top and bottom planes
    (:func:`_corner_rays_bounds`). Every ray of the data crosses only support voxels, so an iterative solver on
    the support explains truncated rows completely. Results are cached per (geometry, grid, sample_size); the
    mask is read-only.

    Raises a one-line ValueError for a bad ``sample_size``, for a ``grid`` with no voxel in the support, and
    (:func:`lamino.resources.check_memory`) when the support grid with ``peak_volumes`` float32 volumes plus 5
    projection sets would not fit in memory.
    """
    size = check_sample_size(sample_size)
    return _measured_support(geometry, grid, tuple(float(v) for v in size), int(peak_volumes), str(job))


@functools.lru_cache(maxsize=8)
def _measured_support(geometry: Geometry, grid: VolumeGrid, sample_size, peak_volumes: int, job: str) -> Support:
    """:func:`measured_support` for a checked ``sample_size`` tuple (cached)."""
    size = np.asarray(sample_size, dtype=float)
    half = size / 2.0                                                     # (z, y, x)
    vs = np.asarray(grid.voxel_size)
    pixel = float(min(geometry.det_spacing)) / float(geometry.magnification)
    margin = 0.5 * float(np.linalg.norm(vs)) / pixel                       # half a voxel's footprint, pixels
    bounds = _corner_rays_bounds(geometry, half[0] + vs[0] / 2, margin)
    lo = [-half[0], max(-half[1], bounds[1, 0]), max(-half[2], bounds[0, 0])]
    hi = [half[0], min(half[1], bounds[1, 1]), min(half[2], bounds[0, 1])]
    pads = [_extra_voxels(grid.axis(k)[0], grid.axis(k)[-1], vs[k], lo[k], hi[k]) for k in range(3)]
    cand = _enlarged(grid, pads)
    proj = geometry.n_views * geometry.det_shape[0] * geometry.det_shape[1]
    check_memory(FLOAT32 * (5 * proj + peak_volumes * int(np.prod(cand.shape))),
                 f"{job} on the measured support of the sample ({size.tolist()} mm), a "
                 f"{'×'.join(map(str, cand.shape))} grid", "give a smaller sample_size or a coarser grid")
    inside = []
    for k in range(3):
        c = cand.axis(k)
        inside.append(np.abs(c) < half[k] + vs[k] / 2 - 1e-6 * vs[k])      # voxel overlaps the box
    box = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
    # some view has the centre within ``margin`` pixels outside the detector's edge (a negative inner margin)
    mask = box & (frame.measured_fraction(geometry.vectors(), geometry.beam, geometry.det_shape, cand, -margin) > 0)
    # shrink to the support's bounding box together with the requested grid
    req = [slice(pads[k][0], pads[k][0] + grid.shape[k]) for k in range(3)]
    if not mask[tuple(req)].any():
        raise ValueError(f"grid={grid!r} is not allowed: none of its voxels lies in the measured part of the "
                         f"sample ({size.tolist()} mm); centre the grid on what the detector sees")
    keep = []
    for k in range(3):
        axes = tuple(a for a in range(3) if a != k)
        used = np.flatnonzero(mask.any(axis=axes))
        keep.append(slice(min(used[0], req[k].start), max(used[-1] + 1, req[k].stop)))
    mask = np.ascontiguousarray(mask[tuple(keep)])
    mask.flags.writeable = False
    pads = [(int(req[k].start - keep[k].start), int(keep[k].stop - req[k].stop)) for k in range(3)]
    support_grid = _enlarged(grid, pads)
    crop = tuple(slice(int(p[0]), int(p[0]) + n) for p, n in zip(pads, grid.shape, strict=True))
    return Support(support_grid, mask, crop, grid)


def _enlarged(grid: VolumeGrid, pads) -> VolumeGrid:
    """``grid`` with (below, above) voxels added along each axis, same voxel size and alignment."""
    shape = tuple(n + a + b for n, (a, b) in zip(grid.shape, pads, strict=True))
    center = tuple(c + (b - a) * s / 2 for c, (a, b), s in zip(grid.center, pads, grid.voxel_size, strict=True))
    return VolumeGrid(shape, grid.voxel_size, center)

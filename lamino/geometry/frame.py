"""The detector frame: pixel centres, pixel rays and the projection of points onto the detector.

Every part of lamino that needs to know where a detector pixel is, or where a point lands on the detector,
calls this module (projector, CL-FBP, FDK, the scanner's obliquity, the exact ray tracer, the mesh projector,
the field of view). A view is one ASTRA 12-vector in the sample frame (mm), ``(f, d, u, v)``:

- ``f``: the source position (cone beam) or the ray direction (parallel beam);
- ``d``: the detector centre; ``u``, ``v``: the column and row pixel steps (mm per pixel).

Pixel (r, c) of a (rows, cols) detector has centre (design.md)::

    P(r, c) = d + (c − (cols − 1)/2)·u + (r − (rows − 1)/2)·v

and its ray runs from the source through P (cone) or through P along f (parallel). A point p projects where
its ray meets the detector plane (normal n = u × v)::

    cone:      h = f + λ (p − f),   λ = ((d − f)·n) / ((p − f)·n)   (λ > 0: in front of the source)
    parallel:  h = p + λ f,         λ = ((d − p)·n) / (f·n)

and h − d = a·u + b·v is solved with the dual basis of (u, v) (which need not be orthogonal):
a = ((h−d)·u |v|² − (h−d)·v (u·v)) / D, b = ((h−d)·v |u|² − (h−d)·u (u·v)) / D, D = |u|²|v|² − (u·v)²;
the fractional pixel index is (row, col) = (b + (rows − 1)/2, a + (cols − 1)/2).

Functions take an array module ``xp`` (numpy or jax.numpy) where they serve both host and compiled code.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def split_vectors(vectors):
    """(f, d, u, v), each (..., 3), of 12-vectors (..., 12)."""
    return tuple(vectors[..., i:i + 3] for i in (0, 3, 6, 9))


def pixel_offsets(det_shape: tuple[int, int], xp=np, dtype: Any = None):
    """Row and column offsets of the pixel centres from the detector centre, in pixels: (rows,), (cols,)."""
    rows, cols = det_shape
    r = xp.arange(rows, dtype=dtype) - (rows - 1) / 2
    c = xp.arange(cols, dtype=dtype) - (cols - 1) / 2
    return r, c


def pixel_index(a, b, det_shape: tuple[int, int]):
    """Fractional (row, col) pixel indices of detector-plane offsets a (along u) and b (along v), in pixels."""
    rows, cols = det_shape
    return b + (rows - 1) / 2, a + (cols - 1) / 2


def pixel_centres(vectors, det_shape: tuple[int, int], xp=np, dtype: Any = None):
    """Pixel centres (..., rows, cols, 3) of views (..., 12), in the frame of the vectors (mm)."""
    _, d, u, v = split_vectors(vectors)
    return detector_pixels(d, u, v, det_shape, xp, dtype)


def detector_pixels(d, u, v, det_shape: tuple[int, int], xp=np, dtype: Any = None):
    """Pixel centres (..., rows, cols, 3) of a detector with centre ``d`` and pixel steps ``u``, ``v`` (..., 3)."""
    r, c = pixel_offsets(det_shape, xp, dtype)
    ex = (Ellipsis, None, None, slice(None))
    return d[ex] + c[None, :, None] * u[ex] + r[:, None, None] * v[ex]


def pixel_rays(vectors, det_shape: tuple[int, int], beam: str, xp=np, dtype: Any = None):
    """Per-pixel ray origins and directions (..., rows, cols, 3) each: cone beam from the source towards the
    pixel (direction P − f, not normalised), parallel beam from the pixel along f."""
    pix = pixel_centres(vectors, det_shape, xp, dtype)
    first = vectors[..., None, None, 0:3]
    if beam == "cone":
        return xp.broadcast_to(first, pix.shape), pix - first
    return pix, xp.broadcast_to(first, pix.shape)


def plane_coordinates(rel, u, v, xp=np):
    """Offsets (a, b) in pixels along u and v of detector-plane vectors ``rel`` = a·u + b·v (dual basis).

    ``rel`` (..., 3); ``u``, ``v`` broadcast against it."""
    uu, vv, uv = xp.sum(u * u, -1), xp.sum(v * v, -1), xp.sum(u * v, -1)
    return dual_solve(xp.sum(rel * u, -1), xp.sum(rel * v, -1), uu, vv, uv)


def dual_solve(ru, rv, uu, vv, uv):
    """(a, b) with rel = a·u + b·v from the dot products ru = rel·u, rv = rel·v, uu = u·u, vv = v·v, uv = u·v."""
    det = uu * vv - uv * uv
    return (ru * vv - rv * uv) / det, (rv * uu - ru * uv) / det


def detector_hits(points, vectors, beam: str, xp=np):
    """Where the rays through ``points`` (..., 3) meet the detector planes of ``vectors`` (broadcast, (..., 12)),
    relative to the detector centre (mm), and the ray parameter λ (cone: λ > 0 in front of the source)."""
    f, d, u, v = split_vectors(vectors)
    normal = xp.cross(u, v)
    if beam == "cone":
        ray = points - f
        lam = xp.sum((d - f) * normal, -1) / xp.sum(ray * normal, -1)
        return f + lam[..., None] * ray - d, lam
    lam = xp.sum((d - points) * normal, -1) / xp.sum(f * normal, -1)
    return points + lam[..., None] * f - d, lam


def project_points(points, vectors, beam: str, det_shape: tuple[int, int]) -> np.ndarray:
    """Fractional (row, col) of sample-frame ``points`` (n_points, 3) in every view (n_views, 12):
    (n_views, n_points, 2). Row/column 0 is the first pixel's centre; points behind a cone source give NaN."""
    vec = np.asarray(vectors, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel, lam = detector_hits(pts[None], vec[:, None, :], beam)
        if beam == "cone":
            rel = np.where((lam > 0)[..., None], rel, np.nan)
        a, b = plane_coordinates(rel, vec[:, None, 6:9], vec[:, None, 9:12])
    row, col = pixel_index(a, b, det_shape)
    return np.stack([row, col], axis=-1)


def field_of_view(vectors, beam: str, det_shape: tuple[int, int], grid, margin: float = 1.0) -> np.ndarray:
    """Voxels (nz, ny, nx) bool of ``grid`` whose centres project at least ``margin`` pixels inside the detector
    in every view (n_views, 12): the region a scan measures completely."""
    out = np.empty(grid.shape, bool)
    for k, inside in _slices_inside(vectors, beam, det_shape, grid, margin, 0.0):
        out[k] = np.all(inside > 0.5, axis=0)
    return out


def measured_fraction(vectors, beam: str, det_shape: tuple[int, int], grid, margin: float = 0.5,
                      taper: float = 0.0, weights=None) -> np.ndarray:
    """Fraction (nz, ny, nx) float32 of the views (n_views, 12) in which each voxel centre of ``grid`` projects at
    least ``margin`` pixels inside the detector, each view counted with ``weights`` (default equal).

    With ``taper`` > 0 pixels a view counts as the detector window of :func:`detector_window` at the point's
    projection instead of 0 or 1: the fraction then varies smoothly where voxels leave the detector."""
    w = np.ones(len(np.asarray(vectors)), float) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    out = np.empty(grid.shape, np.float32)
    for k, inside in _slices_inside(vectors, beam, det_shape, grid, margin, taper):
        out[k] = np.tensordot(w, inside, axes=1)
    return out


def detector_window(row, col, det_shape: tuple[int, int], margin: float = 0.5, taper: float = 0.0, xp=np):
    """Weight of the fractional detector position (row, col): 1 more than ``margin`` + ``taper`` pixels inside the
    detector's outer edge, 0 less than ``margin`` inside, a smooth step (3s² − 2s³) over the ``taper`` between;
    with ``taper`` = 0 the indicator of the inner region. NaN positions weigh 0."""
    rows, cols = det_shape

    def step(distance):                                     # distance (pixels) inside the outer edge
        if taper <= 0:
            return xp.where(distance >= margin, 1.0, 0.0)
        s = xp.clip((distance - margin) / taper, 0.0, 1.0)
        return s * s * (3.0 - 2.0 * s)

    dr = xp.minimum(row + 0.5, rows - 0.5 - row)
    dc = xp.minimum(col + 0.5, cols - 0.5 - col)
    out = step(xp.nan_to_num(dr, nan=-1.0)) * step(xp.nan_to_num(dc, nan=-1.0))
    return out


def _slices_inside(vectors, beam: str, det_shape: tuple[int, int], grid, margin: float, taper: float):
    """For each z slice k of ``grid``: (k, window (n_views, ny, nx) float64) of :func:`detector_window` at the
    projections of the slice's voxel centres.

    The projection of :func:`project_points`, written per view as a ratio of linear forms of the point
    (detector coordinate = c₀ + λ·(linear form), λ the ray parameter) and evaluated slice by slice, so that
    no (views × voxels × 3) array is made."""
    vec = np.asarray(vectors, dtype=float)
    first, d, u, v = split_vectors(vec)
    normal = np.cross(u, v)
    uu, vv, uv = np.sum(u * u, 1), np.sum(v * v, 1), np.sum(u * v, 1)
    det = uu * vv - uv * uv
    dual_u = (vv[:, None] * u - uv[:, None] * v) / det[:, None]      # rel · dual_u = column offset
    dual_v = (uu[:, None] * v - uv[:, None] * u) / det[:, None]      # rel · dual_v = row offset
    z, y, x = (grid.axis(k) for k in range(3))

    def form(w, z_k, const):                                   # w · (x, y, z_k) + const on the (ny, nx) grid
        return (w[:, 0, None, None] * x[None, None, :] + w[:, 1, None, None] * y[None, :, None]
                + (w[:, 2] * z_k + const)[:, None, None])

    # per-view constants: cone  a = a0 + λ·(dual_u·p + au), λ = lam_num / (n·p + n0);
    #                     parallel  a = dual_u·p + au + λ·ru, λ = (lam_num − n·p) / rn   (likewise b)
    cone = beam == "cone"
    rn = np.sum(first * normal, 1)
    if cone:
        lam_num, n0 = np.sum((d - first) * normal, 1), -rn
        a0, b0 = np.sum((first - d) * dual_u, 1), np.sum((first - d) * dual_v, 1)
        au, bv = -np.sum(first * dual_u, 1), -np.sum(first * dual_v, 1)
    else:
        lam_num = np.sum(d * normal, 1)
        au, bv = -np.sum(d * dual_u, 1), -np.sum(d * dual_v, 1)
        ru, rv = np.sum(first * dual_u, 1), np.sum(first * dual_v, 1)
    col3 = (slice(None), None, None)
    for k, z_k in enumerate(z):
        with np.errstate(divide="ignore", invalid="ignore"):
            if cone:
                lam = lam_num[col3] / form(normal, z_k, n0)
                a = a0[col3] + lam * form(dual_u, z_k, au)
                b = b0[col3] + lam * form(dual_v, z_k, bv)
                a, b = np.where(lam > 0, a, np.nan), np.where(lam > 0, b, np.nan)
            else:
                lam = (lam_num[col3] - form(normal, z_k, 0.0)) / rn[col3]
                a = form(dual_u, z_k, au) + lam * ru[col3]
                b = form(dual_v, z_k, bv) + lam * rv[col3]
            row, col = pixel_index(a, b, det_shape)
            yield k, detector_window(row, col, det_shape, margin, taper)

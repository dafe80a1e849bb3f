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

import functools
from typing import Any

import jax
import jax.numpy as jnp
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
    n = len(np.asarray(vectors))
    return _views_inside(vectors, beam, det_shape, grid, margin, 0.0, np.ones(n)) > n - 0.5


def measured_fraction(vectors, beam: str, det_shape: tuple[int, int], grid, margin: float = 0.5,
                      taper: float = 0.0, weights=None, step: int = 1) -> np.ndarray:
    """Fraction (nz, ny, nx) float32 of the views (n_views, 12) in which each voxel centre of ``grid`` projects at
    least ``margin`` pixels inside the detector, each view counted with ``weights`` (default equal).

    With ``taper`` > 0 pixels a view counts as the detector window of :func:`detector_window` at the point's
    projection instead of 0 or 1: the fraction then varies smoothly where voxels leave the detector.
    ``step`` > 1 evaluates it every ``step`` voxels along each axis and interpolates trilinearly (the fraction
    is smooth; cost views × voxels / step³)."""
    w = np.ones(len(np.asarray(vectors)), float) if weights is None else np.asarray(weights, float)
    step = max(1, int(step))
    coarse = grid if step == 1 else coarse_grid(grid, step)
    # equal weights count views exactly in float32; the division is in float64, so "every view" is exactly 1
    out = np.clip(_views_inside(vectors, beam, det_shape, coarse, margin, taper, w / w.max()) / (w.sum() / w.max()),
                  0.0, 1.0).astype(np.float32)
    if step == 1:
        return out
    for axis, n in enumerate(grid.shape):                   # trilinear: one linear interpolation per axis
        out = np.moveaxis(np.tensordot(_linear_weights(n, out.shape[axis], step), out, axes=(1, axis)), 0, axis)
    return out.astype(np.float32)


def _linear_weights(n: int, n_coarse: int, step: int) -> np.ndarray:
    """(n, n_coarse) weights that interpolate samples at 0, step, 2·step, … linearly onto 0 … n − 1 (constant
    beyond the last sample)."""
    pos = np.minimum(np.arange(n) / step, n_coarse - 1)
    lo = np.minimum(np.floor(pos).astype(int), max(n_coarse - 2, 0))
    frac = pos - lo
    w = np.zeros((n, n_coarse))
    w[np.arange(n), lo] = 1.0 - frac
    if n_coarse > 1:
        w[np.arange(n), lo + 1] += frac
    return w


def coarse_grid(grid, step: int):
    """The grid of every ``step``-th voxel centre of ``grid`` (the same first centre), ceil(n / step) per axis."""
    from lamino.geometry.grid import VolumeGrid  # grid.py needs the geometry package loaded first

    shape = tuple(-(-n // step) for n in grid.shape)
    first = np.array([grid.axis(k)[0] for k in range(3)])
    size = np.asarray(grid.voxel_size, float) * step
    return VolumeGrid(shape, tuple(size), tuple(first + (np.asarray(shape) - 1) * size / 2))


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
    out = step(xp.nan_to_num(dr, nan=-1e30)) * step(xp.nan_to_num(dc, nan=-1e30))
    return out


_CHUNK = 1 << 22          # (view, point) pairs evaluated at once by _views_inside


def projection_matrices(vectors, beam: str, det_shape: tuple[int, int]) -> np.ndarray:
    """Per view the 3 × 4 matrix M (float64, (n_views, 3, 4)) with (col, row) = (m₀·p̃, m₁·p̃) / (m₂·p̃) for a
    point p̃ = (x, y, z, 1) (fractional pixel indices of :func:`project_points`; cone: m₂·p̃ > 0 in front of the
    source). From the projection in the module docstring with the dual basis (a = (h − d)·u*, b = (h − d)·v*):

        cone:      a·(n·(p − f)) = ((f − d)·u*)·(n·(p − f)) + ((d − f)·n)·(u*·(p − f))
        parallel:  a = u*·(p − d) + ((d − p)·n)·(f·u*) / (f·n)

    both linear in p over a denominator, n·(p − f) (cone) or 1 (parallel)."""
    vec = np.asarray(vectors, dtype=float)
    f, d, u, v = split_vectors(vec)
    normal = np.cross(u, v)
    uu, vv, uv = np.sum(u * u, 1), np.sum(v * v, 1), np.sum(u * v, 1)
    det = (uu * vv - uv * uv)[:, None]
    dual = [(vv[:, None] * u - uv[:, None] * v) / det, (uu[:, None] * v - uv[:, None] * u) / det]   # u*, v*
    offset = [(det_shape[1] - 1) / 2, (det_shape[0] - 1) / 2]
    m = np.zeros((len(vec), 3, 4))
    if beam == "cone":
        k = np.sum((d - f) * normal, 1)[:, None]                    # (d − f)·n: λ = k / (n·(p − f))
        sign = np.where(k < 0, -1.0, 1.0)
        m[:, 2, :3], m[:, 2, 3] = normal, -np.sum(normal * f, 1)
        for i, w in enumerate(dual):
            c0 = np.sum((f - d) * w, 1)[:, None]
            m[:, i, :3] = c0 * normal + k * w + offset[i] * normal
            m[:, i, 3] = (-c0 * np.sum(normal * f, 1, keepdims=True) - k * np.sum(w * f, 1, keepdims=True)
                          - offset[i] * np.sum(normal * f, 1, keepdims=True))[:, 0]
        m *= sign[:, :, None]
    else:
        fn = np.sum(f * normal, 1)[:, None]
        for i, w in enumerate(dual):
            fw = np.sum(f * w, 1)[:, None]
            m[:, i, :3] = w - normal * fw / fn
            m[:, i, 3] = (-np.sum(d * w, 1)[:, None] + np.sum(d * normal, 1)[:, None] * fw / fn + offset[i])[:, 0]
        m[:, 2, 3] = 1.0
    return m


def _views_inside(vectors, beam: str, det_shape: tuple[int, int], grid, margin: float, taper: float,
                  weights: np.ndarray) -> np.ndarray:
    """Σ_i weights_i · :func:`detector_window` at the projection of each voxel centre of ``grid`` in view i:
    (nz, ny, nx) float32. Jitted (float32, points relative to the grid centre), in chunks of points so that no
    (views × voxels) array is made."""
    centre = np.asarray(grid.center, float)[::-1]                   # (x, y, z)
    m = projection_matrices(vectors, beam, det_shape)
    m[:, :, 3] += m[:, :, :3] @ centre                               # p = centre + q
    z, y, x = np.meshgrid(*[grid.axis(k) for k in range(3)], indexing="ij")
    points = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1) - centre
    size = max(1, min(len(points), _CHUNK // max(1, len(m))))
    pad = (-len(points)) % size
    points = np.concatenate([points, np.zeros((pad, 3))]) if pad else points
    args = (jnp.asarray(m, jnp.float32), jnp.asarray(weights, jnp.float32))
    out = [_window_sum(jnp.asarray(points[i:i + size], jnp.float32), *args, tuple(det_shape), float(margin),
                       float(taper), beam == "cone") for i in range(0, len(points), size)]
    return np.asarray(jnp.concatenate(out))[:int(np.prod(grid.shape))].reshape(grid.shape)


@functools.partial(jax.jit, static_argnames=("det_shape", "margin", "taper", "cone"))
def _window_sum(points, matrices, weights, det_shape: tuple[int, int], margin: float, taper: float, cone: bool):
    """Σ_i weights_i · W(projection of each of ``points`` (P, 3) by ``matrices`` (n, 3, 4)): (P,) float32."""
    hom = jnp.concatenate([points, jnp.ones((points.shape[0], 1), points.dtype)], axis=1)      # (P, 4)
    full = jax.lax.Precision.HIGHEST                          # no TF32 on GPUs: pixel indices need float32
    num = jnp.einsum("nij,pj->nip", matrices, hom, precision=full)                            # (n, 3, P)
    col, row = num[:, 0] / num[:, 2], num[:, 1] / num[:, 2]
    if cone:
        row = jnp.where(num[:, 2] > 0, row, jnp.nan)
    return jnp.matmul(weights, detector_window(row, col, det_shape, margin, taper, jnp), precision=full)

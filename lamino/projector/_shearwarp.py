"""Per-view shear-warp kernels (JAX, float32): slice → intermediate plane, plane → detector, and back.

Forward model (Joseph-type line integral, bilinear in each slice): for a ray hitting slice s at fractional
slice index (i_a, i_b),

    p(ray) = L(ray) · Σ_s  bilinear(slice_s, i_a, i_b),     L = s_c · |r| / |r_c|   (mm per slice step)

where r is the ray direction. Parallel beam: i = plane index − P + t_s, a per-slice constant shift
t_s = (d_a/d_c)(s_c/s_a)(s − (n_c−1)/2), so a slice is added to the plane with four constant weights and no
gather. Cone beam: i = λ_s·(plane index − P) + κ0_s (shift and zoom, separable gathers). The plane is then
sampled bilinearly at each detector ray (the warp).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from lamino.geometry import frame
from lamino.projector import _native
from lamino.projector._plan import STACK_AXES, StackPlan, cone_slice_maps


# ---------------------------------------------------------------------------------------------- slice access
# The slices of stack k are read from (and accumulated into) an array in the volume's own layout wherever
# possible, so no transposed copy of the volume is made: k = 0 reads vol[s], k = 1 reads vol[:, s, :]
# (contiguous rows), and only k = 2 needs the volume with its last two axes swapped, (nz, nx, ny), read at
# [:, s, :]. Each slice comes out as (n_a, n_b) in the order of ``STACK_AXES``.
def slice_source(vol, k: int):
    """The array that stack k's slices are read from: the volume, or for k = 2 its (nz, nx, ny) copy."""
    return jnp.swapaxes(vol, 1, 2) if k == 2 else vol


def volume_from_source(src, k: int):
    """Inverse of :func:`slice_source`: a (nz, ny, nx) volume."""
    return jnp.swapaxes(src, 1, 2) if k == 2 else src


def _slice_axis(k: int) -> int:
    return 0 if k == 0 else 1


def read_slice(src, s, k: int):
    """Slice ``s`` (n_a, n_b) of stack k from its source array."""
    return lax.dynamic_index_in_dim(src, s, axis=_slice_axis(k), keepdims=False)


def add_to_slice(acc, sl, s, k: int):
    """acc's slice ``s`` of stack k += ``sl`` (n_a, n_b), in place inside loops."""
    axis = _slice_axis(k)
    start = (0, 0, 0)[:axis] + (s,) + (0, 0, 0)[axis + 1:]
    return add_at(acc, jnp.expand_dims(sl, axis), start)


# ---------------------------------------------------------------------------------------------- view set-up
def view_frame(vec: jnp.ndarray, st: StackPlan, beam: str):
    """Source/ray, detector centre, u and v of one view in the stack's (c, a, b) coordinates (mm)."""
    c, a, b = STACK_AXES[st.k]
    order = jnp.array([2 - c, 2 - a, 2 - b])          # (x, y, z) → (c, a, b)
    return tuple(vec[i:i + 3][order] for i in (0, 3, 6, 9))


def plane_index(pos_a, pos_b, st: StackPlan):
    """Intermediate-plane fractional indices of points on the central plane (mm)."""
    ia = (pos_a - st.ctr[1]) / st.s[1] + (st.n[1] - 1) / 2 + st.pad[0]
    ib = (pos_b - st.ctr[2]) / st.s[2] + (st.n[2] - 1) / 2 + st.pad[1]
    return ia, ib


def detector_to_plane(vec, st: StackPlan, beam: str, det_shape):
    """Where each detector ray crosses the central plane, as plane indices, and its step length L (mm)."""
    src, det, u, v = view_frame(vec, st, beam)
    pix = frame.detector_pixels(det, u, v, det_shape, jnp, jnp.float32)
    ray = pix - src if beam == "cone" else jnp.broadcast_to(src, pix.shape)
    origin = src if beam == "cone" else pix
    mu = (st.ctr[0] - origin[..., 0]) / ray[..., 0]
    hit = origin + mu[..., None] * ray
    ia, ib = plane_index(hit[..., 1], hit[..., 2], st)
    step = st.s[0] * jnp.linalg.norm(ray, axis=-1) / jnp.abs(ray[..., 0])
    return ia, ib, step


def sample_plane(plane, ia, ib):
    """Bilinear samples of a 2-D array at fractional indices (any shape), zero outside (the warp).

    Differentiable in the array and in the indices (through the bilinear weights).
    """
    h, w = plane.shape
    flat = jnp.pad(plane, 1).reshape(-1)
    ia = jnp.clip(ia, -1.5, h + 0.5)           # far-outside points land in the zero border
    ib = jnp.clip(ib, -1.5, w + 0.5)
    a0, fa = _split(ia)
    b0, fb = _split(ib)
    out = 0.0
    for da, wa in ((0, 1 - fa), (1, fa)):
        for db, wb in ((0, 1 - fb), (1, fb)):
            idx = (jnp.clip(a0 + da + 1, 0, h + 1)) * (w + 2) + jnp.clip(b0 + db + 1, 0, w + 1)
            out = out + wa * wb * jnp.take(flat, idx, mode="clip")
    return out


def parallel_shifts(vec, st: StackPlan):
    """Per-slice shifts (t_a, t_b) in voxels for a parallel view: (n_c,) each."""
    ray, _, _, _ = view_frame(vec, st, "parallel")
    s_idx = jnp.arange(st.n[0], dtype=jnp.float32) - (st.n[0] - 1) / 2
    t_a = ray[1] / ray[0] * (st.s[0] / st.s[1]) * s_idx
    t_b = ray[2] / ray[0] * (st.s[0] / st.s[2]) * s_idx
    return t_a, t_b


def cone_maps(vec, st: StackPlan):
    """Per-slice (λ, κ_a, κ_b) of a cone view for the padded plane: slice index = λ·plane index + κ."""
    src, _, _, _ = view_frame(vec, st, "cone")
    lam, k_a, k_b = cone_slice_maps(src, st.n, st.s, st.ctr, xp=jnp)
    return lam, k_a - lam * st.pad[0], k_b - lam * st.pad[1]


# ---------------------------------------------------------------------------------------------- slice kernels
def _split(t):
    m = jnp.floor(t)
    return m.astype(jnp.int32), t - m


def _bilinear_taps(t_a, t_b, st: StackPlan):
    """Plane offsets and weights of the four bilinear taps of a parallel-beam slice shift (t_a, t_b).

    A ray at plane index a' reads slice index a' − P + t; so voxel i feeds plane index i + P − m with
    weight 1 − f and i + P − m − 1 with weight f (t = m + f, m integer), in each in-plane axis.
    """
    m_a, f_a = _split(t_a)
    m_b, f_b = _split(t_b)
    a0, b0 = st.pad[0] - m_a, st.pad[1] - m_b
    return (((a0, b0), (1 - f_a) * (1 - f_b)), ((a0, b0 - 1), (1 - f_a) * f_b),
            ((a0 - 1, b0), f_a * (1 - f_b)), ((a0 - 1, b0 - 1), f_a * f_b))


def shift_add(plane, sl, t_a, t_b, st: StackPlan):
    """Parallel beam: add a slice (n_a, n_b), shifted by (t_a, t_b) voxels with bilinear weights, to the plane."""
    for start, w in _bilinear_taps(t_a, t_b, st):
        plane = add_at(plane, w * sl, start)
    return plane


def shift_gather(plane, t_a, t_b, st: StackPlan):
    """Exact transpose of :func:`shift_add`: the slice (n_a, n_b) read back from the plane."""
    out = 0.0
    for start, w in _bilinear_taps(t_a, t_b, st):
        out = out + w * lax.dynamic_slice(plane, start, (st.n[1], st.n[2]))
    return out


def _axis_interp_rows(arr, pos, n_valid):
    """Linear interpolation of rows of ``arr`` (padded by one zero row each side) at fractional ``pos``."""
    idx, f = _split(pos)
    i0 = jnp.clip(idx + 1, 0, n_valid + 1)
    i1 = jnp.clip(idx + 2, 0, n_valid + 1)
    # indices are already in range: "clip" skips the bounds masking of the default "fill" (1.5× faster on CPU)
    rows0 = jnp.take(arr, i0, axis=0, mode="clip")
    rows1 = jnp.take(arr, i1, axis=0, mode="clip")
    return (1 - f)[:, None] * rows0 + f[:, None] * rows1


def zoom_contribution(sl, lam, k_a, k_b, st: StackPlan, region: tuple[int, int] | None = None):
    """Cone beam: the padded slice resampled on its plane footprint ``region`` (default the plan's (R_a, R_b))
    and the footprint's start."""
    region = st.region if region is None else region
    starts = []
    pos = []
    for kap, h, r in ((k_a, st.inter[0], region[0]), (k_b, st.inter[1], region[1])):
        start = jnp.clip(jnp.floor((-1 - kap) / lam).astype(jnp.int32), 0, h - r)
        starts.append(start)
        pos.append(lam * (start + jnp.arange(r, dtype=jnp.float32)) + kap)
    rows = _axis_interp_rows(sl, pos[0], st.n[1])              # (R_a, n_b + 2)
    x = _axis_interp_rows(rows.T, pos[1], st.n[2]).T          # (R_a, R_b)
    return x, tuple(starts)


def add_at(plane, x, start):
    """plane[start : start + x.shape] += x (in place inside loops)."""
    cur = lax.dynamic_slice(plane, start, x.shape)
    return lax.dynamic_update_slice(plane, cur + x, start)


def slice_params(vec, st: StackPlan, beam: str):
    """Per-slice parameters of one view, stacked along the slice axis."""
    if beam == "cone":
        return cone_maps(vec, st)
    return parallel_shifts(vec, st)


def add_slice(plane, sl, params, st: StackPlan, beam: str, region=None):
    """Add one slice's contribution to the plane (cone: ``sl`` padded by one zero each side)."""
    if beam == "cone":
        x, start = zoom_contribution(sl, *params, st, region)
        return add_at(plane, x, start)
    return shift_add(plane, sl, *params, st)


def slice_ranges(params, st: StackPlan, beam: str):
    """(count, slice index of step t, footprint) for the loops that together visit every slice once.

    Cone beam: the plane is the central slice, so λ < 1 for the slices between it and the source and λ ≥ 1
    for the others. Those shrink onto at most (n_a + 5, n_b + 5) plane pixels, so they are resampled on that
    smaller region (about a sixth less work per view). Which half faces the source depends on the view; the
    loop lengths do not, so the loops stay differentiable.
    """
    n = st.n[0]
    if beam != "cone":
        return [(n, lambda t: t, None)]
    rising = params[0][-1] >= params[0][0]          # λ grows with the slice index: the source is below
    near = n // 2                                   # slices with λ < 1
    far_region = (min(st.region[0], st.n[1] + 5), min(st.region[1], st.n[2] + 5))
    return [(near, lambda t: jnp.where(rising, t, n - near + t), st.region),
            (n - near, lambda t: jnp.where(rising, near + t, t), far_region)]


# ---------------------------------------------------------------------------------------------- per view
def forward_view(src, vec, st: StackPlan, beam: str, det_shape):
    """Line integrals (rows, cols) of one view from the slice source of its stack (:func:`slice_source`)."""
    plane = _slice_sum(src, slice_params(vec, st, beam), st, beam)
    ia, ib, step = detector_to_plane(vec, st, beam, det_shape)
    return step * sample_plane(plane, ia, ib)


def _slice_sum(src, params, st: StackPlan, beam: str):
    """The intermediate plane of one view: every slice shifted (and zoomed) onto it and summed."""
    plane = jnp.zeros(st.inter, jnp.float32)
    for count, index, region in slice_ranges(params, st, beam):
        def body(t, plane, index=index, region=region):
            s = index(t)
            sl = read_slice(src, s, st.k)
            sl = jnp.pad(sl, 1) if beam == "cone" else sl
            return add_slice(plane, sl, tuple(q[s] for q in params), st, beam, region)

        plane = lax.fori_loop(0, count, body, plane)
    return plane


def adjoint_view(src_ct, proj, vec, st: StackPlan, beam: str, det_shape):
    """Add the exact transpose of :func:`forward_view` applied to ``proj`` (rows, cols) into ``src_ct``."""
    ia, ib, step = detector_to_plane(vec, st, beam, det_shape)
    zero_plane = jnp.zeros(st.inter, jnp.float32)
    _, warp_t = jax.vjp(lambda pl: sample_plane(pl, ia, ib), zero_plane)
    (plane_ct,) = warp_t(step * proj)
    params = slice_params(vec, st, beam)
    sl0 = jnp.zeros((st.n[1] + 2, st.n[2] + 2), jnp.float32)

    def body(t, acc, index, region):
        s = index(t)
        p = tuple(q[s] for q in params)
        if beam == "cone":      # transpose of the zoom's gathers (scatter-add), by autodiff
            x, vjp, start = jax.vjp(lambda sl: zoom_contribution(sl, *p, st, region), sl0, has_aux=True)
            (sl_ct,) = vjp(lax.dynamic_slice(plane_ct, start, x.shape))
            sl_ct = sl_ct[1:-1, 1:-1]
        else:
            sl_ct = shift_gather(plane_ct, *p, st)
        return add_to_slice(acc, sl_ct, s, st.k)

    for count, index, region in slice_ranges(params, st, beam):
        src_ct = lax.fori_loop(0, count, functools.partial(body, index=index, region=region), src_ct)
    return src_ct


def plane_to_detector(vec, st: StackPlan, beam: str, det_shape, voxel_volume: float):
    """Where every intermediate-plane point projects on the detector, as (row, col) pixel indices, and the
    backprojection weight there, each (H_a, H_b).

    Each voxel takes the detector value at its projection, weighted so that on smooth data it equals the
    adjoint: w = V_voxel · |D − S|² / (|(u × v) · r̂| · |P − S|²) (parallel beam: V_voxel / |(u × v) · d̂|).
    """
    src, det, u, v = view_frame(vec, st, beam)
    normal = jnp.cross(u, v)
    ha, hb = st.inter
    # plane points P = (ctr_c, pos_a, pos_b): every dot product with P is a sum of broadcast 1-D terms
    pos_a = (jnp.arange(ha, dtype=jnp.float32)[:, None] - st.pad[0] - (st.n[1] - 1) / 2) * st.s[1] + st.ctr[1]
    pos_b = (jnp.arange(hb, dtype=jnp.float32)[None, :] - st.pad[1] - (st.n[2] - 1) / 2) * st.s[2] + st.ctr[2]

    def dot_from(origin, w):
        """(P − origin) · w on the plane grid."""
        return (st.ctr[0] - origin[0]) * w[0] + (pos_a - origin[1]) * w[1] + (pos_b - origin[2]) * w[2]

    if beam == "cone":      # ray P − S
        ray_n, ray_u, ray_v = dot_from(src, normal), dot_from(src, u), dot_from(src, v)
        ray_len = jnp.sqrt((st.ctr[0] - src[0]) ** 2 + (pos_a - src[1]) ** 2 + (pos_b - src[2]) ** 2)
    else:                   # ray direction d
        ray_n, ray_u, ray_v, ray_len = jnp.dot(src, normal), jnp.dot(src, u), jnp.dot(src, v), jnp.linalg.norm(src)
    # intersect with the detector plane, P + λ·ray, and express in pixel indices
    lam = -dot_from(det, normal) / ray_n
    ru = dot_from(det, u) + lam * ray_u
    rv = dot_from(det, v) + lam * ray_v
    row, col = frame.pixel_index(*frame.dual_solve(ru, rv, jnp.dot(u, u), jnp.dot(v, v), jnp.dot(u, v)), det_shape)
    weight = voxel_volume * ray_len / jnp.abs(ray_n)
    if beam == "cone":
        weight = weight * ((1 + lam) ** 2)          # (|D − S| / |P − S|)² with D = P + λ·(P − S)
    return row, col, weight


# The backprojection interpolates twice (detector → plane, plane → slice). Read at a fractional offset f, linear
# interpolation blurs by a tent-like kernel of variance f(1 − f), 1/6 voxel² on average over the offsets that
# the views and slices take; the single-interpolation backprojection has only the first. The plane is therefore
# prefiltered with [−k, 1 + 2k, −k] per axis, whose variance is −2k: k = 1/12 cancels the second interpolation's
# mean blur to second order (prefiltered linear interpolation: Blu, Thévenaz & Unser, IEEE TIP 13, 710, 2004).
# Measured on analytic CL data (benchmarks/sharpness.py, docs/benchmarks.md): small-blob centres within 0.2 %
# of a single-interpolation backprojection (2 % low without it), with no more noise than it, at no measurable cost.
PLANE_PREFILTER = 1.0 / 12.0


def sharpen_plane(plane, k: float = PLANE_PREFILTER):
    """``plane`` (…, H_a, H_b) filtered by [−k, 1 + 2k, −k] along each of its last two axes (zero outside).

    One 3 × 3 convolution op: written as shifted sums, XLA fuses the stencil into the plane sampling and
    computes that several times (the backprojection 30 % slower on CPU, measured; as a convolution, 2 %).
    """
    taps = jnp.array([-k, 1 + 2 * k, -k], jnp.float32)
    kernel = (taps[:, None] * taps[None, :])[None, None]              # (out, in, 3, 3)
    images = plane.reshape((-1, 1) + plane.shape[-2:])
    return lax.conv_general_dilated(images, kernel, (1, 1), ((1, 1), (1, 1))).reshape(plane.shape)


def backproject_view(src_acc, proj, vec, st: StackPlan, beam: str, det_shape, voxel_volume: float):
    """Voxel-driven backprojection of one view into an accumulator laid out as stack k's slice source: the
    detector values at the plane points (:func:`plane_to_detector`), prefiltered (:func:`sharpen_plane`), read
    back by every slice."""
    row, col, weight = plane_to_detector(vec, st, beam, det_shape, voxel_volume)
    plane = sharpen_plane(weight * sample_plane(proj, row, col))
    params = slice_params(vec, st, beam)
    if beam == "cone":
        plane = jnp.pad(plane, 1)

    def body(s, acc):
        p = tuple(q[s] for q in params)
        vals = _gather_zoom(plane, *p, st) if beam == "cone" else shift_gather(plane, *p, st)
        return add_to_slice(acc, vals, s, st.k)

    return lax.fori_loop(0, st.n[0], body, src_acc)


def _gather_zoom(plane_p, lam, k_a, k_b, st: StackPlan):
    """Voxel values of one slice read from the (one-padded) plane, cone beam, with density 1/λ²."""
    pos_a = (jnp.arange(st.n[1], dtype=jnp.float32) - k_a) / lam
    pos_b = (jnp.arange(st.n[2], dtype=jnp.float32) - k_b) / lam
    rows = _axis_interp_rows(plane_p, pos_a, st.inter[0])
    vals = _axis_interp_rows(rows.T, pos_b, st.inter[1]).T
    return vals / (lam * lam)


# ---------------------------------------------------------------------------------------------- native, batched
# Cone beam on CPU devices: the slice loops of a batch of views run in the native kernels (``_native``), which
# read (or update) the volume once per batch, and so does the sampling of the warps (their geometry stays in
# JAX). Concrete data only (no derivatives).
def _cone_params(vecs, st: StackPlan):
    """(n_views, n_c, 3) per-view, per-slice (λ, κ_a, κ_b)."""
    return jax.vmap(lambda v: jnp.stack(cone_maps(v, st), axis=1))(vecs)


def forward_views_native(src, vecs, st: StackPlan, det_shape):
    """:func:`forward_view` of cone-beam views ``vecs`` (n, 12): (n, rows, cols)."""
    planes = _native.zoom_sum(src, _cone_params(vecs, st), _slice_axis(st.k), st.inter)
    ia, ib, step = jax.vmap(lambda v: detector_to_plane(v, st, "cone", det_shape))(vecs)
    return step * _native.bilinear_sample(planes, ia, ib)


def adjoint_views_native(src_ct, projs, vecs, st: StackPlan, det_shape):
    """:func:`adjoint_view` of cone-beam views ``vecs`` (n, 12) and their ``projs`` (n, rows, cols), summed."""
    ia, ib, step = jax.vmap(lambda v: detector_to_plane(v, st, "cone", det_shape))(vecs)
    planes = _native.bilinear_scatter(step * projs, ia, ib, st.inter)
    return _native.zoom_sum_transpose(src_ct, planes, _cone_params(vecs, st), _slice_axis(st.k))


def backproject_views_native(src_acc, projs, vecs, st: StackPlan, det_shape, voxel_volume: float):
    """:func:`backproject_view` of cone-beam views ``vecs`` (n, 12) and their ``projs``, summed."""
    row, col, weight = jax.vmap(lambda v: plane_to_detector(v, st, "cone", det_shape, voxel_volume))(vecs)
    planes = sharpen_plane(weight * _native.bilinear_sample(projs, row, col))
    return _native.zoom_gather(src_acc, planes, _cone_params(vecs, st), _slice_axis(st.k))

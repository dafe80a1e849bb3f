"""Triangle-mesh solids: load STL/OBJ/PLY parts (converted to mm) and trace rays through them exactly.

:func:`load_mesh` reads a closed surface and scales it to mm; :class:`MeshShape` answers, in the mesh's own
frame (x, y, z in mm), where a line enters and leaves the solid (:meth:`MeshShape.intervals`), the length of
solid along it (:meth:`MeshShape.path_length`) and which points lie inside (:meth:`MeshShape.contains`).

Ray–triangle tests follow Möller & Trumbore (J. Graphics Tools 2(1):21–28, 1997) in the ray-aligned
edge-function form of Woop, Benthin & Wald ("Watertight ray/triangle intersection", JCGT 2(1):65–82, 2013):
the triangle's vertices are projected onto the plane normal to the ray, and the ray hits the triangle when
the three signed edge functions (the unnormalised barycentric coordinates) agree in sign. Each edge function
is evaluated with the edge's two vertices in one canonical order (lower vertex index first), so triangles
that share an edge see bit-for-bit opposite values; a ray that meets an edge or vertex exactly is assigned
by a fixed tie-break (the ray is nudged by an infinitesimal step along the first, then the second projected
axis). A line through a closed mesh therefore crosses it exactly once per sheet — no double counting
through shared edges and no leaks between triangles. The solid along a line is where the winding number
(entries, d·n < 0, minus exits, d·n > 0, counted from t = −∞) is positive, so overlapping closed shells
give their union and inward-facing inner shells give cavities.

All tracing runs in ``jax.numpy`` float32, in a frame centred on the mesh, with the ray origin first moved
to the point of the line closest to the centre (t is reported for the caller's origin).
"""

from __future__ import annotations

import math
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import trimesh
from jax import lax

__all__ = ["MeshShape", "load_mesh", "UNITS_MM"]

UNITS_MM: dict[str, float] = {"mm": 1.0, "cm": 10.0, "m": 1000.0, "um": 1e-3, "in": 25.4}
"""Length of one file unit in mm, for :func:`load_mesh`."""


# ---------------------------------------------------------------------------------------------- loading


def load_mesh(path_or_mesh, units: str = "mm", scale: float | None = None) -> trimesh.Trimesh:
    """A closed, outward-oriented triangle mesh in mm.

    ``path_or_mesh``: a file ``trimesh.load`` reads (STL, OBJ, PLY, ...; scenes are concatenated into one
    mesh) or a ``trimesh.Trimesh`` (copied, never modified). ``units``: the file's length unit, one of
    ``UNITS_MM`` ("mm", "cm", "m", "um", "in"); ``scale`` (mm per file unit) overrides it. The mesh must be
    watertight; winding is made consistent and outward (positive volume) when it is not.
    """
    if units not in UNITS_MM:
        raise ValueError(f"units={units!r} is not allowed: use one of {', '.join(repr(u) for u in UNITS_MM)}")
    factor = UNITS_MM[units] if scale is None else scale
    if not (isinstance(factor, int | float | np.floating | np.integer) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale={scale!r} is not allowed: it must be a finite number > 0 (mm per file unit)")
    if isinstance(path_or_mesh, trimesh.Trimesh):
        mesh = path_or_mesh.copy()
        name = str(path_or_mesh.metadata.get("file_name", "<Trimesh>"))
        mesh.process()
    else:
        try:
            name = os.fspath(path_or_mesh)
        except TypeError:
            raise ValueError(
                f"path_or_mesh={path_or_mesh!r} is not allowed: give a mesh file path or a trimesh.Trimesh"
            ) from None
        if not os.path.isfile(name):
            raise ValueError(f"mesh file {name!r} does not exist")
        try:
            mesh = trimesh.load(name, force="mesh")
        except Exception as err:  # trimesh raises many kinds of errors for unreadable files
            raise ValueError(f"mesh file {name!r} cannot be read as a triangle mesh: {err}") from err
        if isinstance(mesh, trimesh.Scene):  # pragma: no cover - force="mesh" already concatenates
            mesh = mesh.to_mesh()
        if not isinstance(mesh, trimesh.Trimesh):
            raise ValueError(f"mesh file {name!r} holds no triangle mesh (got {type(mesh).__name__})")
    mesh = _closed_outward(mesh, name, copy=False)
    if factor != 1.0:
        mesh.apply_scale(float(factor))
    return mesh


def _closed_outward(mesh: trimesh.Trimesh, name: str, copy: bool = True) -> trimesh.Trimesh:
    """``mesh`` checked to be a non-empty closed surface, oriented outward (a fixed copy where needed)."""
    if len(mesh.faces) == 0 or len(mesh.vertices) == 0:
        raise ValueError(f"mesh '{name}' is empty: it has no triangles")
    if not mesh.is_watertight:
        raise ValueError(
            f"mesh '{name}' is not watertight (it has open edges, so inside and outside are undefined): "
            "repair it (e.g. trimesh.repair.fill_holes) or export a closed solid"
        )
    if not mesh.is_winding_consistent:
        mesh = mesh.copy() if copy else mesh
        mesh.fix_normals(multibody=True)
    if mesh.volume < 0:
        mesh = mesh.copy() if copy else mesh
        mesh.invert()
    if not mesh.volume > 0:
        raise ValueError(f"mesh '{name}' encloses no volume (volume {mesh.volume:g})")
    return mesh


# ------------------------------------------------------------------------------------------ the kernels


def _edge_sign(px, py, qx, qy, sigma):
    """Signed edge function σ·(P × Q) of the projected ray point (origin) and its tie-broken sign.

    P, Q: the edge's endpoints in canonical order; σ = ±1 restores the triangle's own edge direction. When
    P × Q is exactly 0 the sign is that after nudging the ray point by +ε along the first projected axis,
    then along the second: sign(Py − Qy), else sign(Qx − Px). Exact, and antisymmetric between two triangles
    sharing the edge, so one of them (or, at a silhouette, both or neither) claims the ray.
    """
    e = sigma * (px * qy - py * qx)
    tie = jnp.where(py != qy, jnp.sign(py - qy), jnp.sign(qx - px))
    return e, jnp.where(e != 0, jnp.sign(e), sigma * tie)


def _hits(ax, ay, az, bx, by, bz, cx, cy, cz, fu, fv, fw, su, sv, sw):
    """Crossings of the ray (projected to the origin, along +z') with projected triangles (any shapes).

    Vertices A, B, C projected into the ray frame (x', y' normal to the ray, z' = t). ``fu`` (bool): edge BC
    is stored reversed (vertex index of B > that of C), ``su`` = −1 then, else +1; likewise CA (fv), AB (fw).
    Returns (hit, sign, t): sign = +1 where the ray leaves the solid (d·n > 0), −1 where it enters.
    """
    u, gu = _edge_sign(*_order(bx, by, cx, cy, fu), su)
    v, gv = _edge_sign(*_order(cx, cy, ax, ay, fv), sv)
    w, gw = _edge_sign(*_order(ax, ay, bx, by, fw), sw)
    hit = (gu == gv) & (gv == gw) & (gu != 0)
    det = u + v + w
    det_safe = jnp.where(hit, det, 1.0)
    t = (u * az + v * bz + w * cz) / det_safe
    return hit, gu, t


def _order(px, py, qx, qy, flip):
    """Endpoints (P, Q) of an edge in canonical order: swapped where ``flip``."""
    return (jnp.where(flip, qx, px), jnp.where(flip, qy, py), jnp.where(flip, px, qx), jnp.where(flip, py, qy))


def _ray_frames(o, d):
    """Per ray: origin moved next to the mesh centre, the shift t_c, |d|, and the frame (e1, e2, d/|d|²).

    o, d: (R, 3) float32 in the centred mesh frame. The point o + t_c·d is the closest to the centre, so
    t = t_c + t' with t' measured from it. Zero directions are replaced by +z and flagged ``valid = False``.
    """
    dd = jnp.sum(d * d, axis=-1)
    valid = dd > 0
    d = jnp.where(valid[:, None], d, jnp.array([0.0, 0.0, 1.0], d.dtype))
    dd = jnp.where(valid, dd, 1.0)
    norm = jnp.sqrt(dd)
    t_c = -jnp.sum(o * d, axis=-1) / dd
    o_near = o + t_c[:, None] * d
    dhat = d / norm[:, None]
    axis = jnp.argmin(jnp.abs(dhat), axis=-1)
    a = jax.nn.one_hot(axis, 3, dtype=d.dtype)
    e1 = jnp.cross(dhat, a)
    e1 = e1 / jnp.linalg.norm(e1, axis=-1, keepdims=True)
    e2 = jnp.cross(dhat, e1)
    return o_near, t_c, norm, e1, e2, d / dd[:, None], valid


def _chunk_hits(tri, flips, o, e1, e2, dn):
    """(hit, sign, t') of R rays × C triangles: tri (C, 3, 3), flips (C, 3) bool, per-ray frames (R, 3)."""
    coords = []
    for k in range(3):
        rel = [tri[None, :, k, j] - o[:, j, None] for j in range(3)]  # (R, C) each
        for frame in (e1, e2, dn):
            coords.append(rel[0] * frame[:, 0, None] + rel[1] * frame[:, 1, None] + rel[2] * frame[:, 2, None])
    f = [flips[None, :, j] for j in range(3)]
    s = [jnp.where(fj, -1.0, 1.0).astype(tri.dtype) for fj in f]
    return _hits(*coords, *f, *s)


def _slab(o, d, lo, hi):
    """True where the full line o + t·d meets the box [lo, hi] (o, d: (R, 3); lo, hi: (3,))."""
    safe = jnp.where(d == 0, 1.0, d)
    ta = (lo - o) / safe
    tb = (hi - o) / safe
    tmin = jnp.where(d == 0, jnp.where((o >= lo) & (o <= hi), -jnp.inf, jnp.inf), jnp.minimum(ta, tb))
    tmax = jnp.where(d == 0, jnp.where((o >= lo) & (o <= hi), jnp.inf, -jnp.inf), jnp.maximum(ta, tb))
    return jnp.max(tmin, axis=-1) <= jnp.min(tmax, axis=-1)


def _block_crossings(tris, flips, boxes, o, d, k_keep: int):
    """The ``k_keep`` smallest crossings (t', sign) of a block of R rays, sorted; +inf / 0 pad.

    tris (nc, C, 3, 3), flips (nc, C, 3), boxes (nc, 2, 3): triangles in chunks with their bounding boxes.
    Chunks whose box the block's lines all miss are skipped.
    """
    o_near, t_c, norm, e1, e2, dn, valid = _ray_frames(o, d)
    r = o.shape[0]
    init = (jnp.full((r, k_keep), jnp.inf, o.dtype), jnp.zeros((r, k_keep), o.dtype))

    def merge(carry, chunk):
        tri, flip = chunk[0], chunk[1]
        hit, sign, t = _chunk_hits(tri, flip, o_near, e1, e2, dn)
        all_t = jnp.concatenate([carry[0], jnp.where(hit, t, jnp.inf)], axis=1)
        all_s = jnp.concatenate([carry[1], jnp.where(hit, sign, 0.0)], axis=1)
        neg, idx = lax.top_k(-all_t, k_keep)
        return (-neg, jnp.take_along_axis(all_s, idx, axis=1))

    def body(carry, chunk):
        tri, flip, box = chunk
        near = jnp.any(_slab(o_near, dn, box[0], box[1]) & valid)
        return lax.cond(near, merge, lambda c, _: c, carry, (tri, flip)), None

    (t, s), _ = lax.scan(body, init, (tris, flips, boxes))
    t = jnp.where(valid[:, None], t, jnp.inf)
    s = jnp.where(valid[:, None], s, 0.0)
    return t, s, t_c, norm


def _block_counts(tris, flips, o, d):
    """Number of crossings of each full line of a block (R rays) with all triangles (diagnostic)."""
    o_near, _, _, e1, e2, dn, valid = _ray_frames(o, d)

    def body(count, chunk):
        hit, _, _ = _chunk_hits(chunk[0], chunk[1], o_near, e1, e2, dn)
        return count + jnp.sum(hit, axis=1, dtype=jnp.int32), None

    count, _ = lax.scan(body, jnp.zeros(o.shape[0], jnp.int32), (tris, flips))
    return jnp.where(valid, count, 0)


def _pair_crossings(t, s, n_int: int):
    """Intervals [t0, t1] where the winding number (entries − exits, from −∞) is positive; empty: 0, 0."""
    step = -s  # entry (sign −1) raises the winding number
    depth = jnp.cumsum(step, axis=-1)
    before = depth - step
    start = (depth > 0) & (before <= 0)
    end = (depth <= 0) & (before > 0)
    t0 = jnp.sort(jnp.where(start, t, jnp.inf), axis=-1)[..., :n_int]
    t1 = jnp.sort(jnp.where(end, t, jnp.inf), axis=-1)[..., :n_int]
    used = jnp.isfinite(t0) & jnp.isfinite(t1)
    return jnp.where(used, t0, 0.0), jnp.where(used, t1, 0.0), used


@partial(jax.jit, static_argnames=("k_keep", "n_int", "block"))
def _trace(tris, flips, boxes, center, o, d, *, k_keep: int, n_int: int, block: int):
    """Relative intervals of N rays: (t0', t1', used) (N, n_int), t_c (N,), |d| (N,)."""
    n = o.shape[0]
    pad = (-n) % block
    o = jnp.concatenate([o - center, jnp.zeros((pad, 3), o.dtype)]).reshape(-1, block, 3)
    d = jnp.concatenate([d, jnp.zeros((pad, 3), d.dtype)]).reshape(-1, block, 3)

    def one(od):
        t, s, t_c, norm = _block_crossings(tris, flips, boxes, od[0], od[1], k_keep)
        t0, t1, used = _pair_crossings(t, s, n_int)
        return t0, t1, used, t_c, norm

    t0, t1, used, t_c, norm = lax.map(one, (o, d))
    flat = lambda x: x.reshape((-1,) + x.shape[2:])[:n]  # noqa: E731
    return flat(t0), flat(t1), flat(used), flat(t_c), flat(norm)


@partial(jax.jit, static_argnames=("block",))
def _count(tris, flips, center, o, d, *, block: int):
    n = o.shape[0]
    pad = (-n) % block
    o = jnp.concatenate([o - center, jnp.zeros((pad, 3), o.dtype)]).reshape(-1, block, 3)
    d = jnp.concatenate([d, jnp.zeros((pad, 3), d.dtype)]).reshape(-1, block, 3)
    return lax.map(lambda od: _block_counts(tris, flips, od[0], od[1]), (o, d)).reshape(-1)[:n]


@partial(jax.jit, static_argnames=("block",))
def _contains(tris, flips, table, grid_lo, grid_step, grid_n, lo, hi, center, p, *, block: int):
    """Inside test of N points by the winding number of the upward vertical ray, binned triangles."""
    n = p.shape[0]
    pad = (-n) % block
    p = jnp.concatenate([p - center, jnp.zeros((pad, 3), p.dtype)]).reshape(-1, block, 3)

    def one(pts):
        ij = jnp.floor((pts[:, :2] - grid_lo) / grid_step).astype(jnp.int32)
        ij = jnp.clip(ij, 0, grid_n - 1)
        idx = table[ij[:, 0] * grid_n[1] + ij[:, 1]]  # (P, M)
        tv = tris[idx]  # (P, M, 3, 3)
        fl = flips[idx]  # (P, M, 3)
        x = [tv[..., k, 0] - pts[:, 0, None] for k in range(3)]
        y = [tv[..., k, 1] - pts[:, 1, None] for k in range(3)]
        z = [tv[..., k, 2] for k in range(3)]
        f = [fl[..., j] for j in range(3)]
        s = [jnp.where(fj, -1.0, 1.0).astype(p.dtype) for fj in f]
        hit, sign, zhit = _hits(x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2], *f, *s)
        above = hit & (zhit > pts[:, 2, None])
        winding = jnp.sum(jnp.where(above, sign, 0.0), axis=1)
        box = jnp.all((pts >= lo) & (pts <= hi), axis=1)
        return (winding > 0) & box

    return lax.map(one, p).reshape(-1)[:n]


# --------------------------------------------------------------------------------------------- the shape


class MeshShape:
    """A solid bounded by a closed triangle mesh; coordinates x, y, z in mm in the mesh's own frame.

    ``max_crossings``: the most surface crossings kept per line (``n_intervals = max_crossings // 2`` interval
    slots). ``None`` estimates it: the largest crossing count over 2048 random lines through the bounding box
    and 1536 axis-parallel lines (fixed seed), doubled, plus 2, at least 4. Lines with more crossings keep
    the nearest ones (smallest t) and lose the rest. ``tri_chunk`` triangles × ``ray_block`` rays are
    intersected at a time (memory ≈ 40 · tri_chunk · ray_block bytes).
    """

    def __init__(self, mesh: trimesh.Trimesh, max_crossings: int | None = None, *, tri_chunk: int = 2048,
                 ray_block: int = 512):
        if not isinstance(mesh, trimesh.Trimesh):
            mesh = load_mesh(mesh)
        self.mesh = _closed_outward(mesh, str(mesh.metadata.get("file_name", "<Trimesh>")))
        if int(tri_chunk) < 1 or int(ray_block) < 1:
            raise ValueError(f"tri_chunk={tri_chunk!r}, ray_block={ray_block!r} are not allowed: both must be ≥ 1")
        self._ray_block = int(ray_block)
        lo, hi = (np.asarray(b, dtype=np.float64) for b in self.mesh.bounds)
        self._lo, self._hi = lo, hi
        self._center = 0.5 * (lo + hi)
        faces = np.asarray(self.mesh.faces, dtype=np.int64)
        tri = (np.asarray(self.mesh.vertices, dtype=np.float64)[faces] - self._center).astype(np.float32)
        flips = np.stack([faces[:, 1] > faces[:, 2], faces[:, 2] > faces[:, 0], faces[:, 0] > faces[:, 1]], 1)
        order = _morton_order(tri.mean(axis=1), lo - self._center, hi - self._center)
        tri, flips = tri[order], flips[order]
        self._tri_np, self._flips_np = tri, flips
        chunk = int(min(tri_chunk, len(tri)))
        pad = (-len(tri)) % chunk
        tri_p = np.concatenate([tri, np.zeros((pad, 3, 3), np.float32)])  # degenerate: never hit
        flips_p = np.concatenate([flips, np.zeros((pad, 3), bool)])
        nc = len(tri_p) // chunk
        tri_c = tri_p.reshape(nc, chunk, 3, 3)
        margin = 1e-4 * float(np.max(hi - lo)) + 1e-6
        boxes = np.stack([tri_c.min(axis=(1, 2)) - margin, tri_c.max(axis=(1, 2)) + margin], axis=1)
        for c in range(nc):  # padding triangles sit at the origin: keep them out of the boxes
            real = tri_p.reshape(nc, chunk, 3, 3)[c][: max(0, min(chunk, len(tri) - c * chunk))]
            boxes[c] = [real.min(axis=(0, 1)) - margin, real.max(axis=(0, 1)) + margin]
        self._tris = jnp.asarray(tri_c)
        self._flips = jnp.asarray(flips_p.reshape(nc, chunk, 3))
        self._boxes = jnp.asarray(boxes.astype(np.float32))
        self._center_j = jnp.asarray(self._center, dtype=jnp.float32)
        self._bins = None
        if max_crossings is None:
            max_crossings = self._estimate_max_crossings()
        max_crossings = int(max_crossings)
        if max_crossings < 2:
            raise ValueError(f"max_crossings={max_crossings!r} is not allowed: it must be ≥ 2")
        self.max_crossings = max_crossings + (max_crossings % 2)
        self.n_intervals = self.max_crossings // 2

    # ------------------------------------------------------------------------------------------ queries

    def bounds_local(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi): the mesh's axis-aligned bounding box, x, y, z in mm."""
        return self._lo.copy(), self._hi.copy()

    def intervals(self, origins, directions) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Where the full line ``o + t·d`` (t ∈ ℝ) is inside the solid: (t0, t1), each (n_intervals, ...).

        ``origins``, ``directions``: (..., 3) in mm, broadcastable; d need not be unit length, so a slot holds
        (t1 − t0)·|d| mm of solid. Used slots come first, sorted by t0; unused slots hold t0 = t1 = 0.
        A zero direction gives no intervals. jit-compatible.
        """
        t0, t1, used, t_c, _, shape = self._run(origins, directions)
        t0 = jnp.where(used, t0 + t_c[:, None], 0.0)
        t1 = jnp.where(used, t1 + t_c[:, None], 0.0)
        return _slots_first(t0, shape), _slots_first(t1, shape)

    def path_length(self, origins, directions) -> jnp.ndarray:
        """Length (mm) of solid along each full line ``o + t·d``: Σ (t1 − t0)·|d|, shape (...)."""
        t0, t1, _, _, norm, shape = self._run(origins, directions)
        return (jnp.sum(t1 - t0, axis=-1) * norm).reshape(shape)

    def crossing_counts(self, origins, directions) -> jnp.ndarray:
        """Number of surface crossings of each full line (int32, shape (...)); compare with ``max_crossings``."""
        o, d, shape = _rays(origins, directions)
        block = _block_size(o.shape[0], self._ray_block)
        return _count(self._tris, self._flips, self._center_j, o, d, block=block).reshape(shape)

    def contains(self, points) -> jnp.ndarray:
        """True for points (..., 3) (x, y, z in mm) inside the solid; points on the surface go either way.

        Winding number of the upward vertical line from each point, testing only the triangles whose
        footprint overlaps the point's cell of an (x, y) grid built on first use. jit-compatible.
        """
        p = jnp.asarray(points, dtype=jnp.float32)
        if p.shape[-1:] != (3,):
            raise ValueError(f"points of shape {p.shape} are not allowed: the last axis must be x, y, z (3)")
        shape = p.shape[:-1]
        p = p.reshape(-1, 3)
        if self._bins is None:
            self._bins = _xy_bins(self._tri_np, self._flips_np)
        tris, flips, table, glo, gstep, gn = self._bins
        m = table.shape[1]
        block = _block_size(p.shape[0], max(256, (1 << 20) // max(m, 1)))
        lo = jnp.asarray(self._lo - self._center, jnp.float32)
        hi = jnp.asarray(self._hi - self._center, jnp.float32)
        out = _contains(tris, flips, table, glo, gstep, gn, lo, hi, self._center_j, p, block=block)
        return out.reshape(shape)

    # --------------------------------------------------------------------------------------- internals

    def _run(self, origins, directions):
        o, d, shape = _rays(origins, directions)
        block = _block_size(o.shape[0], self._ray_block)
        t0, t1, used, t_c, norm = _trace(self._tris, self._flips, self._boxes, self._center_j, o, d,
                                         k_keep=self.max_crossings, n_int=self.n_intervals, block=block)
        return t0, t1, used, t_c, norm, shape

    def _estimate_max_crossings(self) -> int:
        rng = np.random.default_rng(12345)
        lo, hi = self._lo, self._hi
        n_rand, n_axis = 2048, 512
        o = rng.uniform(lo, hi, size=(n_rand + 3 * n_axis, 3))
        d = rng.normal(size=(n_rand, 3))
        d_axis = np.repeat(np.eye(3), n_axis, axis=0)
        d = np.concatenate([d, d_axis])
        counts = np.asarray(self.crossing_counts(o, d))
        return max(4, 2 * int(counts.max()) + 2)

    def __repr__(self) -> str:
        lo, hi = self._lo, self._hi
        return (f"MeshShape({len(self.mesh.faces)} triangles, bounds x {lo[0]:g}..{hi[0]:g}, y {lo[1]:g}..{hi[1]:g}, "
                f"z {lo[2]:g}..{hi[2]:g} mm, n_intervals={self.n_intervals})")


# ------------------------------------------------------------------------------------------------ helpers


def _rays(origins, directions):
    """Origins and directions broadcast and flattened to (N, 3) float32, and the leading shape."""
    o = jnp.asarray(origins, dtype=jnp.float32)
    d = jnp.asarray(directions, dtype=jnp.float32)
    if o.shape[-1:] != (3,) or d.shape[-1:] != (3,):
        raise ValueError(f"origins {o.shape} and directions {d.shape} are not allowed: the last axis must be 3")
    shape = jnp.broadcast_shapes(o.shape, d.shape)
    o = jnp.broadcast_to(o, shape).reshape(-1, 3)
    d = jnp.broadcast_to(d, shape).reshape(-1, 3)
    return o, d, shape[:-1]


def _block_size(n: int, cap: int) -> int:
    """Rays per block: ``cap``, or the next power of two ≥ n for small calls (fewer wasted pad rays)."""
    return int(min(cap, 1 << max(0, (max(n, 1) - 1).bit_length())))


def _slots_first(t, shape):
    """(N, n_int) → (n_int, ...)."""
    return jnp.moveaxis(t, -1, 0).reshape((t.shape[-1],) + tuple(shape))


def _morton_order(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Order of points along a 3-D Morton (Z-order) curve over the box [lo, hi]: compact triangle chunks."""
    q = np.clip((points - lo) / np.maximum(hi - lo, 1e-30) * 1023, 0, 1023).astype(np.uint64)
    code = np.zeros(len(points), np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def _xy_bins(tri: np.ndarray, flips: np.ndarray, max_table: int = 1 << 24):
    """Triangles binned by their (x, y) footprint on a uniform grid, for vertical-ray inside tests.

    Returns device arrays (tris + one degenerate pad triangle, flips, table (cells, M) of triangle indices
    padded with the pad triangle, grid lo (2,), cell size (2,), cells per axis (2,)). The grid size is the
    one (of a few tried) with the fewest triangles in its fullest cell.
    """
    n = len(tri)
    xy_lo, xy_hi = tri[:, :, :2].min(axis=1), tri[:, :, :2].max(axis=1)
    glo, ghi = xy_lo.min(axis=0), xy_hi.max(axis=0)
    span = np.maximum(ghi - glo, 1e-6)
    pad = 1e-5 * float(span.max())
    best = None
    for cells in sorted({max(1, int(round(math.sqrt(n) * f))) for f in (0.25, 0.5, 1.0, 2.0)}):
        cells = min(cells, 1024)
        step = span / cells
        i0 = np.clip(np.floor((xy_lo - pad - glo) / step), 0, cells - 1).astype(np.int64)
        i1 = np.clip(np.floor((xy_hi + pad - glo) / step), 0, cells - 1).astype(np.int64)
        width = i1 - i0 + 1
        per = width[:, 0] * width[:, 1]
        tri_id = np.repeat(np.arange(n), per)
        offs = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
        wy = np.repeat(width[:, 1], per)
        cx = np.repeat(i0[:, 0], per) + offs // wy
        cy = np.repeat(i0[:, 1], per) + offs % wy
        cell = cx * cells + cy
        counts = np.bincount(cell, minlength=cells * cells)
        m = int(counts.max())
        if cells * cells * m > max_table and best is not None:
            continue
        if best is None or m < best[0]:
            best = (m, cells, step, tri_id, cell, counts)
    m, cells, step, tri_id, cell, counts = best
    order = np.argsort(cell, kind="stable")
    cell_sorted, tri_sorted = cell[order], tri_id[order]
    rank = np.arange(len(cell_sorted)) - np.repeat(np.cumsum(counts) - counts, counts)
    table = np.full((cells * cells, max(m, 1)), n, np.int32)
    table[cell_sorted, rank] = tri_sorted
    tri_pad = np.concatenate([tri, np.zeros((1, 3, 3), np.float32)])
    flips_pad = np.concatenate([flips, np.zeros((1, 3), bool)])
    return (jnp.asarray(tri_pad), jnp.asarray(flips_pad), jnp.asarray(table), jnp.asarray(glo, jnp.float32),
            jnp.asarray(step, jnp.float32), jnp.asarray([cells, cells], jnp.int32))

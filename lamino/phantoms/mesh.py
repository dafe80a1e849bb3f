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


def _crossings(v, flags):
    """Crossings of rays with triangles projected into each ray's frame (ray at x' = y' = 0, z' = t).

    v: 9 arrays (Ax', Ay', Az', Bx', ..., Cz'), flags: 4 bool arrays (edge BC, CA, AB runs from the higher to
    the lower vertex index; triangle is real), all broadcastable. Returns the crossing t, coded: its lowest
    mantissa bit is 1 where the ray leaves the solid (d·n > 0), 0 where it enters; +inf where it misses.

    Edge function k (the unnormalised barycentric coordinate of vertex k) is σ·(P × Q) with the edge's
    endpoints P, Q in canonical order (lower vertex index first) and σ = ±1, so the two triangles sharing an
    edge evaluate the same expression on the same numbers and get exactly opposite values, whatever
    multiply-add fusion the compiler does. Where P × Q is exactly 0 the sign is taken after nudging the ray
    by +ε along x', then y': sign(Py − Qy), else sign(Qx − Px) — exact, and antisymmetric too.
    """
    x, y, z = v[0::3], v[1::3], v[2::3]
    e, g = [], []
    for k in range(3):
        i, j, f = (k + 1) % 3, (k + 2) % 3, flags[k]
        px, py = jnp.where(f, x[j], x[i]), jnp.where(f, y[j], y[i])
        qx, qy = jnp.where(f, x[i], x[j]), jnp.where(f, y[i], y[j])
        sigma = jnp.where(f, -1.0, 1.0)
        ek = sigma * (px * qy - py * qx)
        tie = jnp.where(py != qy, jnp.sign(py - qy), jnp.sign(qx - px))
        e.append(ek)
        g.append(jnp.where(ek != 0, jnp.sign(ek), sigma * tie))
    hit = flags[3] & (g[0] == g[1]) & (g[1] == g[2]) & (g[0] != 0)
    t = (e[0] * z[0] + e[1] * z[1] + e[2] * z[2]) / jnp.where(hit, e[0] + e[1] + e[2], 1.0)
    bits = (lax.bitcast_convert_type(t, jnp.int32) & ~1) | (g[0] > 0).astype(jnp.int32)
    return jnp.where(hit, lax.bitcast_convert_type(bits, jnp.float32), jnp.inf)


def _decode(c):
    """Coded crossings → (t, sign): sign +1 exit, −1 entry, 0 none (t = +inf)."""
    exit_ = (lax.bitcast_convert_type(c, jnp.int32) & 1) == 1
    return c, jnp.where(jnp.isfinite(c), jnp.where(exit_, 1.0, -1.0), 0.0).astype(c.dtype)


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
    x, y, z = (d[:, k] / norm for k in range(3))  # unit direction; (e1, e2, d̂) right-handed, orthonormal
    sign = jnp.where(z >= 0, 1.0, -1.0)  # (Duff et al., "Building an orthonormal basis, revisited", JCGT 2017)
    a = -1.0 / (sign + z)
    b = x * y * a
    e1 = jnp.stack([1.0 + sign * x * x * a, sign * b, -sign * x], axis=1)
    e2 = jnp.stack([b, sign + y * y * a, -y], axis=1)  # projected area > 0 ⇔ d·n > 0
    return o_near, t_c, norm, e1, e2, d / dd[:, None], valid


def _chunk_crossings(tri, flags, o, e1, e2, dn):
    """Coded crossings (R, C) of R rays (frames (R, 3)) with a chunk of triangles (tri (9, C), flags (4, C))."""
    v = []
    for k in range(3):
        rel = [tri[3 * k + j][None, :] - o[:, j, None] for j in range(3)]
        v += [rel[0] * f[:, 0, None] + rel[1] * f[:, 1, None] + rel[2] * f[:, 2, None] for f in (e1, e2, dn)]
    return _crossings(v, [flags[i][None, :] for i in range(4)])


def _slab(o, d, lo, hi):
    """True where the full line o + t·d meets the box [lo, hi] (o, d: (R, 3); lo, hi: (3,))."""
    inside = (o >= lo) & (o <= hi)
    safe = jnp.where(d == 0, 1.0, d)
    ta, tb = (lo - o) / safe, (hi - o) / safe
    tmin = jnp.where(d == 0, jnp.where(inside, -jnp.inf, jnp.inf), jnp.minimum(ta, tb))
    tmax = jnp.where(d == 0, jnp.where(inside, jnp.inf, -jnp.inf), jnp.maximum(ta, tb))
    return jnp.max(tmin, axis=-1) <= jnp.min(tmax, axis=-1)


def _block_crossings(tris, flags, boxes, o, e1, e2, dn, valid, k_keep: int):
    """The ``k_keep`` smallest coded crossings of a block of R rays, ascending, +inf padded: (R, k_keep).

    tris (nc, 9, C), flags (nc, 4, C), boxes (nc, 2, 3): triangles in chunks with their bounding boxes.
    Chunks whose box all lines of the block miss, and chunks no line hits, cost no merge.
    """
    def merge(kept, tri, flag):
        c = _chunk_crossings(tri, flag, o, e1, e2, dn)

        def keep(kept):
            return -lax.top_k(-jnp.concatenate([kept, c], axis=1), k_keep)[0]

        return lax.cond(jnp.any(jnp.isfinite(c)), keep, lambda kept: kept, kept)

    def body(kept, chunk):
        tri, flag, box = chunk
        near = jnp.any(_slab(o, dn, box[0], box[1]) & valid)
        return lax.cond(near, merge, lambda kept, *_: kept, kept, tri, flag), None

    kept, _ = lax.scan(body, jnp.full((o.shape[0], k_keep), jnp.inf, jnp.float32), (tris, flags, boxes))
    return jnp.where(valid[:, None], kept, jnp.inf)


def _pair_crossings(t, s, n_int: int):
    """Intervals [t0, t1] where the winding number (entries − exits, from −∞) is positive; empty: 0, 0."""
    step = -s  # an entry (sign −1) raises the winding number
    depth = jnp.cumsum(step, axis=-1)
    before = depth - step
    start = (depth > 0) & (before <= 0)
    end = (depth <= 0) & (before > 0)
    t0 = jnp.sort(jnp.where(start, t, jnp.inf), axis=-1)[..., :n_int]
    t1 = jnp.sort(jnp.where(end, t, jnp.inf), axis=-1)[..., :n_int]
    used = jnp.isfinite(t0) & jnp.isfinite(t1)
    return jnp.where(used, t0, 0.0), jnp.where(used, t1, 0.0), used


def _blocks(x, block: int, fill=0.0):
    """(N, ...) → (N / block, block, ...), padded with ``fill``."""
    pad = (-x.shape[0]) % block
    x = jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], fill, x.dtype)])
    return x.reshape((-1, block) + x.shape[1:])


def _unblock(x, n: int):
    return x.reshape((-1,) + x.shape[2:])[:n]


def _line_blocks(center, origins, directions, block: int):
    """Origins and directions (..., 3), broadcast, centred, float32, in blocks: (nb, block, 3) each."""
    o = jnp.asarray(origins, jnp.float32)
    d = jnp.asarray(directions, jnp.float32)
    shape = jnp.broadcast_shapes(o.shape, d.shape)
    o = jnp.broadcast_to(o, shape).reshape(-1, 3) - center
    d = jnp.broadcast_to(d, shape).reshape(-1, 3)
    return _blocks(o, block), _blocks(d, block), shape[:-1]


@partial(jax.jit, static_argnames=("k_keep", "n_int", "block"))
def _trace(tris, flags, boxes, center, origins, directions, *, k_keep: int, n_int: int, block: int):
    """(t0, t1) (n_int, ...), path lengths (...) and crossing counts (≤ k_keep) of the full lines o + t·d."""
    o, d, shape = _line_blocks(center, origins, directions, block)

    def one(od):
        o_near, t_c, norm, e1, e2, dn, valid = _ray_frames(od[0], od[1])
        t, s = _decode(_block_crossings(tris, flags, boxes, o_near, e1, e2, dn, valid, k_keep))
        t0, t1, used = _pair_crossings(t, s, n_int)  # from the point nearest the centre: no cancellation
        length = jnp.sum(t1 - t0, axis=-1) * norm
        count = jnp.sum(jnp.isfinite(t), axis=-1, dtype=jnp.int32)
        return jnp.where(used, t0 + t_c[:, None], 0.0), jnp.where(used, t1 + t_c[:, None], 0.0), length, count

    t0, t1, length, count = (_unblock(x, math.prod(shape)) for x in lax.map(one, (o, d)))
    t0, t1 = (jnp.moveaxis(x, -1, 0).reshape((n_int,) + shape) for x in (t0, t1))
    return t0, t1, length.reshape(shape), count.reshape(shape)


def _cells(pts, grid_lo, grid_step, grid_n, table):
    """Binned triangle indices (P, M) of the (x, y) cells of points (P, ≥2)."""
    ij = jnp.clip(jnp.floor((pts[:, :2] - grid_lo) / grid_step).astype(jnp.int32), 0, grid_n - 1)
    return table[ij[:, 0] * grid_n[1] + ij[:, 1]]


@partial(jax.jit, static_argnames=("block",))
def _contains(tris, flags, table, grid_lo, grid_step, grid_n, lo, hi, center, points, *, block: int):
    """Inside test of points (..., 3): winding number of the upward vertical line, over binned triangles.

    tris (9, T + 1), flags (4, T + 1) (the last triangle is padding), table (cells, M) triangle indices.
    """
    p = jnp.asarray(points, jnp.float32)
    shape = p.shape[:-1]

    def one(pts):
        idx = _cells(pts, grid_lo, grid_step, grid_n, table)
        tv, fl = tris[:, idx], flags[:, idx]  # (9, P, M), (4, P, M)
        v = [tv[k] - pts[:, k % 3, None] if k % 3 < 2 else tv[k] for k in range(9)]
        zhit, sign = _decode(_crossings(v, list(fl)))
        winding = jnp.sum(jnp.where(zhit > pts[:, 2, None], sign, 0.0), axis=1)
        return (winding > 0) & jnp.all((pts >= lo) & (pts <= hi), axis=1)

    out = lax.map(one, _blocks(p.reshape(-1, 3) - center, block))
    return _unblock(out, math.prod(shape)).reshape(shape)


@partial(jax.jit, static_argnames=("block", "k_keep", "n_int"))
def _contains_grid(tris, flags, table, grid_lo, grid_step, grid_n, center, x, y, z, *, block, k_keep, n_int):
    """Inside test on the grid z (nz,) × y (ny,) × x (nx,): intervals of each vertical line. (nz, ny, nx)."""
    x, y, z = (jnp.asarray(a, jnp.float32).reshape(-1) for a in (x, y, z))
    yy, xx = jnp.meshgrid(y, x, indexing="ij")
    cols = jnp.stack([xx.reshape(-1), yy.reshape(-1)], axis=1) - center[:2]

    def one(xy):
        idx = _cells(xy, grid_lo, grid_step, grid_n, table)
        tv, fl = tris[:, idx], flags[:, idx]
        v = [tv[k] - xy[:, k % 3, None] if k % 3 < 2 else tv[k] for k in range(9)]
        c = -lax.top_k(-_crossings(v, list(fl)), k_keep)[0]
        z0, z1, _ = _pair_crossings(*_decode(c), n_int)  # empty slots: [0, 0], never inside below
        zc = z[:, None, None] - center[2]
        return jnp.any((zc >= z0[None]) & (zc < z1[None]), axis=-1)  # (nz, P)

    out = lax.map(one, _blocks(cols, block))  # (nb, nz, P)
    out = jnp.moveaxis(out, 1, 0).reshape(z.shape[0], -1)[:, : cols.shape[0]]
    return out.reshape(z.shape[0], y.shape[0], x.shape[0])


# --------------------------------------------------------------------------------------------- the shape


class MeshShape:
    """A solid bounded by a closed triangle mesh; coordinates x, y, z in mm in the mesh's own frame.

    ``max_crossings``: the most surface crossings kept per line; ``n_intervals = max_crossings // 2`` interval
    slots. ``None`` estimates it as 2 × (largest crossing count, up to 32, of 12 × 12 parallel lines across the
    bounding box in each of 16 directions: axes, face and body diagonals, 3 random) + 2, at least 4. A line
    with more crossings keeps the nearest ones (smallest t) and loses the rest (:meth:`crossing_counts` checks
    given lines: a count equal to max_crossings may be truncated). Rays are traced ``ray_block`` at a time
    against ``tri_chunk`` triangles at a time (memory ≈ 12 · ray_block · tri_chunk bytes; defaults 1024 × 512
    on CPU, 8192 × 4096 on accelerators), skipping triangle chunks that all lines of a block miss. Triangles
    are stored centred, in float32.
    """

    def __init__(self, mesh: trimesh.Trimesh, max_crossings: int | None = None, *, tri_chunk: int | None = None,
                 ray_block: int | None = None):
        if not isinstance(mesh, trimesh.Trimesh):
            mesh = load_mesh(mesh)
        self.mesh = _closed_outward(mesh, str(mesh.metadata.get("file_name", "<Trimesh>")))
        cpu = jax.default_backend() == "cpu"
        tri_chunk = (512 if cpu else 4096) if tri_chunk is None else tri_chunk
        ray_block = (1024 if cpu else 8192) if ray_block is None else ray_block
        if int(tri_chunk) < 1 or int(ray_block) < 1:
            raise ValueError(f"tri_chunk={tri_chunk!r}, ray_block={ray_block!r} are not allowed: both must be ≥ 1")
        self._ray_block = int(ray_block)
        lo, hi = (np.asarray(b, dtype=np.float64) for b in self.mesh.bounds)
        self._lo, self._hi = lo, hi
        self._center = 0.5 * (lo + hi)
        faces = np.asarray(self.mesh.faces, dtype=np.int64)
        tri = (np.asarray(self.mesh.vertices, dtype=np.float64)[faces] - self._center).astype(np.float32)
        flags = np.stack([faces[:, 1] > faces[:, 2], faces[:, 2] > faces[:, 0], faces[:, 0] > faces[:, 1],
                          ~_degenerate(tri)], axis=1)
        order = _morton_order(tri.mean(axis=1), lo - self._center, hi - self._center)
        tri, flags = tri[order], flags[order]
        self._tri_np, self._flags_np = tri, flags
        chunk = int(min(tri_chunk, max(64, 1 << (len(tri) - 1).bit_length())))  # few shapes, few compilations
        nc = -(-len(tri) // chunk)
        pad = nc * chunk - len(tri)
        soa = np.concatenate([tri.reshape(-1, 9), np.zeros((pad, 9), np.float32)]).reshape(nc, chunk, 9)
        fl = np.concatenate([flags, np.zeros((pad, 4), bool)]).reshape(nc, chunk, 4)  # padding: not real
        margin = 1e-4 * float(np.max(hi - lo)) + 1e-6
        boxes = np.empty((nc, 2, 3), np.float32)
        for c in range(nc):
            real = soa[c, : chunk - (pad if c == nc - 1 else 0)].reshape(-1, 3)
            boxes[c] = [real.min(axis=0) - margin, real.max(axis=0) + margin]
        self._tris = jnp.asarray(np.ascontiguousarray(soa.transpose(0, 2, 1)))  # (nc, 9, C)
        self._flags = jnp.asarray(np.ascontiguousarray(fl.transpose(0, 2, 1)))  # (nc, 4, C)
        self._boxes = jnp.asarray(boxes)
        self._center_j = jnp.asarray(self._center, dtype=jnp.float32)
        self._lo_j = jnp.asarray(lo - self._center, jnp.float32)
        self._hi_j = jnp.asarray(hi - self._center, jnp.float32)
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
        t0, t1, _, _ = self._trace(origins, directions)
        return t0, t1

    def path_length(self, origins, directions) -> jnp.ndarray:
        """Length (mm) of solid along each full line ``o + t·d``: Σ (t1 − t0)·|d|, shape (...)."""
        return self._trace(origins, directions)[2]

    def crossing_counts(self, origins, directions) -> jnp.ndarray:
        """Surface crossings of each full line ``o + t·d``, counted up to ``max_crossings``: int32, shape (...).

        A line that reaches ``max_crossings`` may have more, and then loses its farthest intervals.
        """
        return self._trace(origins, directions)[3]

    def contains(self, points) -> jnp.ndarray:
        """True for points (..., 3) (x, y, z in mm) inside the solid; points on the surface go either way.

        Winding number of the upward vertical line from each point, testing only the triangles whose
        footprint overlaps the point's cell of an (x, y) grid built on first use. jit-compatible.
        """
        points = _array(points)
        shape = np.shape(points)
        if shape[-1:] != (3,):
            raise ValueError(f"points of shape {shape} are not allowed: the last axis must be x, y, z (3)")
        tris, flags, table, glo, gstep, gn = self._xy_bins()
        block = _block_size(math.prod(shape[:-1]), max(256, (1 << 20) // table.shape[1]))
        return _contains(tris, flags, table, glo, gstep, gn, self._lo_j, self._hi_j, self._center_j, points,
                         block=block)

    def contains_grid(self, x, y, z) -> jnp.ndarray:
        """Inside test on the rectilinear grid of axes x (nx,), y (ny,), z (nz,) in mm: bool (nz, ny, nx).

        The fast path for voxelisation: the solid's intervals along each vertical (x, y) line are found once
        and the nz points of the column compared against them (same result as :meth:`contains`).
        """
        tris, flags, table, glo, gstep, gn = self._xy_bins()
        x, y, z = _array(x), _array(y), _array(z)
        block = _block_size(np.size(x) * np.size(y), max(256, (1 << 20) // table.shape[1]))
        return _contains_grid(tris, flags, table, glo, gstep, gn, self._center_j, x, y, z, block=block,
                              k_keep=min(self.max_crossings, table.shape[1]), n_int=self.n_intervals)

    # --------------------------------------------------------------------------------------- internals

    def _block(self, origins, directions) -> int:
        shape = np.broadcast_shapes(np.shape(origins), np.shape(directions))
        if shape[-1:] != (3,):
            raise ValueError(f"origins {np.shape(origins)} and directions {np.shape(directions)} are not allowed: "
                             "they must broadcast to (..., 3)")
        return _block_size(math.prod(shape[:-1]), self._ray_block)

    def _trace(self, origins, directions, k_keep: int | None = None):
        k_keep = self.max_crossings if k_keep is None else k_keep
        origins, directions = _array(origins), _array(directions)
        return _trace(self._tris, self._flags, self._boxes, self._center_j, origins, directions,
                      k_keep=k_keep, n_int=k_keep // 2, block=self._block(origins, directions))

    def _xy_bins(self):
        if self._bins is None:
            self._bins = _xy_bins(self._tri_np, self._flags_np)
        return self._bins

    def _estimate_max_crossings(self, cap: int = 32, n: int = 12) -> int:
        """2 × the most crossings (≤ cap) of n × n parallel lines across the box in each of 16 directions + 2."""
        rng = np.random.default_rng(12345)
        dirs = [np.eye(3), [[1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1]],
                [[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], rng.normal(size=(3, 3))]
        dirs = np.concatenate([np.asarray(x, float) for x in dirs])
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        half = 0.5 * (self._hi - self._lo)
        radius = float(np.linalg.norm(half)) + 1e-9
        s = (np.arange(n) + rng.uniform(0.2, 0.8)) / n * 2 - 1  # offset: avoid the mesh's symmetry planes
        lines_o = []
        for dvec in dirs:
            a = np.eye(3)[np.argmin(np.abs(dvec))]
            u = np.cross(dvec, a)
            u /= np.linalg.norm(u)
            v = np.cross(dvec, u)
            su, sv = np.meshgrid(s * radius, s * radius)
            lines_o.append(self._center + su.reshape(-1, 1) * u + sv.reshape(-1, 1) * v)
        o = np.concatenate(lines_o)
        d = np.repeat(dirs, n * n, axis=0)
        counts = np.asarray(self._trace(o, d, k_keep=cap)[3])
        return max(4, 2 * int(counts.max()) + 2)

    def __repr__(self) -> str:
        lo, hi = self._lo, self._hi
        return (f"MeshShape({len(self.mesh.faces)} triangles, bounds x {lo[0]:g}..{hi[0]:g}, y {lo[1]:g}..{hi[1]:g}, "
                f"z {lo[2]:g}..{hi[2]:g} mm, n_intervals={self.n_intervals})")


# ------------------------------------------------------------------------------------------------ helpers


def _array(x):
    """JAX arrays (and tracers) as they are, anything else as a float32 numpy array (one jit signature)."""
    return x if isinstance(x, jax.Array) else np.asarray(x, dtype=np.float32)


def _block_size(n: int, cap: int) -> int:
    """Rays per block: ``cap``, or for small calls the next power of two ≥ n (at least 256)."""
    return int(min(cap, max(256, 1 << max(0, (n - 1).bit_length()))))


def _degenerate(tri: np.ndarray) -> np.ndarray:
    """True for triangles (T, 3, 3) of (numerically) zero area: they bound nothing and are never hit."""
    t = tri.astype(np.float64)
    area2 = np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=-1)
    edge2 = np.max(np.sum((t[:, (1, 2, 0)] - t) ** 2, axis=-1), axis=-1)
    return area2 <= 1e-12 * edge2


def _morton_order(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Order of points along a 3-D Morton (Z-order) curve over the box [lo, hi]: compact triangle chunks."""
    q = np.clip((points - lo) / np.maximum(hi - lo, 1e-30) * 1023, 0, 1023).astype(np.uint64)
    code = np.zeros(len(points), np.uint64)
    for bit in range(10):
        for axis in range(3):
            code |= ((q[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + axis)
    return np.argsort(code, kind="stable")


def _xy_bins(tri: np.ndarray, flags: np.ndarray, max_table: int = 1 << 24):
    """Triangles binned by their (x, y) footprint on a uniform grid, for vertical-ray inside tests.

    Returns device arrays: tris (9, T + 1) and flags (4, T + 1) with a pad triangle last, table (cells, M) of
    triangle indices (padded with the pad), grid lo (2,), cell size (2,), cells per axis (2,). The grid is
    the one (of a few tried) with the fewest triangles in its fullest cell.
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
    tri_pad = np.concatenate([tri.reshape(-1, 9), np.zeros((1, 9), np.float32)]).T  # (9, T + 1)
    flags_pad = np.concatenate([flags, np.zeros((1, 4), bool)]).T  # (4, T + 1); the pad is not real
    return (jnp.asarray(np.ascontiguousarray(tri_pad)), jnp.asarray(np.ascontiguousarray(flags_pad)),
            jnp.asarray(table), jnp.asarray(glo, jnp.float32), jnp.asarray(step, jnp.float32),
            jnp.asarray([cells, cells], jnp.int32))

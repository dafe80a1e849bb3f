"""Phantoms as resolution-independent scenes of placed, material-tagged shapes (lengths mm, μ 1/mm).

Composition rule: **later parts replace earlier ones** wherever they overlap (painter's rule). A part whose
material is ``"void"`` removes what lies under it (holes, pores, hollow undersides) and is not reported.

A phantom gives three views of itself that agree with each other:

- :meth:`Phantom.voxelize`: anti-aliased per-material volume fractions and label masks on a grid, from
  ``supersample``³ point samples per voxel;
- :meth:`Phantom.attenuation`: μ(E) volumes, Σ_m f_m·μ_m(E);
- :meth:`Phantom.path_lengths`: **exact** per-material path lengths of every detector ray of a geometry, by
  ray–shape intersection and the painter's rule along each ray (no voxels: the inverse-crime-free reference).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from lamino.geometry import Geometry, VolumeGrid, rotation_x, rotation_y, rotation_z
from lamino.materials import Material, get_material
from lamino.phantoms.shapes import BIG

VOID = "void"


@dataclasses.dataclass(frozen=True)
class Part:
    """A shape placed in the sample frame: world p = R·q + t for local q; with a material and a label."""

    shape: Any
    material: str
    label: str | None = None
    rotation: tuple[tuple[float, ...], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.rotation, dtype=float)

    def to_local(self, points):
        """World points (..., 3) → local frame."""
        return (points - np.asarray(self.translation)) @ self.matrix

    def world_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """World-frame bounding box (lo, hi) of the part (x, y, z) mm."""
        lo, hi = self.shape.bounds_local()
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        world = corners @ self.matrix.T + np.asarray(self.translation)
        return world.min(0), world.max(0)


def place(shape, material: str, label: str | None = None, at=(0.0, 0.0, 0.0), rotate_deg=(0.0, 0.0, 0.0)) -> Part:
    """A :class:`Part`: ``shape`` rotated by ``rotate_deg`` = (about x, then y, then z; degrees, right-handed)
    and moved to ``at`` (x, y, z) mm."""
    rx, ry, rz = (math.radians(float(a)) for a in rotate_deg)
    rot = rotation_z(rz) @ rotation_y(ry) @ rotation_x(rx)
    at = tuple(float(a) for a in at)
    if len(at) != 3 or not all(math.isfinite(a) for a in at):
        raise ValueError(f"at={at!r} is not allowed: give a finite (x, y, z) position in mm")
    return Part(shape, material, label, tuple(map(tuple, rot)), at)


@dataclasses.dataclass(frozen=True)
class Voxelized:
    """Voxelised phantom: ``fractions`` {material: (nz, ny, nx) float32 in [0, 1]}, ``labels`` {label: bool}
    (voxels at least half covered), ``label_fractions`` {label: float32}, on ``grid``."""

    grid: VolumeGrid
    fractions: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    label_fractions: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Phantom:
    """A named scene of :class:`Part` objects with its materials and the parameters that built it."""

    name: str
    parts: tuple[Part, ...]
    materials: dict[str, Material]
    params: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.parts:
            raise ValueError(f"phantom {self.name!r} has no parts: add at least one shape")
        for part in self.parts:
            if part.material != VOID and part.material not in self.materials:
                raise ValueError(f"part material {part.material!r} is not allowed: phantom {self.name!r} defines "
                                 f"{', '.join(sorted(self.materials))} (or 'void')")

    @classmethod
    def build(cls, name: str, parts: Sequence[Part], params: dict | None = None,
              materials: dict[str, Material] | None = None) -> Phantom:
        """A phantom whose materials are looked up in the library unless given."""
        materials = dict(materials or {})
        for part in parts:
            if part.material != VOID and part.material not in materials:
                materials[part.material] = get_material(part.material)
        return cls(name, tuple(parts), materials, dict(params or {}))

    # ------------------------------------------------------------------------------------------ description
    @property
    def bounds(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """((xmin, ymin, zmin), (xmax, ymax, zmax)) mm in the sample frame, over non-void parts."""
        boxes = [p.world_bounds() for p in self.parts if p.material != VOID] or [self.parts[0].world_bounds()]
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        return tuple(map(float, lo)), tuple(map(float, hi))

    @property
    def label_names(self) -> list[str]:
        return sorted({p.label for p in self.parts if p.label})

    # ------------------------------------------------------------------------------------------ voxels
    def voxelize(self, grid: VolumeGrid, supersample: int = 2, max_points: int = 1 << 23) -> Voxelized:
        """Per-material volume fractions and labels from ``supersample``³ samples per voxel (painter's rule)."""
        if isinstance(supersample, bool) or not isinstance(supersample, int) or not 1 <= supersample <= 8:
            raise ValueError(f"supersample={supersample!r} is not allowed: give an integer from 1 to 8")
        k = supersample
        fine = [_fine_axis(grid, dim, k) for dim in range(3)]          # z, y, x sample coordinates
        mats = sorted(self.materials)
        labels = self.label_names
        part_mat = np.array([mats.index(p.material) if p.material != VOID else -1 for p in self.parts])
        part_lab = np.array([labels.index(p.label) if p.label else -1 for p in self.parts])
        nz, ny, nx = grid.shape
        fractions = {m: np.zeros(grid.shape, np.float32) for m in mats}
        label_fr = {lab: np.zeros(grid.shape, np.float32) for lab in labels}
        slab = max(1, min(nz, max_points // (k**3 * ny * nx)))
        boxes = [p.world_bounds() for p in self.parts]
        for z0 in range(0, nz, slab):
            z1 = min(nz, z0 + slab)
            zs = fine[0][z0 * k:z1 * k]
            owner = np.full((len(zs), ny * k, nx * k), -1, np.int32)
            for i, (part, (lo, hi)) in enumerate(zip(self.parts, boxes, strict=True)):
                sub = [_index_range(ax, lo[d], hi[d]) for ax, d in ((zs, 2), (fine[1], 1), (fine[2], 0))]
                if any(a >= b for a, b in sub):
                    continue
                (za, zb), (ya, yb), (xa, xb) = sub
                view = owner[za:zb, ya:yb, xa:xb]
                if hasattr(part.shape, "contains_grid") and np.allclose(part.matrix, np.eye(3)):
                    # meshes placed without rotation: the mesh's own column-wise grid test
                    t = np.asarray(part.translation)
                    inside = np.asarray(part.shape.contains_grid(fine[2][xa:xb] - t[0], fine[1][ya:yb] - t[1],
                                                                 zs[za:zb] - t[2]))
                elif _z_extruded(part):
                    # the shape is the same in every z plane of its slab: test one plane, broadcast over z
                    plane = np.stack(np.broadcast_arrays(fine[2][None, xa:xb], fine[1][ya:yb, None],
                                                         np.float64(part.translation[2])), axis=-1)
                    inside = np.asarray(part.shape.contains(part.to_local(plane)))[None]
                else:
                    pts = np.stack(np.broadcast_arrays(fine[2][None, None, xa:xb], fine[1][None, ya:yb, None],
                                                       zs[za:zb, None, None]), axis=-1)
                    inside = np.asarray(part.shape.contains(part.to_local(pts)))
                np.copyto(view, i, where=inside)
            # one histogram per class table: (coarse voxel, class) pairs counted with bincount
            cz = z1 - z0
            coarse = ((np.arange(cz * k) // k)[:, None, None] * ny
                      + (np.arange(ny * k) // k)[None, :, None]) * nx + (np.arange(nx * k) // k)[None, None, :]
            for table, names, out in ((part_mat, mats, fractions), (part_lab, labels, label_fr)):
                if not names:
                    continue
                cls = np.where(owner >= 0, table[np.maximum(owner, 0)], -1)
                hit = cls >= 0
                counts = np.bincount(coarse[hit] * len(names) + cls[hit], minlength=cz * ny * nx * len(names))
                counts = counts.reshape(cz, ny, nx, len(names)) / np.float32(k**3)
                for j, nm in enumerate(names):
                    out[nm][z0:z1] = counts[..., j]
        return Voxelized(grid, fractions, {lab: f >= 0.5 for lab, f in label_fr.items()}, label_fr)

    def attenuation(self, grid: VolumeGrid, energy_kev: float, supersample: int = 2,
                    voxels: Voxelized | None = None) -> np.ndarray:
        """Linear attenuation volume μ(E) (nz, ny, nx) in 1/mm at ``energy_kev`` (``voxels``: reuse a voxelisation)."""
        vox = voxels if voxels is not None and voxels.grid == grid else self.voxelize(grid, supersample)
        mu = np.zeros(grid.shape, np.float32)
        for name, frac in vox.fractions.items():
            mu += frac * np.float32(self.materials[name].mu(energy_kev))
        return mu

    # ------------------------------------------------------------------------------------------ exact rays
    def path_lengths(self, geometry: Geometry, max_hits: int = 64, progress: bool = False) -> dict[str, np.ndarray]:
        """Exact per-material path lengths (mm) of every detector ray: {material: (n_views, rows, cols)} float32.

        Each ray meets each part in an interval (convex shapes) or several (meshes); along the ray the
        elementary segments between all interval ends go to the latest part covering them. The cost grows as
        k² per ray for k parts crossed; above ``max_hits`` a warning says so and the lengths come from a
        projection of the voxelised phantom on a grid twice as fine as the detector (:meth:`voxel_path_lengths`).
        """
        if not isinstance(geometry, Geometry):
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino Geometry")
        mats = sorted(self.materials)
        slot_mat = []
        for part in self.parts:
            m = mats.index(part.material) if part.material != VOID else len(mats)
            slot_mat += [m] * int(getattr(part.shape, "n_intervals", 1))
        slot_mat = jnp.asarray(np.array(slot_mat, np.int32))
        lo, hi = (np.asarray(b) for b in self.bounds)
        centre = (lo + hi) / 2
        rows, cols = geometry.det_shape
        vec = np.asarray(geometry.vectors())
        intervals = _intervals_fn(self.parts)
        out = {m: np.zeros((geometry.n_views, rows, cols), np.float32) for m in mats}
        r = np.arange(rows) - (rows - 1) / 2
        c = np.arange(cols) - (cols - 1) / 2
        for view in tqdm(range(geometry.n_views), desc=f"path lengths {self.name}", unit="view",
                         disable=not progress):
            v = vec[view]
            pix = v[3:6] + c[None, :, None] * v[6:9] + r[:, None, None] * v[9:12]
            if geometry.beam == "cone":
                d = pix - v[0:3]
                o = np.broadcast_to(v[0:3], d.shape)
            else:
                d = np.broadcast_to(v[0:3], pix.shape)
                o = pix
            # start each ray at its point nearest the phantom centre: small |t|, good float32 precision
            t_c = np.sum((centre - o) * d, -1) / np.sum(d * d, -1)
            o = o + t_c[..., None] * d
            t0, t1 = intervals(jnp.asarray(o.reshape(-1, 3), jnp.float32), jnp.asarray(d.reshape(-1, 3), jnp.float32))
            hits = int(jnp.max(jnp.sum(t1 > t0, axis=0)))
            if hits > max_hits:
                warnings.warn(f"phantom {self.name!r}: rays cross up to {hits} parts (> max_hits={max_hits}); "
                              "exact path lengths would be slow, using a fine voxel projection instead", stacklevel=2)
                return self.voxel_path_lengths(geometry)
            k = min(1 << max(0, math.ceil(math.log2(max(hits, 1)))), t0.shape[0])
            chunk = int(max(256, min(t0.shape[1], (1 << 24) // (2 * k * k))))
            lengths = (np.asarray(_owned_lengths_chunked(t0, t1, slot_mat, len(mats), k, chunk))
                       * np.linalg.norm(d.reshape(-1, 3), axis=1).astype(np.float32))
            for j, m in enumerate(mats):
                out[m][view] = lengths[j].reshape(rows, cols)
        return out

    def voxel_path_lengths(self, geometry: Geometry, voxel_size: float | None = None,
                           supersample: int = 2) -> dict[str, np.ndarray]:
        """Per-material path lengths (mm) from projecting the voxelised phantom (not exact).

        ``voxel_size`` defaults to half the detector pixel at the object, so that the result is not the
        discretisation a reconstruction on the detector's own grid would use (no inverse crime).
        """
        from lamino.projector import Projector

        lo, hi = (np.asarray(b) for b in self.bounds)
        vs = voxel_size or min(geometry.det_spacing) / geometry.magnification / 2
        shape = tuple(int(max(1, math.ceil(e / vs))) for e in (hi - lo)[::-1])
        if np.prod(shape, dtype=float) > 2.0**30:
            raise ValueError(f"voxel_size={vs:g} mm is not allowed here: the phantom would need {shape} voxels; "
                             "give a larger voxel_size")
        grid = VolumeGrid(shape, vs, center=tuple(((lo + hi) / 2)[::-1]))
        vox = self.voxelize(grid, supersample)
        proj = Projector(geometry, grid)
        return {m: np.asarray(proj.forward(f)) for m, f in vox.fractions.items()}

    # ------------------------------------------------------------------------------------------ meshes
    def to_meshes(self) -> list[tuple[str | None, str, Any]]:
        """Each part as a ``trimesh.Trimesh`` in the sample frame (mm): [(label, material, mesh)].

        Overlaps are not resolved: void parts come out as meshes of material ``"void"`` to subtract in CAD.
        """
        from lamino.phantoms.export import part_mesh

        return [(p.label, p.material, part_mesh(p)) for p in self.parts]

    def export_stl(self, folder: str) -> list[str]:
        """Write one STL per material (and ``void.stl``) into ``folder``; returns the paths."""
        from lamino.phantoms.export import export_stl

        return export_stl(self.to_meshes(), folder)


def _z_extruded(part: Part) -> bool:
    """True for boxes, cylinders and prisms turned only about z and not cut: z-slabs of a 2-D outline."""
    from lamino.phantoms.shapes import Box, Cylinder, Prism

    m = part.matrix
    return (isinstance(part.shape, (Box, Cylinder, Prism)) and not part.shape.cuts
            and np.allclose(m[2], (0, 0, 1)) and np.allclose(m[:, 2], (0, 0, 1)))


def _fine_axis(grid: VolumeGrid, dim: int, k: int) -> np.ndarray:
    """Sample coordinates (mm) along array axis ``dim``: k per voxel, at sub-voxel centres."""
    sub = ((np.arange(k) + 0.5) / k - 0.5) * grid.voxel_size[dim]
    return (grid.axis(dim)[:, None] + sub[None, :]).ravel()


def _index_range(axis: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    return int(np.searchsorted(axis, lo, "left")), int(np.searchsorted(axis, hi, "right"))


@functools.lru_cache(maxsize=32)
def _intervals_fn(parts: tuple[Part, ...]):
    """Jitted (o, d) (R, 3) world rays → (t0, t1) (S, R) interval slots of all parts, in part order.

    Parts of one kind (same shape class and array sizes) are evaluated together with ``vmap``.
    """
    groups: dict[tuple, list[int]] = {}
    for i, part in enumerate(parts):
        shape = part.shape
        if hasattr(shape, "arrays"):
            arrs = shape.arrays() | shape.cut_arrays()
            key = (type(shape), tuple((k, np.shape(v)) for k, v in sorted(arrs.items())))
        else:                                            # e.g. meshes: evaluated one by one
            key = ("single", i)
        groups.setdefault(key, []).append(i)

    @jax.jit
    def run(o, d):
        slots: list = [None] * len(parts)
        for key, idx in groups.items():
            if key[0] == "single":
                part = parts[idx[0]]
                m = jnp.asarray(part.matrix, jnp.float32)
                slots[idx[0]] = part.shape.intervals((o - jnp.asarray(part.translation, jnp.float32)) @ m, d @ m)
                continue
            cls = key[0]
            arrs = [parts[i].shape.arrays() | parts[i].shape.cut_arrays() for i in idx]
            stacked = {k: jnp.asarray(np.stack([a[k] for a in arrs]), jnp.float32) for k in arrs[0]}
            rot = jnp.asarray(np.stack([parts[i].matrix for i in idx]), jnp.float32)
            shift = jnp.asarray(np.stack([parts[i].translation for i in idx]), jnp.float32)

            def one(a, m, t, cls=cls):
                rel = [o[:, i] - t[i] for i in range(3)]      # world → local: q = Rᵀ(p − t), per component
                lo_ = tuple(rel[0] * m[0, j] + rel[1] * m[1, j] + rel[2] * m[2, j] for j in range(3))
                ld_ = tuple(d[:, 0] * m[0, j] + d[:, 1] * m[1, j] + d[:, 2] * m[2, j] for j in range(3))
                return cls.cut_interval_arrays(a, lo_, ld_, jnp)

            t0g, t1g = jax.vmap(one)(stacked, rot, shift)          # (G, R)
            for j, i in enumerate(idx):
                slots[i] = (t0g[j][None], t1g[j][None])
        return (jnp.concatenate([s_[0] for s_ in slots], 0), jnp.concatenate([s_[1] for s_ in slots], 0))

    return run


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _owned_lengths_chunked(t0, t1, slot_mat, n_mat: int, k: int, chunk: int):
    """:func:`_owned_lengths` over rays in chunks of ``chunk`` (bounds the (k, 2k, rays) temporaries)."""
    s, r = t0.shape
    n = -(-r // chunk)
    pad = n * chunk - r
    t0 = jnp.pad(t0, ((0, 0), (0, pad)), constant_values=BIG)
    t1 = jnp.pad(t1, ((0, 0), (0, pad)), constant_values=BIG)

    def split(a):
        return a.reshape(s, n, chunk).transpose(1, 0, 2)

    out = jax.lax.map(lambda ab: _owned_lengths(ab[0], ab[1], slot_mat, n_mat, k), (split(t0), split(t1)))
    return out.transpose(1, 0, 2).reshape(n_mat, n * chunk)[:, :r]


def _owned_lengths(t0, t1, slot_mat, n_mat: int, k: int):
    """Per-material Σ of elementary segment lengths (in t units) owned by the latest covering slot: (n_mat, R).

    Only ``k`` slots per ray are kept (k ≥ the most slots any ray hits), so the cost is O(k²) per ray rather
    than O(S²) for S slots; slot ``n_mat`` (void) owns segments that are reported nowhere.
    """
    s = t0.shape[0]
    hit = t1 > t0
    if k < s:
        # compact the hit slots, in slot order, into k rows: the (j+1)-th hit slot of a ray goes to row j
        # (one scatter; missed slots are sent to row k and dropped)
        row = jnp.where(hit, jnp.cumsum(hit, axis=0) - 1, k)
        col = jnp.broadcast_to(jnp.arange(t0.shape[1])[None], t0.shape)
        rank_all = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32)[:, None], t0.shape)

        def compact(values, fill):
            return jnp.full((k, t0.shape[1]), fill, values.dtype).at[row, col].set(
                values, mode="drop", unique_indices=True)

        t0, t1, rank = compact(t0, BIG), compact(t1, BIG), compact(rank_all, 0)
    else:
        rank = jnp.broadcast_to(jnp.arange(s)[:, None], t0.shape)
    empty = t1 <= t0
    t0 = jnp.where(empty, BIG, t0)
    t1 = jnp.where(empty, BIG, t1)
    ends = jnp.sort(jnp.concatenate([t0, t1], 0), axis=0)               # (2k, R)
    mid = (ends[:-1] + ends[1:]) / 2
    seg = ends[1:] - ends[:-1]
    cover = (t0[:, None] <= mid[None]) & (mid[None] < t1[:, None])        # (k, 2k-1, R)
    owner = jnp.max(jnp.where(cover, rank[:, None], -1), axis=0)          # latest covering slot
    mat = jnp.where(owner >= 0, slot_mat[jnp.maximum(owner, 0)], n_mat)
    seg = jnp.where(seg < BIG / 2, seg, 0.0)
    return jnp.stack([jnp.sum(jnp.where(mat == j, seg, 0.0), axis=0) for j in range(n_mat)])

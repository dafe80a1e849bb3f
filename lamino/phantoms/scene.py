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

import collections
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
        """Part labels, plus the group of every ``group:member`` label (e.g. ``spoke:3`` also counts as ``spoke``)."""
        names = {p.label for p in self.parts if p.label}
        return sorted(names | {n.split(":", 1)[0] for n in names if ":" in n})

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
        part_group = np.array([labels.index(p.label.split(":", 1)[0]) if p.label and ":" in p.label else -1
                               for p in self.parts])
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
            for table, names, out in ((part_mat, mats, fractions), (part_lab, labels, label_fr),
                                      (part_group, labels, label_fr)):
                if not names or np.all(table < 0):
                    continue
                cls = np.where(owner >= 0, table[np.maximum(owner, 0)], -1)
                hit = cls >= 0
                counts = np.bincount(coarse[hit] * len(names) + cls[hit], minlength=cz * ny * nx * len(names))
                counts = counts.reshape(cz, ny, nx, len(names)) / np.float32(k**3)
                for j, nm in enumerate(names):
                    out[nm][z0:z1] += counts[..., j]
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

        The detector is traced in tiles of 8 × 8 pixels, each against only the parts whose projected outline
        touches it; tiles with about as many such parts, from all views, are traced together. A phantom that is
        one closed mesh (``from_mesh``) is traced by splatting its triangles instead
        (:func:`~lamino.phantoms.mesh_projection.mesh_path_lengths`, independent of the triangle count per ray).
        """
        if not isinstance(geometry, Geometry):
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino Geometry")
        mats = sorted(self.materials)
        solid = [p for p in self.parts if p.material != VOID]
        if len(self.parts) == 1 and hasattr(solid[0].shape, "mesh"):      # one mesh: splat its triangles
            from lamino.phantoms.mesh_projection import mesh_path_lengths

            part = solid[0]
            world = np.asarray(part.shape.mesh.vertices) @ part.matrix.T + np.asarray(part.translation)
            lengths = mesh_path_lengths(world, part.shape.mesh.faces, geometry)
            return {m: lengths if m == part.material else np.zeros_like(lengths) for m in mats}
        lo, hi = (np.asarray(b) for b in self.bounds)
        out = np.zeros((len(mats), geometry.n_views, *geometry.det_shape), np.float32)
        with tqdm(total=geometry.n_views, desc=f"path lengths {self.name}", unit="view",
                  disable=not progress) as bar:
            hits = _Tracer.of(self.parts, tuple(mats)).trace(geometry, (lo + hi) / 2, out, max_hits, bar)
        if hits > max_hits:
            warnings.warn(f"phantom {self.name!r}: rays cross up to {hits} parts (> max_hits={max_hits}); "
                          "exact path lengths would be slow, using a fine voxel projection instead", stacklevel=2)
            return self.voxel_path_lengths(geometry)
        return {m: out[j] for j, m in enumerate(mats)}

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


_TILE = 8                   # the detector is traced in tiles of up to _TILE × _TILE pixels
_AXES = 8                   # directions of the projected outlines that decide which parts may touch a tile
_PAIRS_PER_BLOCK = 1 << 16  # (view, tile) pairs culled at a time
_SLOT_RAYS = 1 << 19        # (interval slots × rays) per kernel call: bounds its temporaries
_MIN_SLOTS = 4              # tiles touched by fewer parts get this many slots: few kernel shapes
_K_START = 8                # first guess of the most slots any ray crosses (grows when a ray crosses more)
_FAST_K = 16                # up to this many slots crossed per ray: the fast painter's rule (bit masks)
_CHAIN_SLOTS = 16           # up to this many candidate slots: compacted by selects, fused (beyond: a scatter)


def _outline_axes() -> np.ndarray:
    """(_AXES, 2) unit directions in the detector's (row, col) plane: the rows first, the columns halfway."""
    a = np.pi * np.arange(_AXES) / _AXES
    return np.stack([np.cos(a), np.sin(a)], -1)


@dataclasses.dataclass(frozen=True)
class _Tiling:
    """The detector (rows, cols) cut into tiles of (tr, tc) pixels, numbered row-major; the last tiles may
    reach past the detector's edge."""

    rows: int
    cols: int
    tr: int
    tc: int

    @classmethod
    def of(cls, det_shape: tuple[int, int]) -> _Tiling:
        rows, cols = det_shape
        return cls(rows, cols, min(_TILE, rows), min(_TILE, cols))

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles along the rows and the columns."""
        return -(-self.rows // self.tr), -(-self.cols // self.tc)

    @property
    def n_tiles(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def pixels_per_tile(self) -> int:
        return self.tr * self.tc

    def pixels(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices (n, tr · tc) of the pixels of ``tiles`` (n,)."""
        tr, tc = np.divmod(tiles, self.grid[1])
        r = tr[:, None, None] * self.tr + np.arange(self.tr)[None, :, None]
        c = tc[:, None, None] * self.tc + np.arange(self.tc)[None, None, :]
        return (np.broadcast_to(r, (len(tiles), self.tr, self.tc)).reshape(len(tiles), -1),
                np.broadcast_to(c, (len(tiles), self.tr, self.tc)).reshape(len(tiles), -1))

    def touching(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (view, tile, part) triples, sorted, whose pixel centres and outline overlap along every axis.

        ``lo``, ``hi`` (V, n_parts, _AXES): each part's outline, its extent along each of :func:`_outline_axes`.
        The tiles inside an outline's row and column extents are listed, then tested against the other axes.
        """
        (nr, nc), half = self.grid, _AXES // 2
        first = [np.ceil((lo[..., a] - (size - 1)) / size) for a, size in ((0, self.tr), (half, self.tc))]
        last = [np.floor(hi[..., a] / size) for a, size in ((0, self.tr), (half, self.tc))]
        r0, c0 = (np.clip(x, 0, n).astype(np.int64) for x, n in zip(first, (nr, nc), strict=True))
        r1, c1 = (np.clip(x, -1, n - 1).astype(np.int64) for x, n in zip(last, (nr, nc), strict=True))
        wide = np.maximum(c1 - c0 + 1, 0)
        area = (np.maximum(r1 - r0 + 1, 0) * wide).ravel()
        box = np.repeat(np.arange(area.size), area)                          # (view, part) of each pair
        step = np.arange(box.size) - np.repeat(np.cumsum(area) - area, area)
        tr = r0.ravel()[box] + step // wide.ravel()[box]
        tc = c0.ravel()[box] + step % wide.ravel()[box]
        keep = np.ones(box.size, bool)
        for a, (ar, ac) in enumerate(_outline_axes()):
            if a in (0, half):
                continue
            base = ar * tr * self.tr + ac * tc * self.tc
            t_lo = base + min(0.0, ar * (self.tr - 1)) + min(0.0, ac * (self.tc - 1))
            t_hi = base + max(0.0, ar * (self.tr - 1)) + max(0.0, ac * (self.tc - 1))
            keep &= (t_lo <= hi[..., a].ravel()[box]) & (t_hi >= lo[..., a].ravel()[box])
        view, part = np.divmod(box[keep], lo.shape[1])
        tile = (tr * nc + tc)[keep]
        order = np.lexsort((part, tile, view))
        return view[order], tile[order], part[order]


def _hull_points(part: Part) -> np.ndarray:
    """World points (m, 3) whose convex hull holds the part: a prism's corners, octagons around a cylinder's or a
    frustum's end circles, a 32-corner polytope around an ellipsoid, else the corners of its bounding box."""
    from lamino.phantoms.shapes import Cylinder, Ellipsoid, Frustum, Prism

    shape = part.shape
    octagon = np.exp(2j * np.pi * (np.arange(8) + 0.5) / 8) / np.cos(np.pi / 8)    # around the unit circle
    if isinstance(shape, Prism):
        xy, h = np.asarray(shape.vertices), shape.height / 2
        local = np.concatenate([np.c_[xy, np.full(len(xy), z)] for z in (-h, h)])
    elif isinstance(shape, (Cylinder, Frustum)):
        radii = (shape.radius,) * 2 if isinstance(shape, Cylinder) else (shape.radius_bottom, shape.radius_top)
        h = shape.height / 2
        local = np.concatenate([np.c_[r * octagon.real, r * octagon.imag, np.full(8, z)]
                                for r, z in zip(radii, (-h, h), strict=True)])
    elif isinstance(shape, Ellipsoid):
        # around the unit ball: |x|, |y|, |z| ≤ 1 and |x| + |y|, |y| + |z|, |x| + |z| ≤ √2
        s, h = np.sqrt(2) - 1, np.sqrt(0.5)
        signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
        ball = np.concatenate([signs * np.roll([1.0, s, s], i) for i in range(3)] + [signs * h])
        local = ball * np.asarray(shape.semi_axes)
    else:
        lo, hi = (np.asarray(b, float) for b in shape.bounds_local())
        local = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return local @ part.matrix.T + np.asarray(part.translation)


def _outlines(points: np.ndarray, geometry: Geometry, vec: np.ndarray, margin: float = 1.0):
    """Extents (lo, hi), each (V, n_parts, _AXES), of the projected ``points`` (n_parts, m, 3) along
    :func:`_outline_axes` in the views with ASTRA vectors ``vec`` (V, 12), widened by ``margin`` pixels; a part
    that cannot be projected (behind a cone source, rays parallel to the detector) covers every tile."""
    views = Geometry.from_vectors(vec, geometry.det_shape, geometry.beam)
    with np.errstate(all="ignore"):
        rc = views.project_points(points.reshape(-1, 3)).reshape(len(vec), *points.shape[:2], 2)
        along = rc @ _outline_axes().T                                        # (V, n_parts, m, _AXES)
        lo, hi = along.min(2) - margin, along.max(2) + margin
    bad = ~np.all(np.isfinite(lo) & np.isfinite(hi), axis=-1)
    lo[bad], hi[bad] = -np.inf, np.inf
    return lo, hi


def _tile_rays(geometry: Geometry, vec: np.ndarray, rows: np.ndarray, cols: np.ndarray, centre: np.ndarray):
    """Rays (o, d), each (n, P, 3) float32, and |d| (n, P) float32 of pixels (rows, cols) (n, P) of the views with
    ASTRA vectors ``vec`` (n, 12). Each ray starts at its point nearest ``centre``: small |t|, good float32
    precision.

    Computed in float64 per component; a parallel beam's starting points are an affine map of (row, col).
    """
    r = rows - (geometry.det_shape[0] - 1) / 2
    c = cols - (geometry.det_shape[1] - 1) / 2
    src, det, u, v = (vec[:, None, i:i + 3] for i in (0, 3, 6, 9))     # (n, 1, 3) each
    o = np.empty((*rows.shape, 3), np.float32)
    d = np.empty((*rows.shape, 3), np.float32)
    if geometry.beam == "cone":
        dc = [det[..., i] - src[..., i] + c * u[..., i] + r * v[..., i] for i in range(3)]
        e = centre - src
        t = sum(e[..., i] * dc[i] for i in range(3)) / sum(x * x for x in dc)
        for i in range(3):
            d[..., i] = dc[i]
            o[..., i] = src[..., i] + t * dc[i]
        norm = np.sqrt(sum(x * x for x in dc))
    else:
        # o = pix + t d with t = (centre - pix)·d / d·d, pix = det + c u + r v: affine in (c, r)
        dd = np.sum(src * src, -1)
        base = det + (np.sum((centre - det) * src, -1) / dd)[..., None] * src
        du = u - (np.sum(u * src, -1) / dd)[..., None] * src
        dv = v - (np.sum(v * src, -1) / dd)[..., None] * src
        for i in range(3):
            o[..., i] = base[..., i] + c * du[..., i] + r * dv[..., i]
        d[:] = src
        norm = np.broadcast_to(np.sqrt(dd), rows.shape)
    return o, d, norm.astype(np.float32)


def _padded(a: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``a`` with rows of ``fill`` added up to ``size`` rows."""
    return np.concatenate([a, np.full((size - len(a), *a.shape[1:]), fill, a.dtype)])


def _bucket(n: int) -> int:
    """The smallest power of two ≥ n."""
    return 1 << (max(n, 1) - 1).bit_length()


def _floor_pow2(n: int) -> int:
    """The largest power of two ≤ n (1 for n < 1)."""
    return 1 << max(0, int(n).bit_length() - 1)


class _Tracer:
    """The jitted kernels of a phantom's exact path lengths and what they need to know of its parts.

    Convex parts (shapes with ``arrays()``) are gathered per tile from a table of flattened shape numbers, one
    row per part; other shapes (meshes) are traced on every tile. Part ``i`` owns interval slots from
    ``start[i]`` on (one per convex part): the painter's rule ranks slots by this number.
    """

    def __init__(self, parts: tuple[Part, ...], mats: tuple[str, ...]):
        self.parts = parts
        self.n_mat = len(mats)
        n_int = [int(getattr(p.shape, "n_intervals", 1)) for p in parts]
        start = np.concatenate([[0], np.cumsum(n_int)[:-1]]).astype(np.int32)
        slot_mat = [mats.index(p.material) if p.material != VOID else len(mats)
                    for p, n in zip(parts, n_int, strict=True) for _ in range(n)]
        self.slot_mat = np.array(slot_mat + [len(mats)], np.int32)           # last: padding, owns nothing
        convex = np.array([hasattr(p.shape, "arrays") for p in parts])
        self.n_convex = int(convex.sum())
        self.table_row = np.where(convex, np.cumsum(convex) - 1, -1)          # part → convex-table row
        self.convex_rank = np.append(start[convex], len(slot_mat))            # convex-table row → rank
        self.others = np.nonzero(~convex)[0]
        self.other_ranks = np.array([start[i] + j for i in self.others for j in range(n_int[i])], np.int32)
        hulls = [_hull_points(p) for p in parts]
        m = max(len(h) for h in hulls)
        self.hulls = np.stack([np.concatenate([h, np.repeat(h[:1], m - len(h), 0)]) for h in hulls])
        self.k = _K_START
        table = _convex_table([p for p, c in zip(parts, convex, strict=True) if c])
        self.table = table.arrays
        self.intervals = jax.jit(functools.partial(_slot_intervals, table.groups, parts, tuple(self.others)))
        self.paint = jax.jit(functools.partial(_painted_lengths, self.n_mat), static_argnames="k")

    @classmethod
    @functools.lru_cache(maxsize=16)
    def of(cls, parts: tuple[Part, ...], mats: tuple[str, ...]) -> _Tracer:
        return cls(parts, mats)

    def trace(self, geometry: Geometry, centre: np.ndarray, out: np.ndarray, max_hits: int, bar) -> int:
        """Fill ``out`` (n_mat, n_views, rows, cols) with the path lengths; returns the most slots a ray crosses,
        stopping (``out`` unfinished) as soon as that exceeds ``max_hits``. ``bar``: a tqdm bar over views."""
        tiling = _Tiling.of(geometry.det_shape)
        vec = np.asarray(geometry.vectors())
        block = max(1, _PAIRS_PER_BLOCK // tiling.n_tiles)
        run = None
        for v0 in range(0, geometry.n_views, block):
            views = np.arange(v0, min(v0 + block, geometry.n_views))
            found = self.candidates(tiling, geometry, vec[views])
            if run is None:                     # (tile, part) pairs of all views, guessed from the first ones
                pairs = sum(c * len(idx) for c, (_, idx) in found.items()) * geometry.n_views / len(views)
                run = _Run(self, geometry, tiling, vec, centre, out, max_hits, pairs)
            for c, ((view, tile), idx) in found.items():
                run.add(c, views[view], tile, idx)
            if run.most > max_hits:
                return run.most
            bar.update(len(views))
        run.finish()
        return run.most

    def candidates(self, tiling: _Tiling, geometry: Geometry, vec: np.ndarray) -> dict[int, tuple]:
        """The tiles that any part may touch in the views with ASTRA vectors ``vec`` (V, 12), by width c (slots,
        see :meth:`width`): {c: ((view positions, tiles) each (n,), candidate convex-table rows (n, c) in part
        order, then padding rows)}."""
        view, tile, part = tiling.touching(*_outlines(self.hulls, geometry, vec))
        key = view * tiling.n_tiles + tile
        pairs = np.unique(key)
        row = self.table_row[part]
        convex = row >= 0
        count = np.bincount(np.searchsorted(pairs, key[convex]), minlength=len(pairs))
        start = np.cumsum(count) - count
        rows = np.append(row[convex], self.n_convex).astype(np.int32)       # by tile, in part order; padding
        width = np.array([self.width(n) for n in range(count.max(initial=0) + 1)])[count]
        found = {}
        for c in map(int, np.unique(width)):
            sel = np.nonzero(width == c)[0]
            j = np.arange(c)
            at = np.where(j < count[sel, None], start[sel, None] + j, len(rows) - 1)
            found[c] = (np.divmod(pairs[sel], tiling.n_tiles), rows[at])
        return found

    def width(self, count: int) -> int:
        """Candidate slots of a tile that ``count`` convex parts may touch: a power of two ≥ count, at least
        ``_MIN_SLOTS`` and at most all (≥ 1)."""
        return max(1, min(max(_bucket(count), _MIN_SLOTS), self.n_convex))

    def slot_order(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Materials (n, S) of each tile's slots in painter's order, and that order (``None``: as they come)."""
        ranks = self.convex_rank[idx]
        if not len(self.other_ranks):
            return self.slot_mat[ranks], None
        ranks = np.concatenate([ranks, np.broadcast_to(self.other_ranks, (len(idx), len(self.other_ranks)))], 1)
        perm = np.argsort(ranks, axis=1, kind="stable").astype(np.int32)
        return self.slot_mat[np.take_along_axis(ranks, perm, 1)], perm


@dataclasses.dataclass
class _Batch:
    """Tiles in flight: their views (n,), pixels (n, P) (``keep``: on the detector) and ray lengths |d| (n, P),
    the inputs of kernel 2, the k it assumed and its result as it comes (device arrays)."""

    views: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    keep: np.ndarray
    norm: np.ndarray
    slots: tuple
    k: int
    result: tuple


class _Run:
    """One path-length computation: tiles queued by width, sent in batches of a fixed size per width (one kernel
    shape each); the kernels of a batch run while the host prepares the next. Results go into ``out``.

    (XLA already spreads each kernel over the CPU cores: one JAX device per core, round-robin, was slower.)"""

    def __init__(self, tracer: _Tracer, geometry: Geometry, tiling: _Tiling, vec: np.ndarray, centre: np.ndarray,
                 out: np.ndarray, max_hits: int, pairs: float):
        self.tracer, self.geometry, self.tiling, self.vec = tracer, geometry, tiling, vec
        self.centre, self.out, self.max_hits = centre, out, max_hits
        # kernel 1 takes the same number of (tile, part) pairs from batches of every width (one shape): up to
        # ``_SLOT_RAYS`` slots × rays, fewer for fewer ``pairs`` in all (the last batch of each width is padded)
        most = _floor_pow2(_SLOT_RAYS // tiling.pixels_per_tile)
        self.pairs = max(min(most, _bucket(int(pairs) // 16)), tracer.width(tracer.n_convex))
        self.tiles = self.size(tracer.width(0))
        self.queues: dict[int, list] = {}
        self.pending: collections.deque[_Batch] = collections.deque()
        self.most = 0

    def size(self, c: int) -> int:
        """Tiles per batch of width c: a power of two, such that the batch has at most ``self.pairs`` (tile, part)
        pairs."""
        return _floor_pow2(self.pairs // c)

    def add(self, c: int, views: np.ndarray, tiles: np.ndarray, idx: np.ndarray) -> None:
        """Queue tiles of width c (views, tiles (n,), candidate rows (n, c)); launch every full batch."""
        queue = self.queues.setdefault(c, [])
        queue.append((views, tiles, idx))
        queued = sum(len(q[0]) for q in queue)
        size = self.size(c)
        if queued < size:
            return
        views, tiles, idx = (np.concatenate(x) for x in zip(*queue, strict=True))
        full = queued - queued % size
        for a in range(0, full, size):
            self.launch(views[a:a + size], tiles[a:a + size], idx[a:a + size], size)
        queue[:] = [(views[full:], tiles[full:], idx[full:])] if full < queued else []

    def finish(self) -> None:
        """Launch what is queued, padded to full batches, and collect everything."""
        for c, queue in self.queues.items():
            if queue and self.most <= self.max_hits:
                self.launch(*(np.concatenate(x) for x in zip(*queue, strict=True)), self.size(c))
        while self.pending and self.most <= self.max_hits:
            self.collect(self.pending.popleft())

    def launch(self, views, tiles, idx, size: int) -> None:
        """Start both kernels on a batch of tiles (views, tiles (n,), candidate rows (n, c)) padded to ``size``
        tiles; kernel 2 assumes the current guess of k. JAX runs them while the host goes on: the batch before
        is collected only then."""
        if self.most > self.max_hits:
            return
        tracer, tiling = self.tracer, self.tiling
        rows, cols = tiling.pixels(tiles)
        keep = (rows < tiling.rows) & (cols < tiling.cols)
        o, d, norm = _tile_rays(self.geometry, self.vec[views], rows, cols, self.centre)
        n, c = idx.shape
        pair_tile = np.zeros(self.pairs, np.int32)
        pair_tile[:n * c] = np.repeat(np.arange(n), c)
        pair_row = np.full(self.pairs, tracer.n_convex, np.int32)
        pair_row[:n * c] = idx.ravel()
        intervals = tracer.intervals(tracer.table, _padded(o, self.tiles), _padded(d, self.tiles, 1.0),
                                     jnp.asarray(pair_tile), jnp.asarray(pair_row))
        mat, perm = tracer.slot_order(_padded(idx, size, tracer.n_convex))
        slots = (*intervals, jnp.asarray(mat), jnp.asarray(_padded(keep, size)),
                 None if perm is None else jnp.asarray(perm))
        k = min(tracer.k, mat.shape[1])                                      # (one kernel for all k ≥ S)
        self.pending.append(_Batch(views, rows, cols, keep, norm, slots, k, tracer.paint(*slots, k=k)))
        while len(self.pending) > 1 and self.most <= self.max_hits:
            self.collect(self.pending.popleft())

    def collect(self, batch: _Batch) -> None:
        """Wait for a batch and write its lengths into ``out``, first running kernel 2 again if a ray crosses
        more than the k it assumed (nothing written once a ray crosses more than ``max_hits``)."""
        lengths, hits = batch.result
        hits = int(hits)
        self.most = max(self.most, hits)
        if hits > self.max_hits:
            return
        if hits > batch.k:
            self.tracer.k = max(self.tracer.k, _bucket(hits))
            lengths, _ = self.tracer.paint(*batch.slots, k=min(self.tracer.k, batch.slots[2].shape[1]))
        keep = batch.keep
        views = np.broadcast_to(batch.views[:, None], keep.shape)
        for j, x in enumerate(lengths):
            x = np.asarray(x)[:keep.size].reshape(keep.shape) * batch.norm
            self.out[j, views[keep], batch.rows[keep], batch.cols[keep]] = x[keep]


@dataclasses.dataclass(frozen=True)
class _ConvexTable:
    """Convex parts as arrays, one row per part and a last empty row for padding: ``arrays`` holds ``flat``
    (n + 1, L) shape numbers, ``rot`` (n + 1, 3, 3), ``shift`` (n + 1, 3) and ``group`` (n + 1,) (−1: padding);
    ``groups`` lists (shape class, [(key, shape, offset)]) per group."""

    arrays: dict
    groups: tuple


def _convex_table(parts: list[Part]) -> _ConvexTable:
    """The table of convex ``parts``; parts of one kind (shape class and array sizes) form a group."""
    layouts: dict[tuple, int] = {}
    groups: list = []
    rows, group = [], []
    for part in parts:
        arrs = part.shape.arrays() | part.shape.cut_arrays()
        key = (type(part.shape), tuple((k, np.shape(v)) for k, v in sorted(arrs.items())))
        if key not in layouts:
            offsets = np.cumsum([0] + [int(np.prod(s)) for _, s in key[1]])
            layouts[key] = len(groups)
            groups.append((key[0], tuple((k, s, int(off)) for (k, s), off in zip(key[1], offsets, strict=False))))
        group.append(layouts[key])
        rows.append(np.concatenate([np.ravel(arrs[k]) for k, _ in key[1]] + [np.zeros(0)]))
    width = max([len(r) for r in rows] + [1])
    flat = np.zeros((len(parts) + 1, width))
    for i, r in enumerate(rows):
        flat[i, :len(r)] = r
    rot = np.array([p.matrix for p in parts]).reshape(-1, 3, 3)
    shift = np.array([p.translation for p in parts], float).reshape(-1, 3)
    arrays = {"flat": flat, "rot": np.concatenate([rot, np.eye(3)[None]]),
              "shift": np.concatenate([shift, np.zeros((1, 3))]), "group": np.array(group + [-1], np.int32)}
    arrays = {k: jnp.asarray(v, jnp.float32 if v.dtype.kind == "f" else jnp.int32) for k, v in arrays.items()}
    return _ConvexTable(arrays, tuple(groups))


def _slot_intervals(groups, parts, others, table, o, d, tile, row):
    """Kernel 1: intervals along tiles of rays o, d (n, P, 3). Convex parts: (t0, t1), each (N, P), of the
    (tile, convex-table row) pairs ``tile``, ``row`` (N,); the other parts (meshes), on every ray: (t0, t1),
    each (M, n, P) for their M slots, or ``None``.

    One shape for all tile widths: one compilation. Nothing else happens here: XLA would fuse any further use
    of the intervals with their computation and compute them again for each use.
    """
    convex = _convex_intervals(groups, table, o[tile], d[tile], row)
    if not others:
        return convex, None
    t0s, t1s = [], []
    for i in others:
        part = parts[i]
        m = jnp.asarray(part.matrix, jnp.float32)
        a, b = part.shape.intervals((o.reshape(-1, 3) - jnp.asarray(part.translation, jnp.float32)) @ m,
                                    d.reshape(-1, 3) @ m)
        t0s.append(a.reshape(-1, *o.shape[:2]))
        t1s.append(b.reshape(-1, *o.shape[:2]))
    return convex, (jnp.concatenate(t0s), jnp.concatenate(t1s))


def _painted_lengths(n_mat: int, convex, others, mat, valid, perm, *, k: int) -> tuple:
    """Kernel 2: per-material path lengths in t units (n_mat tuple of (n · P,)) of n tiles of width c from the
    intervals of :func:`_slot_intervals` (the first n · c convex pairs, tile by tile, then the other parts'
    slots), put in painter's order by ``perm`` (n, S) (``None``: they are), with the slots' materials ``mat``
    (n, S) in that order (``n_mat``: void or padding); and the most slots a ``valid`` (n, P) ray crosses. The
    lengths are right if that is at most ``k``.

    (Scaling the lengths by |d| here would make XLA take ~10× longer to compile the kernel.)
    """
    (n, p), s = valid.shape, mat.shape[1]
    c = s - (0 if others is None else others[0].shape[0])
    t0, t1 = (x[:n * c].reshape(n, c, p) for x in convex)
    if others is not None:
        t0, t1 = (jnp.concatenate([a, b[:, :n].transpose(1, 0, 2)], 1) for a, b in zip((t0, t1), others,
                                                                                        strict=True))
    if perm is not None:
        t0, t1 = (jnp.take_along_axis(x, perm[..., None], 1) for x in (t0, t1))
    hits = jnp.max(jnp.where(valid, jnp.sum(t1 > t0, axis=1), 0))
    t0, t1 = (x.transpose(1, 0, 2).reshape(s, n * p) for x in (t0, t1))
    mat = jnp.broadcast_to(mat.T[..., None], (s, n, p)).reshape(s, n * p)
    owned = _owned_lengths if k <= _FAST_K else _owned_lengths_dense
    return owned(t0, t1, t1 > t0, mat, n_mat, k), hits


def _convex_intervals(groups, table, o, d, row):
    """(t0, t1), each (N, P): intervals of the convex-table rows ``row`` (N,) along rays o, d (N, P, 3)."""
    flat, rot, shift, group = (table[k][row] for k in ("flat", "rot", "shift", "group"))
    t0 = t1 = jnp.full(o.shape[:2], BIG, jnp.float32)
    for g, (cls, layout) in enumerate(groups):
        def one(f, m, t, o_, d_, cls=cls, layout=layout):
            a = {key: f[off:off + int(np.prod(shape))].reshape(shape) for key, shape, off in layout}
            rel = [o_[:, i] - t[i] for i in range(3)]          # world → local: q = Rᵀ(p − t), per component
            lo_ = tuple(rel[0] * m[0, j] + rel[1] * m[1, j] + rel[2] * m[2, j] for j in range(3))
            ld_ = tuple(d_[:, 0] * m[0, j] + d_[:, 1] * m[1, j] + d_[:, 2] * m[2, j] for j in range(3))
            return cls.cut_interval_arrays(a, lo_, ld_, jnp)

        a, b = jax.vmap(one)(flat, rot, shift, o, d)
        mine = (group == g)[:, None]
        t0, t1 = jnp.where(mine, a, t0), jnp.where(mine, b, t1)
    return t0, t1


def _owned_lengths(t0, t1, hit, mat, n_mat: int, k: int) -> tuple:
    """Per-material Σ of elementary segment lengths (in t units) owned by the latest covering slot.

    ``t0``, ``t1``, ``hit``, ``mat`` (S, R): each ray's candidate slots in painter's order, their intervals, whether
    they are crossed and their materials (``n_mat``: void). At most ``k`` (≤ 32, the bits of a mask) slots of a
    ray are crossed.

    The crossed slots are compacted into k rows (unless S ≤ k: by selects, or a scatter for S above
    ``_CHAIN_SLOTS``) and their 2k ends sorted by a fixed network, each carrying its slot's bit; a sweep along
    the sorted ends then knows the set of slots covering each segment as a bit mask, whose highest bit is the
    owner. No (k, 2k, R) cover tensor and no XLA sort (slow on CPU): a fixed sequence of per-row element-wise
    operations, which XLA fuses into one loop. Returns a tuple of n_mat (R,) arrays.
    """
    if t0.shape[0] > max(k, _CHAIN_SLOTS):
        t0, t1, hit, mat = _scatter_compact(t0, t1, hit, mat, n_mat, k)
    rows = [(t0[s], t1[s], hit[s], mat[s]) for s in range(t0.shape[0])]
    ends0, ends1, masks = _compact(rows, n_mat, k)
    bits = [jnp.full(ends0[0].shape, 1 << j, jnp.uint32) for j in range(len(ends0))]
    ends, flips = _sort_network(ends0 + ends1, bits + bits)
    cover = jnp.zeros(ends[0].shape, jnp.uint32)
    out = [jnp.zeros(ends[0].shape, jnp.float32) for _ in range(n_mat)]
    for i in range(len(ends) - 1):
        cover = cover ^ flips[i]                        # the slots covering (ends[i], ends[i + 1])
        seg = jnp.where(ends[i + 1] < BIG / 2, ends[i + 1] - ends[i], 0.0)
        for j, mine in enumerate(masks):                # the highest bit of cover is material j's
            out[j] = out[j] + jnp.where((cover & mine) > (cover & ~mine), seg, 0.0)
    return tuple(out)


def _scatter_compact(t0, t1, hit, mat, n_mat: int, k: int):
    """The crossed slots of (S, R) rows, in order, into k rows (one scatter; empty rows: BIG, not crossed)."""
    row = jnp.where(hit, jnp.cumsum(hit, axis=0) - 1, k)                # missed slots: row k, dropped
    col = jnp.broadcast_to(jnp.arange(t0.shape[1])[None], t0.shape)

    def compact(values, fill):
        return jnp.full((k, t0.shape[1]), fill, values.dtype).at[row, col].set(
            values, mode="drop", unique_indices=True)

    t0, t1 = compact(t0, BIG), compact(t1, BIG)
    return t0, t1, t1 > t0, compact(mat, n_mat)


def _compact(rows, n_mat: int, k: int):
    """Crossed slots of per-slot rows (t0, t1, hit, mat) → ([t0], [t1]) of k rows (empty: BIG) and per material
    the bit mask of the compacted rows it owns. With at most k rows, none are moved."""
    if len(rows) <= k:
        t0 = [jnp.where(h, a, BIG) for a, _, h, _ in rows]
        t1 = [jnp.where(h, b, BIG) for _, b, h, _ in rows]
        pos = [jnp.full(rows[0][0].shape, s, jnp.uint32) for s in range(len(rows))]
    else:
        pos, n = [], jnp.zeros(rows[0][0].shape, jnp.uint32)
        for _, _, h, _ in rows:
            pos.append(n)
            n = n + h.astype(jnp.uint32)
        t0, t1 = [], []
        for j in range(k):                              # row j: the slot crossed after j others
            a = b = jnp.full(rows[0][0].shape, BIG, jnp.float32)
            for s in range(j, len(rows)):
                take = rows[s][2] & (pos[s] == j)
                a, b = jnp.where(take, rows[s][0], a), jnp.where(take, rows[s][1], b)
            t0.append(a)
            t1.append(b)
    masks = []
    for j in range(n_mat):
        mask = jnp.zeros(rows[0][0].shape, jnp.uint32)
        for (_, _, h, m), p in zip(rows, pos, strict=True):
            mask = mask | jnp.where(h & (m == j), jnp.left_shift(jnp.uint32(1), p), jnp.uint32(0))
        masks.append(mask)
    return t0, t1, masks


def _sort_network(keys: list, payload: list) -> tuple[list, list]:
    """Sort rows ``keys`` element-wise (ascending, Batcher's odd–even merge network), moving ``payload`` along."""
    keys, payload = list(keys), list(payload)
    for a, b in _batcher_pairs(len(keys)):
        swap = keys[b] < keys[a]
        keys[a], keys[b] = jnp.where(swap, keys[b], keys[a]), jnp.where(swap, keys[a], keys[b])
        payload[a], payload[b] = jnp.where(swap, payload[b], payload[a]), jnp.where(swap, payload[a], payload[b])
    return keys, payload


@functools.lru_cache(maxsize=64)
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators (a < b) of Batcher's odd–even merge sort of n items (the network for the next power of two,
    less the comparators that touch the missing items, which would sit above all others)."""
    pairs, size, p = [], 1 << max(0, (n - 1).bit_length()), 1
    while p < size:
        q = p
        while q >= 1:
            for j in range(q % p, size - q, 2 * q):
                for i in range(min(q, size - j - q)):
                    if (i + j) // (2 * p) == (i + j + q) // (2 * p) and i + j + q < n:
                        pairs.append((i + j, i + j + q))
            q //= 2
        p *= 2
    return tuple(pairs)


def _owned_lengths_dense(t0, t1, hit, mat, n_mat: int, k: int) -> tuple:
    """:func:`_owned_lengths` for any k, from a (k, 2k − 1, R) cover tensor: slower, for many crossings."""
    if k < t0.shape[0]:
        t0, t1, hit, mat = _scatter_compact(t0, t1, hit, mat, n_mat, k)
    t0 = jnp.where(hit, t0, BIG)
    t1 = jnp.where(hit, t1, BIG)
    ends = jnp.sort(jnp.concatenate([t0, t1], 0), axis=0)               # (2k, R)
    mid = (ends[:-1] + ends[1:]) / 2
    seg = ends[1:] - ends[:-1]
    cover = (t0[:, None] <= mid[None]) & (mid[None] < t1[:, None])        # (k, 2k-1, R)
    rows = jnp.arange(t0.shape[0])[:, None, None]
    owner = jnp.max(jnp.where(cover, rows, -1), axis=0)                   # latest covering slot
    owned = jnp.where(owner >= 0, jnp.take_along_axis(mat, jnp.maximum(owner, 0), 0), n_mat)
    seg = jnp.where(seg < BIG / 2, seg, 0.0)
    return tuple(jnp.sum(jnp.where(owned == j, seg, 0.0), axis=0) for j in range(n_mat))

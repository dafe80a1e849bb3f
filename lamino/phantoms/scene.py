"""Phantoms as resolution-independent scenes of placed, material-tagged shapes (lengths mm, μ 1/mm).

Composition rule: **later parts replace earlier ones** wherever they overlap (painter's rule). A part whose
material is ``"void"`` removes what lies under it (holes, pores, hollow undersides) and is not reported.

A phantom gives three views of itself that agree with each other:

- :meth:`Phantom.voxelize`: anti-aliased per-material volume fractions and label masks on a grid, from
  ``supersample``³ point samples per voxel;
- :meth:`Phantom.attenuation`: μ(E) volumes, Σ_m f_m·μ_m(E);
- :meth:`Phantom.path_lengths`: **exact** per-material path lengths of every detector ray of a geometry, by
  ray–shape intersection and the painter's rule along each ray (no voxels: the inverse-crime-free reference),
  traced by :mod:`lamino.phantoms.raytrace`.

Parts and their placement are :mod:`lamino.phantoms.parts` (``Part``, ``place`` and ``VOID`` are re-exported here).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lamino.geometry import Geometry, VolumeGrid
from lamino.materials import Material, get_material
from lamino.phantoms.parts import VOID, Part, place
from lamino.phantoms.raytrace import trace_path_lengths
from lamino.phantoms.shapes import Box, Cylinder, Prism

__all__ = ["VOID", "Part", "Phantom", "Voxelized", "place"]


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
    def sample_size(self) -> tuple[float, float, float]:
        """(z, y, x) mm of the smallest box centred on the origin that holds the sample: what region-of-interest
        reconstruction takes as the sample's extent (``sample_size`` of :func:`lamino.recon.fbp.fbp`)."""
        lo, hi = (np.abs(np.asarray(b, float)) for b in self.bounds)
        return tuple(float(2 * m) for m in np.maximum(lo, hi)[::-1])

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
        touches it; tiles with about as many such parts, from all views, are traced together
        (:mod:`lamino.phantoms.raytrace`). A phantom that is
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
        with tqdm(total=geometry.n_views, desc=f"path lengths {self.name}", unit="view",
                  disable=not progress) as bar:
            out, hits = trace_path_lengths(self.parts, tuple(mats), geometry, (lo + hi) / 2, max_hits, bar)
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
    m = part.matrix
    return (isinstance(part.shape, (Box, Cylinder, Prism)) and not part.shape.cuts
            and np.allclose(m[2], (0, 0, 1)) and np.allclose(m[:, 2], (0, 0, 1)))


def _fine_axis(grid: VolumeGrid, dim: int, k: int) -> np.ndarray:
    """Sample coordinates (mm) along array axis ``dim``: k per voxel, at sub-voxel centres."""
    sub = ((np.arange(k) + 0.5) / k - 0.5) * grid.voxel_size[dim]
    return (grid.axis(dim)[:, None] + sub[None, :]).ravel()


def _index_range(axis: np.ndarray, lo: float, hi: float) -> tuple[int, int]:
    return int(np.searchsorted(axis, lo, "left")), int(np.searchsorted(axis, hi, "right"))

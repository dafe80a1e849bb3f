"""Phantom parts as triangle meshes (trimesh) and STL export, for CAD tools and other simulators."""

from __future__ import annotations

import os

import numpy as np
import trimesh

from lamino.io import atomic_write
from lamino.phantoms.shapes import Box, Cylinder, Ellipsoid, Frustum, Prism


def _clip_convex(mesh: trimesh.Trimesh, cuts) -> trimesh.Trimesh:
    """Convex mesh ∩ half-spaces n·q ≤ c, as the hull of kept vertices and edge–plane crossings."""
    for normal, offset in cuts:
        n = np.asarray(normal, float)
        v = mesh.vertices
        side = v @ n - offset
        e = mesh.edges_unique
        a, b = side[e[:, 0]], side[e[:, 1]]
        crossing = (a < 0) != (b < 0)
        t = a[crossing] / (a[crossing] - b[crossing])
        pts = v[e[crossing, 0]] + t[:, None] * (v[e[crossing, 1]] - v[e[crossing, 0]])
        kept = np.concatenate([v[side <= 0], pts])
        if len(kept) < 4:
            return trimesh.Trimesh()
        mesh = trimesh.convex.convex_hull(kept)
    return mesh


def shape_mesh(shape) -> trimesh.Trimesh:
    """A watertight mesh of a shape in its local frame (curved surfaces as 64-gons / icospheres)."""
    if isinstance(shape, Box):
        mesh = trimesh.creation.box(extents=shape.size)
    elif isinstance(shape, Cylinder):
        mesh = trimesh.creation.cylinder(radius=shape.radius, height=shape.height, sections=64)
    elif isinstance(shape, Ellipsoid):
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
        mesh.apply_scale(shape.semi_axes)
    elif isinstance(shape, Prism):
        v = np.asarray(shape.vertices)
        h = shape.height / 2
        mesh = trimesh.convex.convex_hull(np.concatenate([np.c_[v, np.full(len(v), -h)], np.c_[v, np.full(len(v), h)]]))
    elif isinstance(shape, Frustum):
        ring = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = [np.c_[r * np.cos(ring), r * np.sin(ring), np.full(64, z)]
               for r, z in ((shape.radius_bottom, -shape.height / 2), (shape.radius_top, shape.height / 2))]
        mesh = trimesh.convex.convex_hull(np.concatenate(pts))
    elif hasattr(shape, "mesh"):
        return shape.mesh.copy()
    else:
        raise ValueError(f"shape {type(shape).__name__} has no mesh form")
    return _clip_convex(mesh, getattr(shape, "cuts", ()))


def part_mesh(part) -> trimesh.Trimesh:
    """The part's mesh placed in the sample frame (mm)."""
    mesh = shape_mesh(part.shape)
    transform = np.eye(4)
    transform[:3, :3] = part.matrix
    transform[:3, 3] = part.translation
    mesh.apply_transform(transform)
    return mesh


def export_stl(meshes: list, folder: str) -> list[str]:
    """One binary STL per material (concatenated parts) written atomically into ``folder``."""
    os.makedirs(folder, exist_ok=True)
    by_material: dict[str, list] = {}
    for _, material, mesh in meshes:
        if len(mesh.faces):
            by_material.setdefault(material, []).append(mesh)
    paths = []
    for material, parts in sorted(by_material.items()):
        path = os.path.join(folder, f"{material}.stl")
        with atomic_write(path, suffix=".stl") as tmp:
            trimesh.util.concatenate(parts).export(tmp, file_type="stl")
        paths.append(path)
    return paths

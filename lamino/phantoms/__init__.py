"""Phantoms: resolution-independent scenes with real dimensions (mm) and materials.

``names()`` lists the procedural phantoms, ``get(name, **params)`` builds one, ``from_mesh(...)`` turns a
watertight triangle mesh into a phantom. Every phantom can be voxelised (:meth:`Phantom.voxelize`), turned
into μ volumes (:meth:`Phantom.attenuation`) and traced exactly (:meth:`Phantom.path_lengths`).

Modules: ``parts`` (a shape placed with a material), ``scene`` (the phantom: composition, voxels, μ),
``raytrace`` and ``paint`` (the exact ray tracer and its kernels), ``mesh_projection`` (exact path lengths of
closed meshes), ``shapes`` and ``mesh`` (the shapes), one module per named phantom.
"""

from __future__ import annotations

import inspect

from lamino.phantoms.lego import lego
from lamino.phantoms.parts import Part, place
from lamino.phantoms.pouch_cell import pouch_cell
from lamino.phantoms.scene import Phantom, Voxelized
from lamino.phantoms.shapes import Box, Cylinder, Ellipsoid, Frustum, Prism
from lamino.phantoms.siemens_star import siemens_star
from lamino.phantoms.ssb_pellet import ssb_pellet

_BUILDERS = {"lego": lego, "pouch_cell": pouch_cell, "siemens_star": siemens_star, "ssb_pellet": ssb_pellet}

__all__ = ["Box", "Cylinder", "Ellipsoid", "Frustum", "Part", "Phantom", "Prism", "Voxelized", "from_mesh", "get",
           "names", "parameters", "place"]


def names() -> list[str]:
    """Names of the procedural phantoms."""
    return sorted(_BUILDERS)


def parameters(name: str) -> dict:
    """Default parameters of a named phantom."""
    builder = _builder(name)
    return {k: p.default for k, p in inspect.signature(builder).parameters.items()}


def get(name: str, **params) -> Phantom:
    """Build the named phantom; every parameter has a realistic default (see ``parameters(name)``)."""
    builder = _builder(name)
    allowed = inspect.signature(builder).parameters
    unknown = [k for k in params if k not in allowed]
    if unknown:
        raise ValueError(f"parameter {unknown[0]!r} is not allowed for phantom {name!r}: "
                         f"allowed are {', '.join(allowed)}")
    return builder(**params)


def from_mesh(path_or_mesh, material: str = "aluminium", units: str = "mm", label: str | None = "part",
              name: str | None = None) -> Phantom:
    """A phantom from a watertight STL/OBJ/PLY mesh (or ``trimesh.Trimesh``) of one ``material``."""
    from lamino.phantoms.mesh import MeshShape, load_mesh

    mesh = load_mesh(path_or_mesh, units=units)
    title = name or (str(path_or_mesh) if isinstance(path_or_mesh, str) else "mesh")
    return Phantom.build(title, [Part(MeshShape(mesh), material, label)], {"source": title, "units": units})


def _builder(name: str):
    if name not in _BUILDERS:
        raise ValueError(f"unknown phantom {name!r}: known phantoms are {', '.join(names())}")
    return _BUILDERS[name]

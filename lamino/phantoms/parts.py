"""Parts of a scene: a shape placed in the sample frame (rotation, then translation; mm) with a material.

``VOID`` is the material of parts that remove what lies under them (holes, pores); see :mod:`lamino.phantoms.scene`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from lamino.geometry import rotation_x, rotation_y, rotation_z

__all__ = ["VOID", "Part", "place"]

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

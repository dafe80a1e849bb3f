"""The voxel grid of phantoms and reconstructions: :class:`VolumeGrid` (mm, sample frame)."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lamino.geometry.acquisition import Geometry


def _check_positive(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number > 0")


@dataclasses.dataclass(frozen=True)
class VolumeGrid:
    """Reconstruction/phantom voxel grid: ``shape`` (nz, ny, nx), ``voxel_size`` (sz, sy, sx) mm, ``center`` mm.

    Voxel (k, j, i) has centre ((i − (nx−1)/2)·sx + cx, (j − (ny−1)/2)·sy + cy, (k − (nz−1)/2)·sz + cz).
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __init__(self, shape, voxel_size=1.0, center=(0.0, 0.0, 0.0)):
        try:
            shp = tuple(int(s) for s in shape)
            ok = len(shp) == 3 and all(float(s) == int(s) and int(s) >= 1 for s in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"shape={shape!r} is not allowed: give (nz, ny, nx), integers ≥ 1")
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,)) if np.ndim(voxel_size) <= 1 else None
        if vs is None or np.size(voxel_size) not in (1, 3) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            raise ValueError(f"voxel_size={voxel_size!r} is not allowed: give one or three (sz, sy, sx) sizes > 0 mm")
        ctr = np.asarray(center, dtype=float)
        if ctr.shape != (3,) or not np.all(np.isfinite(ctr)):
            raise ValueError(f"center={center!r} is not allowed: give three finite numbers (cz, cy, cx) in mm")
        object.__setattr__(self, "shape", shp)
        object.__setattr__(self, "voxel_size", tuple(float(x) for x in vs))
        object.__setattr__(self, "center", tuple(float(x) for x in ctr))

    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the grid box (z, y, x) in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.voxel_size, strict=True))

    def axis(self, dim: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along array axis ``dim`` (0 = z, 1 = y, 2 = x)."""
        n, s, c = self.shape[dim], self.voxel_size[dim], self.center[dim]
        return (np.arange(n) - (n - 1) / 2) * s + c

    def corners(self) -> np.ndarray:
        """The 8 corners of the grid box as sample-frame (x, y, z) points in mm: (8, 3)."""
        lo = [c - e / 2 for c, e in zip(self.center, self.extent, strict=True)]
        hi = [c + e / 2 for c, e in zip(self.center, self.extent, strict=True)]
        zz, yy, xx = np.meshgrid(*[[lo[i], hi[i]] for i in range(3)], indexing="ij")
        return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "voxel_size": list(self.voxel_size), "center": list(self.center)}

    @classmethod
    def from_dict(cls, d: dict) -> VolumeGrid:
        return cls(d["shape"], d["voxel_size"], d.get("center", (0.0, 0.0, 0.0)))

    @classmethod
    def fit(cls, geometry: Geometry, voxel_size: float | None = None,
            sample_size: tuple[float, float, float] | None = None) -> VolumeGrid:
        """A grid centred on the axis that covers what the detector sees in every view.

        ``voxel_size`` defaults to the detector pixel size at the object (du / magnification).
        ``sample_size`` (z, y, x) mm sizes the grid to a sample instead; a warning says when part of that
        sample leaves the detector in some views (truncated data).
        """
        du = geometry.det_spacing[1] / geometry.magnification
        vs = float(voxel_size) if voxel_size is not None else du
        _check_positive(vs, "voxel_size")
        if sample_size is not None:
            size = np.asarray(sample_size, dtype=float)
            if size.shape != (3,) or np.any(~np.isfinite(size)) or np.any(size <= 0):
                raise ValueError(f"sample_size={sample_size!r} is not allowed: give (z, y, x) sizes > 0 mm")
            shape = tuple(max(1, int(math.ceil(s / vs - 1e-9))) for s in size)
            grid = cls(shape, vs)
            outside = geometry.truncation(grid)
            if outside > 0:
                warnings.warn(f"the sample ({size.tolist()} mm) leaves the detector in some views: "
                              f"{outside:.0%} of its corner projections fall outside; data will be truncated",
                              stacklevel=2)
            return grid
        rows, cols = geometry.det_shape
        dv = geometry.det_spacing[0] / geometry.magnification
        half_w = cols * du / 2 - abs(float(geometry.cor_offset))
        half_h = rows * dv / 2
        # largest in-plane square and height whose every point stays on the detector (parallel estimate)
        a = math.radians(float(geometry.tilt_deg))
        radius = half_w
        if math.sin(a) > 0:                  # leave room for at least one voxel layer in the row band
            radius = min(radius, (half_h - vs * math.cos(a) / 2) / math.sin(a))
        if radius <= vs:
            raise ValueError(f"voxel_size={vs!r} is not allowed: the detector sees less than one voxel")
        nxy = max(1, int(math.floor(2 * radius / math.sqrt(2) / vs)))
        half_z = (half_h - radius * math.sin(a)) / math.cos(a)
        nz = max(1, int(math.floor(2 * half_z / vs)))
        return cls((nz, nxy, nxy), vs)


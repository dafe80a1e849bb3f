"""Acquisition geometry and voxel grid of CT/CL scans (mm, degrees; convention in ``docs/architecture.md``).

- :mod:`lamino.geometry.acquisition`: :class:`Geometry` (beam, tilt, views, detector, misalignments; a pytree);
- :mod:`lamino.geometry.grid`: :class:`VolumeGrid` (voxel centres of a (nz, ny, nx) volume);
- :mod:`lamino.geometry.frame`: the detector frame (pixel centres, rays, projection of points, field of view).
"""

from lamino.geometry import frame
from lamino.geometry.acquisition import Geometry, rotation_x, rotation_y, rotation_z
from lamino.geometry.grid import VolumeGrid

__all__ = ["Geometry", "VolumeGrid", "frame", "rotation_x", "rotation_y", "rotation_z"]

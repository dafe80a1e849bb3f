"""The :class:`Volume` dataset: a reconstructed (or any) μ volume on its grid, with how it was made."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.io import nxtomo
from lamino.io.files import new_file

__all__ = ["Volume"]


@dataclasses.dataclass(eq=False)
class Volume:
    """A reconstructed (or any) μ volume on its grid, with how it was made.

    ``data`` (nz, ny, nx) float32 in 1/mm on ``grid``; ``geometry`` the acquisition it came from; ``method``,
    ``params`` and per-iteration ``history`` of the reconstruction; ``provenance`` (lamino version, source file,
    …); ``measured_fraction`` (nz, ny, nx) float32, the fraction of the views in which each voxel was on the
    detector (:meth:`Geometry.measured_fraction`), or None.
    :meth:`save` writes NeXus **NXtomoproc** (``/entry/data/data`` with x, y, z axes in mm and an
    NXprocess ``/entry/reconstruction``) plus ``/entry/lamino`` (grid, geometry, method, params, history);
    see :mod:`lamino.io.nxtomo`.
    """

    data: np.ndarray
    grid: VolumeGrid
    geometry: Geometry | None = None
    method: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    history: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)
    measured_fraction: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if self.measured_fraction is not None:
            self.measured_fraction = np.asarray(self.measured_fraction, dtype=np.float32)
            if self.measured_fraction.shape != self.data.shape:
                raise ValueError(f"measured_fraction with shape {self.measured_fraction.shape} is not allowed: "
                                 f"give one value per voxel, {self.data.shape}")
        if not isinstance(self.grid, VolumeGrid):
            raise ValueError(f"grid={type(self.grid).__name__} is not allowed: give a VolumeGrid")
        if self.data.shape != tuple(self.grid.shape):
            raise ValueError(f"data with shape {self.data.shape} is not allowed: the grid is {self.grid.shape}")
        if self.geometry is not None and not isinstance(self.geometry, Geometry):
            raise ValueError(f"geometry={type(self.geometry).__name__} is not allowed: give a Geometry or None")

    def save(self, path, overwrite: bool = False) -> str:
        """Write an NXtomoproc HDF5 file atomically (an existing file only with ``overwrite``); return ``path``."""
        path = new_file(path, overwrite)
        nxtomo.write_volume(self, path)
        return path

    @classmethod
    def load(cls, path) -> Volume:
        """Read a file written by :meth:`save`."""
        path = os.fspath(path)
        fields = nxtomo.read_volume(path)
        try:
            return cls(**fields)
        except ValueError as exc:
            raise ValueError(f"path={path!r} holds an inconsistent volume: {exc}") from None

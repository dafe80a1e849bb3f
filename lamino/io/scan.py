"""The :class:`Scan` dataset: what a CL scanner records, with the acquisition geometry, truth and provenance.

A :class:`Scan` holds raw projections, flat and dark frames (detector units), the acquisition
:class:`~lamino.geometry.Geometry`, and for simulations the :class:`GroundTruth` and provenance.
:meth:`Scan.save` / :meth:`Scan.load` write and read NXtomo HDF5 files (:mod:`lamino.io.nxtomo`),
:meth:`Scan.export_tiff` TIFF images (:mod:`lamino.io.tiff`), :meth:`Scan.line_integrals` applies the
flat/dark correction (:mod:`lamino.io.correction`). Lengths mm, energies keV, angles degrees.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.io import nxtomo, tiff
from lamino.io.correction import flat_dark_correct
from lamino.io.files import new_file
from lamino.io.nxtomo import SCAN_METADATA

__all__ = ["GroundTruth", "Scan"]


@dataclasses.dataclass(frozen=True, eq=False)
class GroundTruth:
    """The truth behind a simulated scan: ``mu`` (nz, ny, nx) float32 in 1/mm at ``energy_kev`` (keV) on
    ``grid``, and boolean ``labels`` {name: (nz, ny, nx) bool} (e.g. particles, cracks) for scoring."""

    mu: np.ndarray
    grid: VolumeGrid
    energy_kev: float
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.grid, VolumeGrid):
            raise ValueError(f"grid={self.grid!r} is not allowed: give a lamino.geometry.VolumeGrid")
        mu = np.asarray(self.mu, dtype=np.float32)
        if mu.shape != self.grid.shape:
            raise ValueError(f"mu with shape {mu.shape} is not allowed: it must match grid.shape={self.grid.shape}")
        energy = float(self.energy_kev)
        if not (math.isfinite(energy) and energy > 0):
            raise ValueError(f"energy_kev={self.energy_kev!r} is not allowed: it must be a finite energy > 0 keV")
        if not isinstance(self.labels, dict):
            raise ValueError(f"labels of type {type(self.labels).__name__} is not allowed: give a dict name -> array")
        labels = {}
        for name, mask in self.labels.items():
            arr = np.asarray(mask)
            if not isinstance(name, str) or name in ("", ".", "..") or "/" in name:
                raise ValueError(f"label name {name!r} is not allowed: give a non-empty string without '/'")
            if arr.dtype != bool or arr.shape != self.grid.shape:
                raise ValueError(f"labels[{name!r}] with dtype {arr.dtype} and shape {arr.shape} is not allowed: "
                                 f"it must be bool with grid.shape={self.grid.shape}")
            labels[name] = arr
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "energy_kev", energy)
        object.__setattr__(self, "labels", labels)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroundTruth):
            return NotImplemented
        return (self.grid == other.grid and self.energy_kev == other.energy_kev
                and np.array_equal(self.mu, other.mu) and self.labels.keys() == other.labels.keys()
                and all(np.array_equal(self.labels[k], other.labels[k]) for k in self.labels))


@dataclasses.dataclass(eq=False)
class Scan:
    """A CL/CT scan as recorded: raw frames in detector units (ADU or counts), geometry, truth and provenance.

    ``counts`` (n_views, rows, cols), ``flats`` and ``darks`` (k, rows, cols) float32 (2-D frames get a
    leading axis). ``scanner`` is ``Scanner.to_dict()``, ``phantom`` ``{"name": ..., "params": {...},
    "sample_size_mm": [z, y, x]}``,
    ``provenance`` lamino version, seed, parameters and date; all three must be JSON-serialisable.
    ``source`` is the file :meth:`load` read it from (None for a scan made in memory), named in error messages.
    """

    counts: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    geometry: Geometry
    scanner: dict = dataclasses.field(default_factory=dict)
    phantom: dict = dataclasses.field(default_factory=dict)
    truth: GroundTruth | None = None
    provenance: dict = dataclasses.field(default_factory=dict)
    source: str | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        g = self.geometry
        if not isinstance(g, Geometry) or not g.is_concrete:
            raise ValueError(f"geometry={g!r} is not allowed: give a concrete lamino.geometry.Geometry")
        rows, cols = g.det_shape
        self.counts = np.asarray(self.counts, dtype=np.float32)
        if self.counts.shape != (g.n_views, rows, cols):
            raise ValueError(f"counts with shape {self.counts.shape} is not allowed: the geometry needs "
                             f"(n_views, rows, cols) = {(g.n_views, rows, cols)}")
        for name in ("flats", "darks"):
            frames = np.asarray(getattr(self, name), dtype=np.float32)
            frames = frames[None] if frames.ndim == 2 else frames
            if frames.ndim != 3 or frames.shape[0] < 1 or frames.shape[1:] != (rows, cols):
                raise ValueError(f"{name} with shape {frames.shape} is not allowed: give (k ≥ 1, rows, cols) = "
                                 f"(k, {rows}, {cols}) frames")
            setattr(self, name, frames)
        for name in SCAN_METADATA:
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} of type {type(getattr(self, name)).__name__} is not allowed: give a dict")
        if self.source is not None and not isinstance(self.source, str):
            raise ValueError(f"source={self.source!r} is not allowed: give the file path as a str or None")
        if self.truth is not None and not isinstance(self.truth, GroundTruth):
            raise ValueError(f"truth of type {type(self.truth).__name__} is not allowed: give a GroundTruth or None")

    # ------------------------------------------------------------------ summary
    @property
    def n_views(self) -> int:
        return self.counts.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_views, rows, cols) of the projections."""
        return tuple(self.counts.shape)

    def __repr__(self) -> str:
        g = self.geometry
        trajectory = "custom trajectory" if g.custom_vectors is not None else f"tilt {g.tilt_deg:g}°"
        parts = [f"{g.beam} beam, {trajectory}", f"{self.n_views} views of {g.det_shape[0]}×{g.det_shape[1]} px",
                 f"{len(self.flats)} flat, {len(self.darks)} dark frames"]
        if self.phantom.get("name"):
            parts.append(f"phantom {self.phantom['name']!r}")
        if self.truth is not None:
            parts.append("truth {}×{}×{}".format(*self.truth.grid.shape))
        return f"Scan({', '.join(parts)})"

    def line_integrals(self, min_transmission: float = 1e-6) -> np.ndarray:
        """Flat/dark corrected ``−log T``: (n_views, rows, cols) float32; see :func:`flat_dark_correct`."""
        return flat_dark_correct(self.counts, self.flats, self.darks, min_transmission, source=self.source)

    # ------------------------------------------------------------------ files
    def save(self, path, overwrite: bool = False) -> str:
        """Write an NXtomo HDF5 file (see :mod:`lamino.io.nxtomo`) atomically; return ``path``."""
        path = new_file(path, overwrite)
        nxtomo.write_scan(self, path)
        return path

    @classmethod
    def load(cls, path) -> Scan:
        """Read a file written by :meth:`save`; arrays, geometry, dicts and truth come back identical."""
        path = os.fspath(path)
        fields = nxtomo.read_scan(path)
        truth = fields.pop("truth")
        try:
            return cls(truth=None if truth is None else GroundTruth(**truth), source=path, **fields)
        except ValueError as exc:
            raise ValueError(f"path={path!r} holds an inconsistent scan: {exc}") from None

    def export_tiff(self, folder, overwrite: bool = False) -> list[str]:
        """Write ``proj_0000.tif`` … (one float32 TIFF per view), ``flat.tif`` and ``dark.tif`` (averaged
        frames) and ``geometry.json`` (``Geometry.to_dict()``, mm, degrees) into ``folder``; return the paths.

        Each file is written atomically. A non-empty ``folder`` is refused unless ``overwrite``; then
        projections of an earlier export that this one does not replace are removed.
        """
        return tiff.export_scan(self, folder, overwrite)

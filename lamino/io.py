"""File I/O shared by lamino: atomic writes, the :class:`Scan` dataset and its files, flat/dark correction.

A :class:`Scan` holds what a CL scanner records (raw projections, flat and dark frames, in detector units),
the acquisition :class:`~lamino.geometry.Geometry`, and for simulations the ground truth and provenance.
:meth:`Scan.save` writes an HDF5 file following the NeXus **NXtomo** application definition, readable by
NXtomo tools (e.g. the ``nxtomo`` package, tomwer, nabu), plus lamino's own group ``/entry/lamino``
(geometry, ASTRA vectors, truth) from which :meth:`Scan.load` rebuilds the scan exactly::

    /entry                 NXentry: definition "NXtomo", title, start_time
      instrument           NXinstrument
        source             NXsource: name, type, probe "x-ray" (cone beam: distance = −SOD, m)
        detector           NXdetector: data (darks, flats, projections) float32, image_key (2, 1, 0),
                           x_pixel_size, y_pixel_size (m), distance (cone beam: SDD − SOD, m)
      sample               NXsample: name, rotation_angle (degrees, one per frame)
      control              NXmonitor: data = tube current per frame (A; cone beam with a known current)
      data                 NXdata: links to data, rotation_angle, image_key
      lamino               NXcollection: geometry (JSON), vectors (n_views, 12) mm, tilt_deg,
                           scanner / phantom / provenance (JSON), truth/ (mu 1/mm, grid, energy_kev, labels/)

NXtomo has no tilted rotation axis: tools that read only the NXtomo part see an ordinary CT scan; the
laminography geometry is in ``/entry/lamino``. Lengths in the NXtomo part are metres (NeXus units
attributes); everywhere else mm, keV, degrees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import glob
import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from lamino.geometry import Geometry, VolumeGrid

FORMAT = "lamino.scan"
FORMAT_VERSION = 1
DARK, FLAT, PROJECTION = 2, 1, 0           # NXtomo image_key values
NXTOMO_VERSION = 2.1                        # layout version read by the ``nxtomo`` package
_CHUNK_BYTES = 64 * 2**20                   # working memory of flat_dark_correct per chunk of views
_META = ("scanner", "phantom", "provenance")


@contextlib.contextmanager
def atomic_write(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary file name beside ``path``; on success rename it to ``path``, on error delete it.

    Readers never see a half-written ``path``, and a failed write leaves nothing behind. The temporary name is
    hidden (``.<name>.<random><suffix>``), so a process killed mid-write leaves no file that looks finished.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)                     # mkstemp makes 0600; final files follow the umask
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


# ---------------------------------------------------------------------------------------------- correction
def flat_dark_correct(counts, flats, darks, min_transmission: float = 1e-6) -> np.ndarray:
    """Line integrals ``−log T`` with ``T = (I − D) / (F − D)``: (n_views, rows, cols) float32, dimensionless.

    ``counts`` (n_views, rows, cols) raw projections I; ``flats`` and ``darks`` (k, rows, cols) or (rows, cols)
    frames, averaged over their first axis into F and D. All in the same detector units (ADU or counts).
    Transmissions that are non-positive, non-finite or below ``min_transmission`` become ``min_transmission``;
    pixels with no open beam (F − D ≤ 0 or non-finite) get T = 1 (line integral 0). The result is always
    finite. Works view-chunk by view-chunk, so ``counts`` may be any array-like that slices (e.g. an h5py
    dataset) and the working memory stays bounded.
    """
    m = float(min_transmission)
    if not (math.isfinite(m) and 0.0 < m <= 1.0):
        raise ValueError(f"min_transmission={min_transmission!r} is not allowed: it must lie in (0, 1]")
    shape = tuple(np.shape(counts))
    if len(shape) != 3:
        raise ValueError(f"counts with shape {shape} is not allowed: give (n_views, rows, cols) frames")
    n_views, rows, cols = shape
    dark = _mean_frame(darks, "darks", (rows, cols))
    open_beam = _mean_frame(flats, "flats", (rows, cols)) - dark
    lit = np.isfinite(open_beam) & (open_beam > 0)
    denominator = np.where(lit, open_beam, 1.0)
    out = np.empty(shape, dtype=np.float32)
    step = max(1, _CHUNK_BYTES // (8 * rows * cols))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for start in range(0, n_views, step):
            t = (np.asarray(counts[start:start + step], dtype=np.float64) - dark) / denominator
            t = np.where(lit, t, 1.0)
            t = np.where(np.isfinite(t), np.maximum(t, m), m)
            out[start:start + step] = -np.log(t)
    return out


def _mean_frame(frames, name: str, det_shape: tuple[int, int]) -> np.ndarray:
    """Average (k, rows, cols) or (rows, cols) frames over k: (rows, cols) float64."""
    arr = np.asarray(frames, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1:] != det_shape:
        raise ValueError(f"{name} with shape {arr.shape} is not allowed: give (k ≥ 1, rows, cols) = (k, "
                         f"{det_shape[0]}, {det_shape[1]}) frames")
    return arr.mean(axis=0)


# ---------------------------------------------------------------------------------------------- datasets
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
    leading axis). ``scanner`` is ``Scanner.to_dict()``, ``phantom`` ``{"name": ..., "params": {...}}``,
    ``provenance`` lamino version, seed, parameters and date; all three must be JSON-serialisable.
    """

    counts: np.ndarray
    flats: np.ndarray
    darks: np.ndarray
    geometry: Geometry
    scanner: dict = dataclasses.field(default_factory=dict)
    phantom: dict = dataclasses.field(default_factory=dict)
    truth: GroundTruth | None = None
    provenance: dict = dataclasses.field(default_factory=dict)

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
        for name in _META:
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} of type {type(getattr(self, name)).__name__} is not allowed: give a dict")
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
        return flat_dark_correct(self.counts, self.flats, self.darks, min_transmission)

    # ------------------------------------------------------------------ HDF5 (NXtomo)
    def save(self, path, overwrite: bool = False) -> str:
        """Write an NXtomo HDF5 file (see the module docstring) atomically; return ``path``."""
        import h5py

        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"path={path!r} exists; pass overwrite=True to replace it")
        meta = {name: _to_json(getattr(self, name), name) for name in _META}
        with atomic_write(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
            f.attrs["default"] = "entry"
            f.attrs["creator"] = f"lamino {_lamino_version()}"
            entry = _nx_group(f, "entry", "NXentry")
            entry.attrs.update({"default": "data", "definition": "NXtomo", "version": NXTOMO_VERSION})
            entry["definition"] = "NXtomo"
            entry["title"] = f"lamino scan of {self.phantom['name']}" if self.phantom.get("name") else "lamino scan"
            entry["start_time"] = _start_time(self.provenance)
            self._write_nxtomo(entry)
            _write_lamino(entry, self, meta)
        return path

    def _write_nxtomo(self, entry) -> None:
        """The NXtomo part: instrument (source, detector), sample, control and data."""
        g = self.geometry
        frames = (self.darks, self.flats, self.counts)
        keys = np.concatenate([np.full(len(a), k, dtype=np.int32) for a, k in zip(frames, (DARK, FLAT, PROJECTION),
                                                                                   strict=True)])
        angles = np.zeros(self.n_views) if g.angles_deg is None else np.asarray(g.angles_deg, dtype=float)
        frame_angles = np.concatenate([np.full(len(self.darks) + len(self.flats), angles[0]), angles])

        instrument = _nx_group(entry, "instrument", "NXinstrument")
        name = str(self.scanner.get("name") or "lamino simulation")
        instrument["name"] = name
        source = _nx_group(instrument, "source", "NXsource")
        source["name"] = name
        source["type"] = "Fixed Tube X-ray" if g.beam == "cone" else "Synchrotron X-ray Source"
        source["probe"] = "x-ray"
        energy = self.scanner.get("energy_kev")
        if isinstance(energy, (int, float)) and not isinstance(energy, bool):
            beam = _nx_group(instrument, "beam", "NXbeam")
            _dataset(beam, "incident_energy", float(energy), "keV")

        detector = _nx_group(instrument, "detector", "NXdetector")
        rows, cols = g.det_shape
        data = detector.create_dataset("data", shape=(len(keys), rows, cols), dtype=np.float32,
                                       chunks=(1, rows, cols))
        data.attrs["interpretation"] = "image"
        start = 0
        for block in frames:
            data[start:start + len(block)] = block
            start += len(block)
        detector["image_key"] = keys
        detector["image_key_control"] = keys
        dv, du = g.det_spacing
        _dataset(detector, "x_pixel_size", du * 1e-3, "m")
        _dataset(detector, "y_pixel_size", dv * 1e-3, "m")
        if g.beam == "cone" and g.custom_vectors is None:
            _dataset(detector, "distance", (g.sdd - g.sod) * 1e-3, "m")
            _dataset(source, "distance", -g.sod * 1e-3, "m")    # NeXus: negative = upstream of the sample

        sample = _nx_group(entry, "sample", "NXsample")
        sample["name"] = str(self.phantom.get("name") or "sample")
        rotation = _dataset(sample, "rotation_angle", frame_angles, "degree")
        if g.angles_deg is None:
            rotation.attrs["doc"] = "Zeros: a custom trajectory, given by /entry/lamino/vectors."

        current = self.scanner.get("current_ua")
        if g.beam == "cone" and isinstance(current, (int, float)) and not isinstance(current, bool):
            control = _nx_group(entry, "control", "NXmonitor")     # NXtomo readers expect a current in A
            _dataset(control, "data", np.full(len(keys), current * 1e-6), "A")

        nxdata = _nx_group(entry, "data", "NXdata")
        nxdata.attrs["signal"] = "data"
        for link, target in (("data", "instrument/detector/data"), ("image_key", "instrument/detector/image_key"),
                             ("rotation_angle", "sample/rotation_angle")):
            nxdata[link] = _soft_link(entry, target)

    @classmethod
    def load(cls, path) -> Scan:
        """Read a file written by :meth:`save`; arrays, geometry, dicts and truth come back identical."""
        path = os.fspath(path)
        f = _open_lamino_file(path, FORMAT, "Scan.load reads the NXtomo scan files that Scan.save writes")
        with f:
            lam = f["entry/lamino"]
            version = int(lam.attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise ValueError(f"path={path!r} has lamino scan format version {version}: this lamino reads "
                                 f"≤ {FORMAT_VERSION}; upgrade lamino")
            detector = f["entry/instrument/detector"]
            keys = detector["image_key"][()]
            frames = {k: _read_frames(detector["data"], keys, k) for k in (DARK, FLAT, PROJECTION)}
            truth = _read_truth(lam["truth"]) if "truth" in lam else None
            meta = {name: json.loads(_read_str(lam[name])) for name in _META}
            geometry = Geometry.from_dict(json.loads(_read_str(lam["geometry"])))
        return cls(counts=frames[PROJECTION], flats=frames[FLAT], darks=frames[DARK], geometry=geometry,
                   truth=truth, **meta)

    # ------------------------------------------------------------------ TIFF
    def export_tiff(self, folder, overwrite: bool = False) -> list[str]:
        """Write ``proj_0000.tif`` … (one float32 TIFF per view), ``flat.tif`` and ``dark.tif`` (averaged
        frames) and ``geometry.json`` (``Geometry.to_dict()``, mm, degrees) into ``folder``; return the paths.

        Each file is written atomically. A non-empty ``folder`` is refused unless ``overwrite``; then
        projections of an earlier export that this one does not replace are removed.
        """
        import tifffile

        folder = os.fspath(folder)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"folder={folder!r} is not allowed: it exists and is not a folder")
        if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
            raise ValueError(f"folder={folder!r} is not empty; pass overwrite=True to write into it")
        os.makedirs(folder, exist_ok=True)
        width = max(4, len(str(self.n_views - 1)))
        names = [f"proj_{i:0{width}d}.tif" for i in range(self.n_views)]
        for stale in glob.glob(os.path.join(glob.escape(folder), "proj_*.tif")):
            if os.path.basename(stale) not in names:
                os.remove(stale)
        images = [*zip(names, self.counts, strict=True),
                  ("flat.tif", self.flats.mean(axis=0, dtype=np.float64)),
                  ("dark.tif", self.darks.mean(axis=0, dtype=np.float64))]
        paths = []
        for name, image in images:
            paths.append(os.path.join(folder, name))
            with atomic_write(paths[-1], suffix=".tif") as tmp:
                tifffile.imwrite(tmp, np.asarray(image, dtype=np.float32))
        paths.append(os.path.join(folder, "geometry.json"))
        with atomic_write(paths[-1], suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.geometry.to_dict(), fh, indent=1)
        return paths


# ---------------------------------------------------------------------------------------------- helpers
def _lamino_version() -> str:
    from lamino import __version__

    return __version__


def _to_json(value: dict, name: str) -> str:
    """JSON text of a metadata dict (numpy scalars and arrays become numbers and lists)."""
    def default(obj: Any) -> Any:
        if isinstance(obj, (np.generic, np.ndarray)):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

    try:
        return json.dumps(value, default=default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not allowed: it must be JSON-serialisable ({exc})") from exc


def _start_time(provenance: dict) -> str:
    """ISO 8601 start time: provenance['date'] when it is one, else now (UTC)."""
    date = provenance.get("date")
    if isinstance(date, str):
        with contextlib.suppress(ValueError):
            return datetime.datetime.fromisoformat(date).isoformat()
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _nx_group(parent, name: str, nx_class: str):
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class
    return group


def _dataset(parent, name: str, value, units: str):
    ds = parent.create_dataset(name, data=value)
    ds.attrs["units"] = units
    return ds


def _soft_link(entry, target: str):
    import h5py

    return h5py.SoftLink(f"{entry.name}/{target}")


def _compressed(parent, name: str, data: np.ndarray):
    return parent.create_dataset(name, data=data, chunks=True, compression="gzip", compression_opts=4,
                                 shuffle=True)


def _write_lamino(entry, scan: Scan, meta: dict[str, str]) -> None:
    """lamino's own group: exact geometry, ASTRA vectors, metadata and ground truth."""
    g = scan.geometry
    lam = _nx_group(entry, "lamino", "NXcollection")
    lam.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, "lamino_version": _lamino_version()})
    lam["geometry"] = json.dumps(g.to_dict())
    vectors = _dataset(lam, "vectors", np.asarray(g.vectors(), dtype=np.float64), "mm")
    vectors.attrs["doc"] = ("Per-view ASTRA parallel3d_vec / cone_vec 12-vectors (ray or source, detector centre, "
                            "u step, v step) in the sample frame, mm")
    if g.custom_vectors is None:
        _dataset(lam, "tilt_deg", float(g.tilt_deg), "degree")
    for name, text in meta.items():
        lam[name] = text
    if scan.truth is not None:
        truth = lam.create_group("truth")
        _compressed(truth, "mu", scan.truth.mu).attrs["units"] = "1/mm"
        truth["grid"] = json.dumps(scan.truth.grid.to_dict())
        _dataset(truth, "energy_kev", scan.truth.energy_kev, "keV")
        labels = truth.create_group("labels", track_order=True)
        for name, mask in scan.truth.labels.items():
            _compressed(labels, name, mask)


def _open_lamino_file(path: str, file_format: str, what: str):
    """Open ``path`` read-only and check its ``/entry/lamino`` group has ``file_format``; one-line errors."""
    import h5py

    if not os.path.isfile(path):
        raise FileNotFoundError(f"path={path!r} does not exist or is not a file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"path={path!r} is not an HDF5 file: {what}") from exc
    lam = f.get("entry/lamino")
    if not isinstance(lam, h5py.Group) or lam.attrs.get("format") != file_format:
        f.close()
        raise ValueError(f"path={path!r} is not a lamino {file_format.split('.')[-1]} file: it has no matching "
                         f"/entry/lamino group ({what})")
    return f


def _read_str(ds) -> str:
    return ds.asstr()[()]


def _read_frames(data, keys: np.ndarray, key: int) -> np.ndarray:
    """The frames with one image_key, as float32 (one contiguous read when they are contiguous)."""
    idx = np.flatnonzero(keys == key)
    if idx.size == 0:
        return np.empty((0, *data.shape[1:]), dtype=np.float32)
    if idx[-1] - idx[0] + 1 == idx.size:
        return np.asarray(data[idx[0]:idx[-1] + 1], dtype=np.float32)
    return np.asarray(data[idx], dtype=np.float32)


def _read_truth(group) -> GroundTruth:
    grid = VolumeGrid.from_dict(json.loads(_read_str(group["grid"])))
    labels = {name: np.asarray(ds[()], dtype=bool) for name, ds in group["labels"].items()}
    return GroundTruth(mu=group["mu"][()], grid=grid, energy_kev=float(group["energy_kev"][()]), labels=labels)


# ---------------------------------------------------------------------------------------------- volumes
VOLUME_FORMAT = "lamino.volume"


@dataclasses.dataclass(eq=False)
class Volume:
    """A reconstructed (or any) μ volume on its grid, with how it was made.

    ``data`` (nz, ny, nx) float32 in 1/mm on ``grid``; ``geometry`` the acquisition it came from; ``method``,
    ``params`` and per-iteration ``history`` of the reconstruction; ``provenance`` (lamino version, source file,
    …). :meth:`save` writes NeXus **NXtomoproc** (``/entry/data/data`` with x, y, z axes in mm and an
    NXprocess ``/entry/reconstruction``) plus ``/entry/lamino`` (grid, geometry, method, params, history).
    """

    data: np.ndarray
    grid: VolumeGrid
    geometry: Geometry | None = None
    method: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    history: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data, dtype=np.float32)
        if not isinstance(self.grid, VolumeGrid):
            raise ValueError(f"grid={type(self.grid).__name__} is not allowed: give a VolumeGrid")
        if self.data.shape != tuple(self.grid.shape):
            raise ValueError(f"data with shape {self.data.shape} is not allowed: the grid is {self.grid.shape}")
        if self.geometry is not None and not isinstance(self.geometry, Geometry):
            raise ValueError(f"geometry={type(self.geometry).__name__} is not allowed: give a Geometry or None")

    def save(self, path, overwrite: bool = False) -> str:
        """Write an NXtomoproc HDF5 file atomically (an existing file only with ``overwrite``); return ``path``."""
        import h5py

        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise ValueError(f"path={path!r} exists; pass overwrite=True to replace it")
        meta = {name: _to_json(getattr(self, name), name) for name in ("params", "history", "provenance")}
        with atomic_write(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
            f.attrs["default"] = "entry"
            f.attrs["creator"] = f"lamino {_lamino_version()}"
            entry = _nx_group(f, "entry", "NXentry")
            entry.attrs["default"] = "data"
            entry["definition"] = "NXtomoproc"
            entry["title"] = f"lamino {self.method or 'volume'}"
            source = _nx_group(_nx_group(entry, "instrument", "NXinstrument"), "source", "NXsource")
            source["name"], source["type"], source["probe"] = "lamino", "X-ray", "x-ray"
            _nx_group(entry, "sample", "NXsample")["name"] = str(self.provenance.get("sample", "sample"))
            process = _nx_group(entry, "reconstruction", "NXprocess")
            process["program"], process["version"] = "lamino", _lamino_version()
            process["date"] = _start_time(self.provenance)
            _nx_group(process, "parameters", "NXparameters")["raw_file"] = str(self.provenance.get("scan", ""))
            data = _nx_group(entry, "data", "NXdata")
            data.attrs.update({"signal": "data", "axes": ["z", "y", "x"]})
            _compressed(data, "data", self.data).attrs["units"] = "1/mm"
            for dim, axis in enumerate("zyx"):
                _dataset(data, axis, self.grid.axis(dim), "mm")
            lam = _nx_group(entry, "lamino", "NXcollection")
            lam.attrs.update({"format": VOLUME_FORMAT, "format_version": FORMAT_VERSION,
                              "lamino_version": _lamino_version()})
            lam["grid"] = json.dumps(self.grid.to_dict())
            lam["method"] = self.method
            if self.geometry is not None:
                lam["geometry"] = json.dumps(self.geometry.to_dict())
            for name, text in meta.items():
                lam[name] = text
        return path

    @classmethod
    def load(cls, path) -> Volume:
        """Read a file written by :meth:`save`."""
        path = os.fspath(path)
        f = _open_lamino_file(path, VOLUME_FORMAT, "Volume.load reads the volume files that Volume.save writes")
        with f:
            lam = f["entry/lamino"]
            geometry = Geometry.from_dict(json.loads(_read_str(lam["geometry"]))) if "geometry" in lam else None
            return cls(data=f["entry/data/data"][()], grid=VolumeGrid.from_dict(json.loads(_read_str(lam["grid"]))),
                       geometry=geometry, method=_read_str(lam["method"]),
                       **{name: json.loads(_read_str(lam[name])) for name in ("params", "history", "provenance")})

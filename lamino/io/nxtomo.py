"""NeXus HDF5 files of lamino: scans as **NXtomo**, volumes as **NXtomoproc**, each with lamino's own group.

:func:`write_scan` writes a :class:`~lamino.io.scan.Scan` following the NeXus NXtomo application definition,
readable by NXtomo tools (e.g. the ``nxtomo`` package, tomwer, nabu), plus lamino's own group ``/entry/lamino``
(geometry, ASTRA vectors, truth) from which :func:`read_scan` gives back the scan's fields exactly::

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

:func:`write_volume` writes a :class:`~lamino.io.volume.Volume` as NXtomoproc (``/entry/data/data`` with x, y,
z axes in mm and an NXprocess ``/entry/reconstruction``) plus ``/entry/lamino`` (grid, geometry, method,
params, history, and the measured fraction of each voxel when known); :func:`read_volume` reads it back.

This module knows the file layout only: it writes the datasets' attributes and reads back plain fields, which
:class:`~lamino.io.scan.Scan` and :class:`~lamino.io.volume.Volume` validate.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.io.files import atomic_write

if TYPE_CHECKING:
    from lamino.io.scan import Scan
    from lamino.io.volume import Volume

__all__ = ["DARK", "FLAT", "FORMAT", "FORMAT_VERSION", "NXTOMO_VERSION", "PROJECTION", "SCAN_METADATA",
           "VOLUME_FORMAT", "read_scan", "read_volume", "write_scan", "write_volume"]

FORMAT = "lamino.scan"
VOLUME_FORMAT = "lamino.volume"
FORMAT_VERSION = 1
DARK, FLAT, PROJECTION = 2, 1, 0           # NXtomo image_key values
NXTOMO_VERSION = 2.1                        # layout version read by the ``nxtomo`` package
SCAN_METADATA = ("scanner", "phantom", "provenance")
"""The scan's metadata dicts, stored as JSON texts in ``/entry/lamino``."""
_VOLUME_METADATA = ("params", "history", "provenance")


# ---------------------------------------------------------------------------------------------- scans
def write_scan(scan: Scan, path: str) -> None:
    """Write ``scan`` to ``path`` as NXtomo plus ``/entry/lamino`` (see the module docstring), atomically."""
    import h5py

    meta = {name: _to_json(getattr(scan, name), name) for name in SCAN_METADATA}
    with atomic_write(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["default"] = "entry"
        f.attrs["creator"] = f"lamino {_lamino_version()}"
        entry = _nx_group(f, "entry", "NXentry")
        entry.attrs.update({"default": "data", "definition": "NXtomo", "version": NXTOMO_VERSION})
        entry["definition"] = "NXtomo"
        entry["title"] = f"lamino scan of {scan.phantom['name']}" if scan.phantom.get("name") else "lamino scan"
        entry["start_time"] = _start_time(scan.provenance)
        _write_nxtomo(entry, scan)
        _write_lamino(entry, scan, meta)


def read_scan(path: str) -> dict[str, Any]:
    """The fields of the scan in a file written by :func:`write_scan`: counts, flats, darks (float32 frames),
    geometry, scanner, phantom, provenance, and truth (None or the fields of a GroundTruth)."""
    f = _open_lamino_file(path, FORMAT, "Scan.load reads the NXtomo scan files that Scan.save writes")
    with f, _corrupt(path, "scan"):
        lam = f["entry/lamino"]
        version = int(lam.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ValueError(f"path={path!r} has lamino scan format version {version}: this lamino reads "
                             f"≤ {FORMAT_VERSION}; upgrade lamino")
        data = _item(f, "entry/instrument/detector/data", path, "a (frames, rows, cols) dataset")
        keys = _item(f, "entry/instrument/detector/image_key", path, "one image key per frame")[()]
        if data.ndim != 3 or np.shape(keys) != (data.shape[0],):
            raise ValueError(f"path={path!r} is corrupt: /entry/instrument/detector/data has shape {data.shape} "
                             f"and image_key {np.shape(keys)}; a scan file needs (frames, rows, cols) and (frames,)")
        frames = {k: _read_frames(data, keys, k) for k in (DARK, FLAT, PROJECTION)}
        truth = _read_truth(_item(lam, "truth", path, "a group", group=True), path) if "truth" in lam else None
        meta = {name: _read_json(lam, name, path) for name in SCAN_METADATA}
        geometry = _read_geometry(lam, path)
    return dict(counts=frames[PROJECTION], flats=frames[FLAT], darks=frames[DARK], geometry=geometry, truth=truth,
                **meta)


def _write_nxtomo(entry, scan: Scan) -> None:
    """The NXtomo part: instrument (source, detector), sample, control and data."""
    g = scan.geometry
    frames = (scan.darks, scan.flats, scan.counts)
    keys = np.concatenate([np.full(len(a), k, dtype=np.int32) for a, k in zip(frames, (DARK, FLAT, PROJECTION),
                                                                               strict=True)])
    angles = np.zeros(scan.n_views) if g.angles_deg is None else np.asarray(g.angles_deg, dtype=float)
    frame_angles = np.concatenate([np.full(len(scan.darks) + len(scan.flats), angles[0]), angles])

    instrument = _nx_group(entry, "instrument", "NXinstrument")
    name = str(scan.scanner.get("name") or "lamino simulation")
    instrument["name"] = name
    source = _nx_group(instrument, "source", "NXsource")
    source["name"] = name
    source["type"] = "Fixed Tube X-ray" if g.beam == "cone" else "Synchrotron X-ray Source"
    source["probe"] = "x-ray"
    energy = scan.scanner.get("energy_kev")
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
    sample["name"] = str(scan.phantom.get("name") or "sample")
    rotation = _dataset(sample, "rotation_angle", frame_angles, "degree")
    if g.angles_deg is None:
        rotation.attrs["doc"] = "Zeros: a custom trajectory, given by /entry/lamino/vectors."

    current = scan.scanner.get("current_ua")
    if g.beam == "cone" and isinstance(current, (int, float)) and not isinstance(current, bool):
        control = _nx_group(entry, "control", "NXmonitor")     # NXtomo readers expect a current in A
        _dataset(control, "data", np.full(len(keys), current * 1e-6), "A")

    nxdata = _nx_group(entry, "data", "NXdata")
    nxdata.attrs["signal"] = "data"
    for link, target in (("data", "instrument/detector/data"), ("image_key", "instrument/detector/image_key"),
                         ("rotation_angle", "sample/rotation_angle")):
        nxdata[link] = _soft_link(entry, target)


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


def _read_frames(data, keys: np.ndarray, key: int) -> np.ndarray:
    """The frames with one image_key, as float32 (one contiguous read when they are contiguous)."""
    idx = np.flatnonzero(keys == key)
    if idx.size == 0:
        return np.empty((0, *data.shape[1:]), dtype=np.float32)
    if idx[-1] - idx[0] + 1 == idx.size:
        return np.asarray(data[idx[0]:idx[-1] + 1], dtype=np.float32)
    return np.asarray(data[idx], dtype=np.float32)


def _read_truth(group, path: str) -> dict[str, Any]:
    """The fields of a GroundTruth: mu (1/mm), grid, energy_kev (keV), labels {name: bool array}."""
    grid = _read_grid(group, path)
    labels = {name: np.asarray(ds[()], dtype=bool)
              for name, ds in _item(group, "labels", path, "a group of masks", group=True).items()}
    return dict(mu=_item(group, "mu", path, "a μ volume")[()], grid=grid,
                energy_kev=float(_item(group, "energy_kev", path, "a number (keV)")[()]), labels=labels)


# ---------------------------------------------------------------------------------------------- volumes
def write_volume(volume: Volume, path: str) -> None:
    """Write ``volume`` to ``path`` as NXtomoproc plus ``/entry/lamino`` (see the module docstring), atomically."""
    import h5py

    meta = {name: _to_json(getattr(volume, name), name) for name in _VOLUME_METADATA}
    with atomic_write(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs["default"] = "entry"
        f.attrs["creator"] = f"lamino {_lamino_version()}"
        entry = _nx_group(f, "entry", "NXentry")
        entry.attrs["default"] = "data"
        entry["definition"] = "NXtomoproc"
        entry["title"] = f"lamino {volume.method or 'volume'}"
        source = _nx_group(_nx_group(entry, "instrument", "NXinstrument"), "source", "NXsource")
        source["name"], source["type"], source["probe"] = "lamino", "X-ray", "x-ray"
        _nx_group(entry, "sample", "NXsample")["name"] = str(volume.provenance.get("sample", "sample"))
        process = _nx_group(entry, "reconstruction", "NXprocess")
        process["program"], process["version"] = "lamino", _lamino_version()
        process["date"] = _start_time(volume.provenance)
        _nx_group(process, "parameters", "NXparameters")["raw_file"] = str(volume.provenance.get("scan", ""))
        data = _nx_group(entry, "data", "NXdata")
        data.attrs.update({"signal": "data", "axes": ["z", "y", "x"]})
        _compressed(data, "data", volume.data).attrs["units"] = "1/mm"
        for dim, axis in enumerate("zyx"):
            _dataset(data, axis, volume.grid.axis(dim), "mm")
        lam = _nx_group(entry, "lamino", "NXcollection")
        lam.attrs.update({"format": VOLUME_FORMAT, "format_version": FORMAT_VERSION,
                          "lamino_version": _lamino_version()})
        lam["grid"] = json.dumps(volume.grid.to_dict())
        lam["method"] = volume.method
        if volume.geometry is not None:
            lam["geometry"] = json.dumps(volume.geometry.to_dict())
        if volume.measured_fraction is not None:
            _compressed(lam, "measured_fraction", volume.measured_fraction).attrs["units"] = "1"
        for name, text in meta.items():
            lam[name] = text


def read_volume(path: str) -> dict[str, Any]:
    """The fields of the volume in a file written by :func:`write_volume`: data, grid, geometry (or None),
    method, params, history, provenance, measured_fraction (or None)."""
    f = _open_lamino_file(path, VOLUME_FORMAT, "Volume.load reads the volume files that Volume.save writes")
    with f, _corrupt(path, "volume"):
        lam = f["entry/lamino"]
        geometry = _read_geometry(lam, path) if "geometry" in lam else None
        fraction = lam["measured_fraction"][()] if "measured_fraction" in lam else None
        return dict(data=_item(f, "entry/data/data", path, "the (nz, ny, nx) volume")[()],
                    grid=_read_grid(lam, path), geometry=geometry, measured_fraction=fraction,
                    method=_read_str(_item(lam, "method", path, "a string")),
                    **{name: _read_json(lam, name, path) for name in _VOLUME_METADATA})


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


@contextlib.contextmanager
def _corrupt(path: str, kind: str):
    """Turn the low-level errors of reading a damaged file (h5py, numpy) into one-line ValueErrors naming it."""
    try:
        yield
    except ValueError as exc:
        if str(exc).startswith("path="):
            raise
        raise ValueError(f"path={path!r} is not a readable lamino {kind} file: {exc}") from None
    except (KeyError, TypeError, AttributeError, OSError, IndexError) as exc:
        raise ValueError(f"path={path!r} is not a readable lamino {kind} file: {type(exc).__name__}: {exc}") from None


def _item(parent, name: str, path: str, what: str, *, group: bool = False):
    """``parent[name]``, which must be a dataset (or, with ``group``, a group): else a ValueError naming the file."""
    import h5py

    item = parent.get(name)
    if not isinstance(item, h5py.Group if group else h5py.Dataset):
        full = f"{parent.name.rstrip('/')}/{name}"
        state = "lacks" if item is None else "has a corrupt"
        raise ValueError(f"path={path!r} {state} {full}: a lamino file needs {what} there (rewrite it with lamino)")
    return item


def _read_json(parent, name: str, path: str) -> dict:
    """The JSON object in the text dataset ``parent[name]``; else a ValueError naming file and dataset."""
    ds = _item(parent, name, path, "a JSON text")
    full = f"{parent.name.rstrip('/')}/{name}"
    try:
        value = json.loads(_read_str(ds))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"path={path!r} has corrupt JSON in {full} ({exc}): a lamino file holds a JSON object "
                         "there") from None
    if not isinstance(value, dict):
        raise ValueError(f"path={path!r} has a JSON {type(value).__name__} in {full}: a lamino file holds a JSON "
                         "object there")
    return value


def _read_geometry(parent, path: str) -> Geometry:
    """The geometry stored as JSON in ``parent["geometry"]``; errors name the file."""
    d = _read_json(parent, "geometry", path)
    try:
        return Geometry.from_dict(d)
    except ValueError as exc:
        raise ValueError(f"path={path!r} has a corrupt {parent.name}/geometry: {exc}") from None


def _read_grid(parent, path: str) -> VolumeGrid:
    """The volume grid stored as JSON in ``parent["grid"]``; errors name the file."""
    d = _read_json(parent, "grid", path)
    try:
        return VolumeGrid.from_dict(d)
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"path={path!r} has a corrupt {parent.name}/grid: {type(exc).__name__}: {exc}") from None

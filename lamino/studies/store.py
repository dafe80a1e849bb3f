"""Results store of a study: one folder, one small HDF5 file per finished point, written atomically.

Layout::

    results/
      study.toml          the study file as given (the store's identity: its fingerprint must match on resume)
      study.json          the validated spec, its fingerprint and the lamino version
      points/<id>.h5      one finished point: attribute ``record`` (JSON: point, metrics, timings,
                          provenance, task_dprimes = {task: NPW d′}) and the central orthogonal slices
                          ``recon/{xy,xz,yz}`` and ``truth/{xy,xz,yz}`` (μ, 1/mm); with detection tasks also
                          ``closeup/{truth,recon,signal}/<plane>``, crops around one task (attribute
                          ``closeup``: JSON of the task, its d′ and centre; :class:`Closeup`)
      summary.csv         one row per finished point (rewritten after every point)
      configurations.csv  one row per configuration: every metric's mean and standard error over the
                          repeats, and n (written by the planner when the study finishes)

Points written before close-ups and per-task d′ existed have neither; they read as None and {}.

A point file appears only when complete (temporary name, then rename), so a study stopped at any moment
resumes by computing exactly the points whose files are missing (or unreadable). A live run locks the folder
(``.lamino.lock``: its pid and host); a second run on it is refused, a dead run's lock is taken over.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import time
import warnings
import weakref
from typing import Any

import h5py
import numpy as np

from lamino.io import atomic_write
from lamino.io.files import FolderLock, check_output_folder, clean_temporaries
from lamino.studies.spec import StudySpec, parse_spec

SLICES = ("xy", "xz", "yz")
_POINT_KEYS = ("tilt_deg", "n_views", "exposure_s", "kvp", "method", "trajectory", "phantom_seed", "seed")


CLOSEUP_IMAGES = ("truth", "recon", "signal")


@dataclasses.dataclass(frozen=True, eq=False)
class Closeup:
    """Crops around one detection task of a point, for the report's close-up.

    ``name``, ``kind`` ("crack", "pore" or "user") and ``dprime`` (its NPW d′) of the task; ``metric``: the d′
    metric of the objective or constraints whose tasks it was chosen from (None: from every task), ``candidates``:
    how many measured tasks it is the lowest d′ (the hardest) of; ``centre_mm``: (x, y, z) of the crops' centre
    voxel, a voxel of the task inside the measured region; ``voxel_mm``: (sz, sy, sx); ``planes``: the two planes
    cropped ("xy" and "xz" or "yz"); ``images``: {"truth", "recon" (the noisy reconstruction), "signal" (the
    expected reconstructed signal: noise-free with minus without the task)} → {plane: square 2-D crop, odd side,
    the centre voxel in its middle; rows z or y, columns x or y as in the central slices} (μ, 1/mm; NaN outside
    the grid)."""

    name: str
    kind: str
    dprime: float
    metric: str | None
    candidates: int
    centre_mm: tuple[float, float, float]
    voxel_mm: tuple[float, float, float]
    planes: tuple[str, ...]
    images: dict[str, dict[str, np.ndarray]]

    def info(self) -> dict[str, Any]:
        """Everything but the images, as JSON-ready values."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "images"}


@dataclasses.dataclass(frozen=True, eq=False)
class PointResult:
    """One evaluated sweep point.

    ``point``: tilt_deg, n_views, exposure_s, kvp, method, seed; ``metrics``: name → value (units in
    :mod:`lamino.studies.scoring`); ``seconds``: timings of the stages; ``provenance``: geometry, scanner,
    effective energy, host, versions; ``recon_slices`` / ``truth_slices``: {"xy", "xz", "yz"} 2-D arrays
    through the grid centre; ``stage``: "grid" (the sweep) or "refine" (planner); ``task_dprimes``: the NPW d′
    of every detection task by name (NaN: outside the measured region), whose medians are the d′ metrics;
    ``closeup``: crops around the hardest task (:class:`Closeup`), None without tasks."""

    id: str
    point: dict[str, Any]
    metrics: dict[str, float]
    seconds: dict[str, float]
    provenance: dict[str, Any]
    recon_slices: dict[str, np.ndarray]
    truth_slices: dict[str, np.ndarray]
    stage: str = "grid"
    task_dprimes: dict[str, float] = dataclasses.field(default_factory=dict)
    closeup: Closeup | None = None

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "stage": self.stage, "point": self.point, "metrics": self.metrics,
                "seconds": self.seconds, "provenance": self.provenance, "task_dprimes": self.task_dprimes}


def central_slices(volume: np.ndarray) -> dict[str, np.ndarray]:
    """The xy (mid z), xz (mid y) and yz (mid x) slices of a (nz, ny, nx) volume, float32."""
    v = np.asarray(volume, np.float32)
    nz, ny, nx = v.shape
    return {"xy": v[nz // 2], "xz": v[:, ny // 2, :], "yz": v[:, :, nx // 2]}


class ResultStore:
    """A study's results folder (see the module docstring). ``create`` starts or resumes one for ``spec``;
    ``open`` reads an existing one."""

    def __init__(self, path: str, spec: StudySpec):
        self.path = os.fspath(path)
        self.spec = spec
        self._checked: dict[tuple, bool] = {}       # (id, mtime, size) → whether the point file is readable

    # ------------------------------------------------------------------------------------------ opening
    @classmethod
    def create(cls, path: str, spec: StudySpec, overwrite: bool = False) -> ResultStore:
        """Start a store for ``spec`` in ``path``, or resume the one there if it holds the same study.

        The folder is locked (:class:`~lamino.io.files.FolderLock`) for as long as the store lives (or until
        :meth:`close`): a second live run on it gets a one-line ValueError naming the other process. A folder
        holding another study (different phantom, scanner, geometry, simulation or grid) raises ValueError unless
        ``overwrite``, which deletes its points; a folder this call created is then removed again. Temporaries
        of dead runs and unreadable point files are deleted (with a warning), so they are recomputed."""
        path = check_output_folder(path, "--out")
        made = not os.path.exists(path)
        os.makedirs(path, exist_ok=True)
        lock = FolderLock(path, "results folder").acquire()
        try:
            cls._prepare(path, spec, overwrite)
        except BaseException:
            lock.release()
            if made:
                shutil.rmtree(path, ignore_errors=True)
            raise
        store = cls(path, spec)
        store._lock = lock
        store._finalizer = weakref.finalize(store, lock.release)
        return store

    @classmethod
    def _prepare(cls, path: str, spec: StudySpec, overwrite: bool) -> None:
        if os.path.isfile(os.path.join(path, "study.json")):
            try:
                with open(os.path.join(path, "study.json")) as f:
                    old = json.load(f).get("fingerprint")
            except (OSError, ValueError, AttributeError):
                old = None
            if old != spec.fingerprint:
                if not overwrite:
                    raise ValueError(f"{path!r} holds results of a different study (fingerprint {old}, this study "
                                     f"{spec.fingerprint}): give another --out or pass --overwrite")
                points = os.path.join(path, "points")
                for name in os.listdir(points) if os.path.isdir(points) else ():
                    if name.endswith(".h5"):
                        os.remove(os.path.join(points, name))
        os.makedirs(os.path.join(path, "points"), exist_ok=True)
        for folder in (path, os.path.join(path, "points")):      # temporaries of runs killed mid-write
            clean_temporaries(folder, min_age_s=0.0)             # the lock is ours: their writers are gone
        _clean_report_temporaries(path)
        for name in sorted(os.listdir(os.path.join(path, "points"))):
            file = os.path.join(path, "points", name)
            if name.endswith(".h5") and not name.startswith(".") and _read_record(file) is None:
                warnings.warn(f"point file {file} is unreadable (truncated or corrupt): deleted, it will be "
                              "recomputed", stacklevel=4)
                os.remove(file)
        from lamino import __version__

        with atomic_write(os.path.join(path, "study.toml")) as tmp, open(tmp, "w") as f:
            f.write(spec.text)
        with atomic_write(os.path.join(path, "study.json")) as tmp, open(tmp, "w") as f:
            json.dump({"fingerprint": spec.fingerprint, "lamino_version": __version__, "spec": spec.to_dict()},
                      f, indent=1)

    def close(self) -> None:
        """Release the folder's lock (stores from :meth:`create`; also done when the store is collected)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def open(cls, path: str) -> ResultStore:
        """Open an existing results folder (written by ``lamino study run``)."""
        path = os.fspath(path)
        toml_path = os.path.join(path, "study.toml")
        if not os.path.isfile(toml_path):
            raise FileNotFoundError(f"{path!r} is not a study results folder: it has no study.toml "
                                    "(run 'lamino study run SPEC --out FOLDER' first)")
        import tomllib

        with open(toml_path, "rb") as f:
            raw = f.read()
        source = os.path.join(path, "study.toml")
        try:
            text = raw.decode("utf-8")
            data = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{source}: not a valid TOML file ({exc})") from None
        return cls(path, parse_spec(data, source=source, text=text))

    # ------------------------------------------------------------------------------------------ points
    def _file(self, point_id: str) -> str:
        return os.path.join(self.path, "points", f"{point_id}.h5")

    def ids(self) -> set[str]:
        """Identifiers of the finished points (an unreadable point file is skipped with a warning)."""
        folder = os.path.join(self.path, "points")
        if not os.path.isdir(folder):
            return set()
        names = [n for n in os.listdir(folder) if n.endswith(".h5") and not n.startswith(".")]
        return {n[:-3] for n in names if self._readable(n[:-3])}

    def _readable(self, point_id: str) -> bool:
        file = self._file(point_id)
        try:
            st = os.stat(file)
        except OSError:
            return False
        key = (point_id, st.st_mtime_ns, st.st_size)
        if key not in self._checked:
            self._checked[key] = _read_record(file) is not None
            if not self._checked[key]:
                warnings.warn(f"point file {file} is unreadable (truncated or corrupt): skipped (a resumed run "
                              "recomputes it)", stacklevel=3)
        return self._checked[key]

    def write(self, result: PointResult) -> str:
        """Write one finished point atomically and refresh ``summary.csv``."""
        with atomic_write(self._file(result.id), ".h5") as tmp, h5py.File(tmp, "w") as f:
            f.attrs["record"] = json.dumps(result.record(), default=_json_default)
            for group, slices in (("recon", result.recon_slices), ("truth", result.truth_slices)):
                for name in SLICES:
                    f.create_dataset(f"{group}/{name}", data=np.asarray(slices[name], np.float32))
            if result.closeup is not None:
                f.attrs["closeup"] = json.dumps(result.closeup.info(), default=_json_default)
                for image in CLOSEUP_IMAGES:
                    for plane in result.closeup.planes:
                        f.create_dataset(f"closeup/{image}/{plane}",
                                         data=np.asarray(result.closeup.images[image][plane], np.float32))
        self.write_summary()
        return self._file(result.id)

    def record(self, point_id: str) -> dict[str, Any]:
        with h5py.File(self._file(point_id), "r") as f:
            return json.loads(f.attrs["record"])

    def records(self) -> list[dict[str, Any]]:
        """Every finished point's record, in sweep order (grid points first, then refinement points)."""
        recs = [r for r in (_read_record(self._file(i)) for i in self.ids()) if r is not None]
        return sorted(recs, key=lambda r: (r["stage"] != "grid", *(_sort_key(r["point"].get(k)) for k in _POINT_KEYS)))

    def slices(self, point_id: str) -> dict[str, dict[str, np.ndarray]]:
        """{"recon": {"xy", "xz", "yz"}, "truth": {...}} of one point (μ, 1/mm)."""
        with h5py.File(self._file(point_id), "r") as f:
            return {g: {n: f[f"{g}/{n}"][()] for n in SLICES} for g in ("recon", "truth")}

    def closeup(self, point_id: str) -> Closeup | None:
        """The close-up of one point (:class:`Closeup`), None when it has none (no detection task, or a point
        written before close-ups existed)."""
        with h5py.File(self._file(point_id), "r") as f:
            if "closeup" not in f.attrs:
                return None
            info = json.loads(f.attrs["closeup"])
            images = {g: {p: f[f"closeup/{g}/{p}"][()] for p in info["planes"]} for g in CLOSEUP_IMAGES}
        return Closeup(**{**info, "centre_mm": tuple(info["centre_mm"]), "voxel_mm": tuple(info["voxel_mm"]),
                          "planes": tuple(info["planes"])}, images=images)

    def write_extra(self, name: str, value: dict[str, Any]) -> str:
        """Keep a small JSON document ``<name>.json`` beside the points (e.g. the planner's tilt gradient)."""
        path = os.path.join(self.path, f"{name}.json")
        with atomic_write(path, ".json") as tmp, open(tmp, "w") as f:
            json.dump(value, f, indent=1, default=_json_default)
        return path

    def read_extra(self, name: str) -> dict[str, Any] | None:
        path = os.path.join(self.path, f"{name}.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            return json.load(f)

    def write_summary(self) -> str:
        """``summary.csv``: one row per finished point, its sweep values, metrics and seconds."""
        recs = self.records()
        metric_names = sorted({m for r in recs for m in r["metrics"]})
        path = os.path.join(self.path, "summary.csv")
        with atomic_write(path, ".csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "stage", *_POINT_KEYS, *metric_names, "seconds"])
            for r in recs:
                w.writerow([r["id"], r["stage"], *(r["point"].get(k) for k in _POINT_KEYS),
                            *(r["metrics"].get(m) for m in metric_names), r["seconds"].get("total")])
        return path


def _clean_report_temporaries(folder: str, min_age_s: float = 3600.0) -> None:
    """Delete ``.report-*`` build folders of an older lamino's report writer killed midway, once older than
    ``min_age_s`` (their names do not say who wrote them; today's are named by their writer's pid and removed by
    ``clean_temporaries``)."""
    now = time.time()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            old = name.startswith(".report-") and os.path.isdir(path) and now - os.path.getmtime(path) > min_age_s
        except OSError:
            continue
        if old and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


def _read_record(file: str) -> dict[str, Any] | None:
    """The record of a point file, or None when the file is unreadable (truncated, corrupt, incomplete)."""
    try:
        with h5py.File(file, "r") as f:
            record = json.loads(f.attrs["record"])
            if not all(f"{g}/{n}" in f for g in ("recon", "truth") for n in SLICES):
                return None
    except Exception:                                     # h5py raises OSError, KeyError, ValueError, …
        return None
    return record if isinstance(record, dict) and "point" in record and "metrics" in record else None


def _sort_key(value):
    return (value is None, str(value) if isinstance(value, str) else (value if value is not None else 0))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

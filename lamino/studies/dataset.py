"""Labelled validation datasets: many simulated scans with ground truth, listed in a manifest.

:func:`generate_dataset` writes ``count`` NXtomo files ``out/sample_0000.h5`` … (:meth:`lamino.io.Scan.save`, with
the ground-truth μ volume and labels) and ``out/manifest.json`` / ``out/manifest.csv``: one row per sample (file,
varied values, phantom and noise seeds, phantom parameters, scanner, ``Geometry.to_dict()``, lamino version,
seconds) under a header holding the generator arguments, so that ``generate_dataset(out=..., count=h["count"],
**h["arguments"])`` regenerates the same data. Units as everywhere in lamino: mm, keV, degrees, seconds.

What varies per sample (``vary``), keys and value forms:

* keys: ``"seed"`` (phantom seed), ``"noise_seed"`` (:func:`~lamino.simulate.simulate` seed), ``"tilt_deg"``,
  ``"n_views"``, ``"exposure_s"``, ``"kvp"`` and ``"param.<name>"`` for a phantom parameter ``<name>``;
* ``[min, max]`` (two numbers) or ``{"range": [min, max]}``: uniform on [min, max]; integer keys (seeds,
  ``n_views``, integer phantom parameters) uniform on the integers min … max inclusive;
* any other list, or ``{"choices": [...]}``: a list of choices, **cycled** (sample i takes choice i mod n);
  ``{"choices": [...], "draw": true}`` draws one uniformly instead (two choices need this dict form);
* ``"sequential"`` (or ``True``, ``{"sequential": true}``), seeds only: sample i takes ``seed + i``.

Random values come from ``numpy.random.default_rng(seed)``, drawn sample after sample and, within a sample, in
sorted key order, so sample i's values do not depend on ``count`` (a dataset can be extended by a larger
``count``). Quantities not in ``vary`` are the same for every sample: phantom seed and noise seed ``seed``, tilt
and view count from ``geometry`` (default 30° and N = ⌈(π/2) × detector columns⌉, the lab rule of design.md),
exposure and tube voltage from the scanner preset and ``scanner_overrides``.

Generation is resumable: a sample listed in an existing manifest of the same arguments, whose file is present with
the recorded size, is kept; the others are (re)simulated, and the manifest is rewritten atomically after each one.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import inspect
import io
import json
import math
import os
import shutil
import time
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import lamino
from lamino import phantoms
from lamino._checks import count as check_count
from lamino._checks import is_int, number
from lamino.geometry import Geometry, VolumeGrid
from lamino.io import atomic_write
from lamino.io.files import FolderLock, check_output_folder, clean_temporaries
from lamino.simulate import Scanner, simulate
from lamino.simulate.scanner import BEAMS

__all__ = ["FORMAT", "GEOMETRY_KEYS", "VARY_KEYS", "Manifest", "generate_dataset", "load_manifest"]

FORMAT = "lamino.dataset"
FORMAT_VERSION = 1
MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
VARY_KEYS = ("seed", "noise_seed", "tilt_deg", "n_views", "exposure_s", "kvp")
PARAM_PREFIX = "param."
GEOMETRY_KEYS = ("beam", "tilt_deg", "n_views", "det_shape", "det_spacing", "sod", "sdd", "cor_offset", "det_offset",
                 "det_roll_deg", "grid")
DEFAULT_TILT_DEG = 30.0
MAX_COUNT = 1_000_000                                  # samples of one dataset
MAX_VIEWS = 100_000                                    # projections of one sample
_SEED_MAX = 2**32 - 1
_RESERVED_SIMULATE = ("phantom", "geometry", "scanner", "seed", "truth", "truth_grid", "lengths", "progress")
_SIMULATE_KW = tuple(k for k in inspect.signature(simulate).parameters if k not in _RESERVED_SIMULATE)
_CSV_COLUMNS = ("index", "file", "phantom", "phantom_seed", "noise_seed", "scanner", "tilt_deg", "n_views",
                "exposure_s", "kvp")


# ---------------------------------------------------------------------------------------------- manifest
@dataclasses.dataclass(frozen=True)
class Manifest:
    """A dataset's manifest: ``path`` of ``manifest.json``, ``rows`` (one dict per sample, by index), ``header``."""

    path: str
    rows: tuple[dict, ...]
    header: dict = dataclasses.field(default_factory=dict)

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    @property
    def files(self) -> list[str]:
        """Paths of the sample files, in row order."""
        return [os.path.join(self.folder, row["file"]) for row in self.rows]

    def column(self, key: str) -> list:
        """One value per row: a row field (``"tilt_deg"``, ``"noise_seed"``, …) or a varied key (``"param.x"``)."""
        return [row[key] if key in row else row["values"][key] for row in self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def load_manifest(folder) -> Manifest:
    """Read ``folder/manifest.json`` (or the manifest file itself) written by :func:`generate_dataset`."""
    path = os.fspath(folder)
    if os.path.isdir(path):
        path = os.path.join(path, MANIFEST_JSON)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"folder={os.fspath(folder)!r} has no {MANIFEST_JSON}: not a lamino dataset")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        header, rows = data["header"], data["rows"]
        ok = header.get("format") == FORMAT and isinstance(rows, list)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise ValueError(f"folder={os.fspath(folder)!r} holds a {MANIFEST_JSON} that is not a lamino dataset "
                         f"manifest (format {FORMAT!r})")
    version = int(header.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ValueError(f"folder={os.fspath(folder)!r} has dataset format version {version}: this lamino reads "
                         f"≤ {FORMAT_VERSION}; upgrade lamino")
    return Manifest(path=path, rows=tuple(sorted(rows, key=lambda r: r["index"])), header=header)


# ---------------------------------------------------------------------------------------------- generation
@dataclasses.dataclass(frozen=True)
class _Sample:
    """Everything that makes sample ``index``: varied values, seeds, phantom parameters, scanner, geometry."""

    index: int
    values: dict
    phantom_seed: int
    noise_seed: int
    params: dict
    scanner: Scanner
    geometry: Geometry

    @property
    def file(self) -> str:
        return f"sample_{self.index:04d}.h5"


def generate_dataset(phantom: str, count: int, out, *, vary: dict[str, Any] | None = None,
                     params: dict | None = None, scanner: str = "nikon_xt225", scanner_overrides: dict | None = None,
                     geometry: dict | None = None, seed: int = 0, simulate_kw: dict | None = None,
                     overwrite: bool = False, progress: bool = True) -> Manifest:
    """Simulate ``count`` scans of the phantom ``phantom`` into the folder ``out``; return the :class:`Manifest`.

    Parameters
    ----------
    vary:
        what changes from sample to sample (module docstring): ``{"tilt_deg": [20, 40], "seed": "sequential"}``.
    params:
        fixed phantom parameters (``lamino.phantoms.parameters(phantom)``; the seed is ``seed``/``vary``).
    scanner, scanner_overrides:
        instrument preset and overrides (:meth:`Scanner.preset`), e.g. ``{"kvp": 100, "read_noise_adu": 2}``.
    geometry:
        ``beam`` (must match the preset: ``"cone"`` for lab tubes, ``"parallel"`` for beam lines), ``tilt_deg``,
        ``n_views``, ``det_shape`` (rows, cols), ``det_spacing`` (mm), ``sod``, ``sdd`` (mm, cone beam),
        ``cor_offset``, ``det_offset``, ``det_roll_deg``; built by :meth:`Scanner.geometry`. ``grid`` (a
        ``VolumeGrid.to_dict()``) sets the truth grid, else ``VolumeGrid.fit(geometry)`` of each sample.
    seed:
        seeds the draws of ``vary`` and is the phantom and noise seed where those do not vary.
    simulate_kw:
        further :func:`~lamino.simulate.simulate` arguments (``noise``, ``blur``, ``n_bins``, ``method``, …).
    overwrite:
        replace a dataset in ``out`` made with other arguments (its files and manifest are deleted first);
        without it such a folder is refused, and one made with the same arguments is resumed.
    """
    out = os.fspath(out)
    count = check_count("count", count)
    if count > MAX_COUNT:
        raise ValueError(f"count={count} is not allowed: give 1 to {MAX_COUNT} samples")
    args = _arguments(phantom, vary, params, scanner, scanner_overrides, geometry, seed, simulate_kw)
    samples = [_sample(i, args, values) for i, values in enumerate(_draws(count, args["vary"], args["seed"]))]
    _check_phantom(args, samples[0])
    _check_memory(args, samples)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "lamino_version": lamino.__version__,
              "created": _now(), "count": count, "arguments": args}
    check_output_folder(out, "out")
    made = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    with FolderLock(out, "dataset folder"):
        try:
            kept, created = _prepare_folder(out, header, count, overwrite)
        except BaseException:
            if made:
                shutil.rmtree(out, ignore_errors=True)
            raise
        clean_temporaries(out, min_age_s=0.0)          # the lock is ours: their writers are gone
        rows = {r["index"]: r for r in kept}
        header["created"] = created or header["created"]
        _write_manifest(out, header, rows, args)
        grid = VolumeGrid.from_dict(args["geometry"]["grid"]) if "grid" in args["geometry"] else None
        todo = [s for s in samples if s.index not in rows]
        bar = tqdm(total=count, initial=count - len(todo), desc=f"dataset {phantom}", unit="scan",
                   disable=not progress)
        for s in todo:
            rows[s.index] = _make_sample(out, s, args, grid)
            _write_manifest(out, header, rows, args)
            bar.update(1)
        bar.close()
    return load_manifest(out)


def _make_sample(out: str, s: _Sample, args: dict, grid: VolumeGrid | None) -> dict:
    """Simulate and save one sample; return its manifest row."""
    t0 = time.perf_counter()
    ph = phantoms.get(args["phantom"], seed=s.phantom_seed, **s.params)
    truth_grid = grid or VolumeGrid.fit(s.geometry)
    # the dataset's detector is the geometry's (--det, --spacing): the scanner's, so that they agree
    detector = s.scanner.detector.replace(shape=tuple(s.geometry.det_shape), spacing=tuple(s.geometry.det_spacing))
    scan = simulate(ph, s.geometry, s.scanner.replace(detector=detector), seed=s.noise_seed, truth_grid=truth_grid,
                    progress=False, **args["simulate_kw"])
    path = os.path.join(out, s.file)
    scan.save(path, overwrite=True)
    return {"index": s.index, "file": s.file, "values": s.values, "phantom": args["phantom"],
            "phantom_seed": s.phantom_seed, "noise_seed": s.noise_seed, "params": s.params,
            "scanner": args["scanner"], "scanner_overrides": _overrides(args, s.values),
            "tilt_deg": float(s.geometry.tilt_deg), "n_views": s.geometry.n_views,
            "exposure_s": s.scanner.exposure_s, "kvp": s.scanner.kvp, "geometry": s.geometry.to_dict(),
            "truth_grid": truth_grid.to_dict(), "bytes": os.path.getsize(path),
            "lamino_version": lamino.__version__, "seconds": round(time.perf_counter() - t0, 3)}


# ---------------------------------------------------------------------------------------------- arguments
def _arguments(phantom, vary, params, scanner, scanner_overrides, geometry, seed, simulate_kw) -> dict:
    """The generator arguments validated and JSON-normalised (tuples → lists): the dataset is a function of them."""
    defaults = phantoms.parameters(phantom)           # raises for an unknown phantom
    if scanner not in Scanner.presets():
        raise ValueError(f"scanner={scanner!r} is not allowed: choose a preset ({', '.join(Scanner.presets())})")
    if not is_int(seed) or not 0 <= seed <= _SEED_MAX:
        raise ValueError(f"seed={seed!r} is not allowed: give an integer from 0 to {_SEED_MAX}")
    args = {"phantom": phantom, "vary": _json(vary or {}, "vary"), "params": _json(params or {}, "params"),
            "scanner": scanner, "scanner_overrides": _json(scanner_overrides or {}, "scanner_overrides"),
            "geometry": _json(geometry or {}, "geometry"), "seed": int(seed),
            "simulate_kw": _json(simulate_kw or {}, "simulate_kw")}
    for name in ("vary", "params", "scanner_overrides", "geometry", "simulate_kw"):
        if not isinstance(args[name], dict):
            raise ValueError(f"{name}={args[name]!r} is not allowed: give a dict")
    _check_params(args["params"], defaults, phantom)
    _check_geometry(args["geometry"], scanner)
    _check_simulate_kw(args["simulate_kw"])
    args["vary"] = {key: _vary_spec(key, spec, defaults, phantom) for key, spec in sorted(args["vary"].items())}
    _check_conflicts(args)
    return args


def _check_params(params: dict, defaults: dict, phantom: str) -> None:
    if "seed" in params:
        raise ValueError("params['seed'] is not allowed: give the phantom seed as seed= or vary['seed']")
    for key in params:
        if key not in defaults:
            raise ValueError(f"params[{key!r}] is not allowed for phantom {phantom!r}: allowed are "
                             f"{', '.join(k for k in defaults if k != 'seed')}")


def _check_geometry(geometry: dict, scanner: str) -> None:
    unknown = sorted(set(geometry) - set(GEOMETRY_KEYS))
    if unknown:
        raise ValueError(f"geometry[{unknown[0]!r}] is not allowed: give keys among {', '.join(GEOMETRY_KEYS)}")
    beam = Scanner.preset(scanner).beam
    wanted = geometry.get("beam", beam)
    if wanted not in BEAMS:
        raise ValueError(f"geometry['beam']={wanted!r} is not allowed: give one of {', '.join(BEAMS)}")
    if wanted != beam:
        same = [n for n in Scanner.presets() if Scanner.preset(n).beam == wanted]
        raise ValueError(f"geometry['beam']={wanted!r} is not allowed with scanner {scanner!r} (a {beam}-beam "
                         f"instrument): give beam={beam!r} or a {wanted}-beam preset ({', '.join(same)})")
    if "n_views" in geometry and (not is_int(geometry["n_views"]) or not 2 <= geometry["n_views"] <= MAX_VIEWS):
        raise ValueError(f"geometry['n_views']={geometry['n_views']!r} is not allowed: give an integer from 2 to "
                         f"{MAX_VIEWS} (a reconstruction needs at least 2 views)")
    if "tilt_deg" in geometry:
        number("geometry['tilt_deg']", geometry["tilt_deg"], lambda x: 0 <= x < 90, "an angle in [0, 90) degrees")
    for key in ("sod", "sdd"):
        if key in geometry and beam != "cone":
            raise ValueError(f"geometry[{key!r}] is not allowed with scanner {scanner!r}: it is a parallel beam")
    if "grid" in geometry:
        try:
            VolumeGrid.from_dict(geometry["grid"])
        except (KeyError, TypeError, AttributeError):
            raise ValueError(f"geometry['grid']={geometry['grid']!r} is not allowed: give VolumeGrid.to_dict() "
                             "({'shape': [nz, ny, nx], 'voxel_size': mm, 'center': [cz, cy, cx]})") from None


def _check_simulate_kw(simulate_kw: dict) -> None:
    for key in simulate_kw:
        if key not in _SIMULATE_KW:
            raise ValueError(f"simulate_kw[{key!r}] is not allowed: give keys among {', '.join(_SIMULATE_KW)} (seeds, "
                             "truth grid and geometry are set by generate_dataset)")


def _check_conflicts(args: dict) -> None:
    """A quantity is either fixed (geometry, scanner_overrides, params) or varied, never both."""
    places = {"tilt_deg": "geometry", "n_views": "geometry", "exposure_s": "scanner_overrides",
              "kvp": "scanner_overrides"}
    for key in args["vary"]:
        where, name = (("params", key[len(PARAM_PREFIX):]) if key.startswith(PARAM_PREFIX)
                       else (places.get(key), key))
        if where and name in args[where]:
            raise ValueError(f"vary[{key!r}] is not allowed together with {where}[{name!r}]: fix it or vary it, "
                             "not both")
    if "kvp" in args["vary"] and Scanner.preset(args["scanner"]).beam != "cone":
        raise ValueError(f"vary['kvp'] is not allowed with scanner {args['scanner']!r}: it is a beam line (no tube); "
                         "vary exposure_s, or use a tube preset")


# ---------------------------------------------------------------------------------------------- vary
def _vary_spec(key: str, spec: Any, defaults: dict, phantom: str) -> dict:
    """One ``vary`` entry in canonical form: {"range": [lo, hi]}, {"choices": [...], "draw": b} or
    {"sequential": true}."""
    kind = _kind(key, defaults, phantom)
    if spec == "sequential" or spec is True or spec == {"sequential": True}:
        if key not in ("seed", "noise_seed"):
            raise ValueError(f"vary[{key!r}]={spec!r} is not allowed: 'sequential' applies to seed and noise_seed "
                             "only; give [min, max] or a list of choices")
        return {"sequential": True}
    if isinstance(spec, list) and len(spec) == 2 and all(_is_number(v) for v in spec):
        spec = {"range": spec}
    elif isinstance(spec, list):
        spec = {"choices": spec}
    if isinstance(spec, dict) and set(spec) == {"range"}:
        return {"range": _range(key, spec["range"], kind)}
    if isinstance(spec, dict) and "choices" in spec and set(spec) <= {"choices", "draw"}:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"vary[{key!r}] choices={choices!r} are not allowed: give a non-empty list")
        if kind[0] != "any":
            choices = [_value(key, v, kind) for v in choices]
        return {"choices": choices, "draw": bool(spec.get("draw", False))}
    raise ValueError(f"vary[{key!r}]={spec!r} is not allowed: give [min, max], a list of choices, "
                     "{'choices': [...], 'draw': true}" + (" or 'sequential'" if key in ("seed", "noise_seed") else ""))


def _kind(key: str, defaults: dict, phantom: str) -> tuple[str, Any, str]:
    """(type, test, what is allowed) of a vary key's values; type is 'int', 'float' or 'any' (choices only)."""
    kinds = {
        "seed": ("int", lambda x: 0 <= x <= _SEED_MAX, f"an integer from 0 to {_SEED_MAX}"),
        "noise_seed": ("int", lambda x: 0 <= x <= _SEED_MAX, f"an integer from 0 to {_SEED_MAX}"),
        "tilt_deg": ("float", lambda x: 0 <= x < 90, "an angle in [0, 90) degrees"),
        "n_views": ("int", lambda x: 2 <= x <= MAX_VIEWS, f"an integer from 2 to {MAX_VIEWS}"),
        "exposure_s": ("float", lambda x: 0 < x < math.inf, "an exposure > 0 s"),
        "kvp": ("float", lambda x: 0 < x < math.inf, "a tube voltage > 0 kV"),
    }
    if key in kinds:
        return kinds[key]
    name = key[len(PARAM_PREFIX):] if key.startswith(PARAM_PREFIX) else None
    if name is None or name not in defaults or name == "seed":
        params = ", ".join(PARAM_PREFIX + k for k in defaults if k != "seed")
        raise ValueError(f"vary key {key!r} is not allowed: choose among {', '.join(VARY_KEYS)} or a parameter of "
                         f"phantom {phantom!r} ({params})")
    default = defaults[name]
    if is_int(default):
        return ("int", lambda x: True, f"an integer (phantom parameter {name})")
    if isinstance(default, float) or default is None:
        return ("float", lambda x: math.isfinite(x), f"a finite number (phantom parameter {name})")
    return ("any", None, f"a list of choices (phantom parameter {name} is not a number)")


def _range(key: str, bounds: Any, kind: tuple) -> list:
    if kind[0] == "any":
        raise ValueError(f"vary[{key!r}]={{'range': {bounds!r}}} is not allowed: give {kind[2]}")
    if not (isinstance(bounds, list) and len(bounds) == 2):
        raise ValueError(f"vary[{key!r}] range={bounds!r} is not allowed: give [min, max]")
    lo, hi = (_value(key, v, kind) for v in bounds)
    if lo > hi:
        raise ValueError(f"vary[{key!r}] range={bounds!r} is not allowed: give [min, max] with min ≤ max")
    return [lo, hi]


def _value(key: str, value: Any, kind: tuple) -> int | float:
    """A number checked against the key's kind (integers stay integers)."""
    typ, ok, allowed = kind
    if typ == "int" and not is_int(value):
        raise ValueError(f"vary[{key!r}] value={value!r} is not allowed: give {allowed}")
    x = number(f"vary[{key!r}] value", value, ok, allowed)
    return int(value) if typ == "int" else x


def _draws(count: int, vary: dict, seed: int) -> list[dict]:
    """The varied values of samples 0 … count − 1, drawn sample after sample in sorted key order."""
    rng = np.random.default_rng(seed)
    return [{key: _draw(rng, spec, i, seed) for key, spec in sorted(vary.items())} for i in range(count)]


def _draw(rng: np.random.Generator, spec: dict, i: int, seed: int) -> Any:
    if "sequential" in spec:
        return seed + i
    if "choices" in spec:
        choices = spec["choices"]
        return choices[int(rng.integers(len(choices)))] if spec["draw"] else choices[i % len(choices)]
    lo, hi = spec["range"]
    if isinstance(lo, int) and isinstance(hi, int):
        return int(rng.integers(lo, hi, endpoint=True))
    return float(rng.uniform(lo, hi))


# ---------------------------------------------------------------------------------------------- samples
def _sample(index: int, args: dict, values: dict) -> _Sample:
    """Resolve sample ``index``: seeds, phantom parameters, scanner and geometry (validated here, before any work)."""
    seed = args["seed"]
    params = {**args["params"], **{k[len(PARAM_PREFIX):]: v for k, v in values.items()
                                   if k.startswith(PARAM_PREFIX)}}
    scanner = Scanner.preset(args["scanner"], **_overrides(args, values))
    geom = {k: v for k, v in args["geometry"].items() if k not in ("beam", "grid", "tilt_deg", "n_views")}
    cols = geom.get("det_shape", scanner.detector.shape)[1]
    tilt = values.get("tilt_deg", args["geometry"].get("tilt_deg", DEFAULT_TILT_DEG))
    n_views = values.get("n_views", args["geometry"].get("n_views", math.ceil(math.pi / 2 * cols)))
    return _Sample(index=index, values=values, phantom_seed=int(values.get("seed", seed)),
                   noise_seed=int(values.get("noise_seed", seed)), params=params, scanner=scanner,
                   geometry=scanner.geometry(tilt, n_views, **geom))


def _check_phantom(args: dict, first: _Sample) -> None:
    """Build the first sample's phantom, and it with each end of a varied parameter's range or each choice, so
    that bad phantom parameters fail before anything is written (phantom builds take milliseconds)."""
    trials = [first.params]
    for key, spec in args["vary"].items():
        if key.startswith(PARAM_PREFIX):
            name = key[len(PARAM_PREFIX):]
            trials += [{**first.params, name: v} for v in spec.get("range", spec.get("choices", []))]
    for params in trials:
        phantoms.get(args["phantom"], seed=first.phantom_seed, **params)


def _check_memory(args: dict, samples: list[_Sample]) -> None:
    """Refuse (one-line ValueError) before anything is written when the largest sample cannot fit in memory."""
    from lamino.resources import check_memory
    from lamino.simulate.simulate import estimate_bytes

    s = max(samples, key=lambda s: s.geometry.n_views * s.geometry.det_shape[0] * s.geometry.det_shape[1])
    n_materials = len(phantoms.get(args["phantom"], seed=s.phantom_seed, **s.params).materials)
    grid = VolumeGrid.from_dict(args["geometry"]["grid"]) if "grid" in args["geometry"] else None
    check_memory(estimate_bytes(s.geometry, n_materials, grid),
                 f"simulating {s.geometry.n_views} views of {s.geometry.det_shape[0]}×{s.geometry.det_shape[1]} "
                 "pixels", "use fewer views, a smaller detector or a coarser truth grid")


def _overrides(args: dict, values: dict) -> dict:
    """Scanner overrides of one sample: the fixed ones and a varied exposure or tube voltage."""
    return {**args["scanner_overrides"], **{k: values[k] for k in ("exposure_s", "kvp") if k in values}}


# ---------------------------------------------------------------------------------------------- folder
def _prepare_folder(out: str, header: dict, count: int, overwrite: bool) -> tuple[list[dict], str | None]:
    """Create ``out`` or check it; return the rows of complete samples to keep (none with ``overwrite``) and the
    creation time of the dataset being resumed."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r} is not allowed: it exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    has_manifest = os.path.exists(os.path.join(out, MANIFEST_JSON))
    if overwrite:
        for path in [*glob.glob(os.path.join(glob.escape(out), "sample_*.h5")),
                     *(os.path.join(out, n) for n in (MANIFEST_JSON, MANIFEST_CSV))]:
            if os.path.isfile(path):
                os.remove(path)
        return [], None
    if not has_manifest:
        if glob.glob(os.path.join(glob.escape(out), "sample_*.h5")):
            raise ValueError(f"out={out!r} holds sample files but no {MANIFEST_JSON}: pass overwrite=True to "
                             "replace them or choose another folder")
        return [], None
    old = load_manifest(out)
    differ = [k for k in header["arguments"] if old.header.get("arguments", {}).get(k) != header["arguments"][k]]
    if differ:
        raise ValueError(f"out={out!r} holds a dataset made with different arguments ({', '.join(differ)}): pass "
                         "overwrite=True to replace it or choose another folder")
    done = [r for r in old.rows if _complete(out, r)]
    beyond = [r["index"] for r in done if r["index"] >= count]
    if beyond:
        raise ValueError(f"count={count} is not allowed: out={out!r} already holds sample {max(beyond)} of this "
                         f"dataset; give count ≥ {max(beyond) + 1} or overwrite=True")
    return done, old.header.get("created")


def _complete(out: str, row: dict) -> bool:
    """A row whose file exists with the recorded size (files are written atomically, so it is whole)."""
    path = os.path.join(out, str(row.get("file", "")))
    return row.get("file") == f"sample_{row.get('index', -1):04d}.h5" and os.path.isfile(path) and \
        os.path.getsize(path) == row.get("bytes")


def _write_manifest(out: str, header: dict, rows: dict[int, dict], args: dict) -> None:
    """Rewrite manifest.json and manifest.csv atomically (rows sorted by index)."""
    ordered = [rows[i] for i in sorted(rows)]
    header = {**header, "updated": _now(), "complete": len(ordered) == header["count"]}
    with atomic_write(os.path.join(out, MANIFEST_JSON), suffix=".json") as tmp, \
            open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"header": header, "rows": ordered}, fh, indent=1)
    with atomic_write(os.path.join(out, MANIFEST_CSV), suffix=".csv") as tmp, \
            open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(_csv_text(ordered, args))


def _csv_text(rows: list[dict], args: dict) -> str:
    """One line per sample: the flat fields, varied phantom parameters, then params and geometry as JSON."""
    varied = [k for k in args["vary"] if k.startswith(PARAM_PREFIX)]
    columns = [*_CSV_COLUMNS, *varied, "params", "geometry", "lamino_version", "seconds"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = [row[c] for c in _CSV_COLUMNS] + [row["values"][k] for k in varied]
        cells += [json.dumps(row["params"]), json.dumps(row["geometry"]), row["lamino_version"], row["seconds"]]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- helpers
def _json(value: Any, name: str) -> Any:
    """``value`` through JSON (tuples → lists, numpy → Python); a ValueError naming ``name`` if it cannot be."""
    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic | np.ndarray):
            return obj.tolist()
        raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

    try:
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}={value!r} is not allowed: give JSON-serialisable values ({exc})") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

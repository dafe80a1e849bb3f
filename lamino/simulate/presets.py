"""Scanner presets as package data: ``presets.toml`` read and checked (keys, types, required fields).

The file (shipped beside this module) has one table ``[presets.<name>]`` per instrument, in the order
:meth:`Scanner.presets <lamino.simulate.Scanner.presets>` lists them, with its detector in
``[presets.<name>.detector]``. Keys are the fields of :class:`~lamino.simulate.Scanner` and
:class:`~lamino.simulate.Detector` in the units of ``design.md`` (mm, keV, s, kV, µA, µm, photons/mm²/s, ADU/keV).
Every number a preset's kind of instrument uses must be given (:data:`REQUIRED`, :data:`DETECTOR_REQUIRED`), so none
falls back silently to a dataclass default, and cited in the preset's ``sources`` list; ``{name}`` in a source stands
for the entry ``name`` of the ``[references]`` table (a citation shared by several presets). TOML has no null: the
string ``"none"`` means None where a field allows it (``bit_depth = "none"``: no saturation); ``inf`` is infinity.

This module returns plain, checked fields; :func:`lamino.simulate.scanner.load_presets` builds the scanners, whose
own checks (ranges, consistency) report errors with the same location. Errors are one-line ValueErrors naming the
file and the table.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["DETECTOR_KEYS", "DETECTOR_REQUIRED", "PRESETS_FILE", "REQUIRED", "SCANNER_KEYS", "read_presets", "where"]

PRESETS_FILE = resources.files("lamino.simulate") / "presets.toml"
"""The presets shipped with lamino."""


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_list(v: Any, item: Callable[[Any], bool], n: int | None = None) -> bool:
    return isinstance(v, list) and (n is None or len(v) == n) and all(map(item, v))


KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "string": ("a string", lambda v: isinstance(v, str)),
    "number": ("a number", _is_number),
    "integer": ("an integer", _is_int),
    "boolean": ("true or false", lambda v: isinstance(v, bool)),
    "two numbers": ("an array of two numbers", lambda v: _is_list(v, _is_number, 2)),
    "two integers": ("an array of two integers", lambda v: _is_list(v, _is_int, 2)),
    "layers": ('an array of ["material", thickness_mm] arrays',
               lambda v: _is_list(v, lambda p: isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                  and _is_number(p[1]))),
    "strings": ("an array of strings", lambda v: _is_list(v, lambda s: isinstance(s, str))),
}
"""Value kinds: (what to give, test of a parsed TOML value)."""

SCANNER_KEYS: dict[str, tuple[str, bool]] = {
    "beam": ("string", False), "description": ("string", False), "kvp": ("number", True),
    "kvp_range": ("two numbers", True), "target": ("string", False), "anode_angle_deg": ("number", False),
    "filters": ("layers", False), "energy_kev": ("number", True), "spectrum_file": ("string", True),
    "current_ua": ("number", False), "exposure_s": ("number", False), "flux": ("number", True),
    "focal_spot_um": ("number", False), "sod": ("number", True), "sdd": ("number", True),
    "n_flats": ("integer", False), "n_darks": ("integer", False), "readout_s": ("number", False),
    "max_frame_s": ("number", True), "sources": ("strings", False),
}
"""Keys of a ``[presets.<name>]`` table besides ``detector``: (kind, whether ``"none"`` is allowed). The name is
the table's."""

DETECTOR_KEYS: dict[str, tuple[str, bool]] = {
    "shape": ("two integers", False), "spacing": ("two numbers", False), "mode": ("string", False),
    "scintillator": ("string", True), "scintillator_um": ("number", False), "cover": ("layers", False),
    "threshold_kev": ("two numbers", False), "psf": ("string", False), "psf_sigma_px": ("number", False),
    "glare_fraction": ("number", False), "glare_sigma_px": ("number", False), "lorentz_gamma_px": ("number", False),
    "gain_sigma": ("number", False), "gain_drift_sigma": ("number", False), "dead_fraction": ("number", False),
    "hot_fraction": ("number", False), "adu_per_kev": ("number", False), "read_noise_adu": ("number", False),
    "offset_adu": ("number", False), "bit_depth": ("integer", True), "quantize": ("boolean", False),
    "seed": ("integer", False),
}
"""Keys of a ``[presets.<name>.detector]`` table: (kind, whether ``"none"`` is allowed)."""

REQUIRED: tuple[tuple[str | None, Any, tuple[str, ...]], ...] = (
    (None, None, ("beam", "description", "sources", "exposure_s", "readout_s", "n_flats", "n_darks", "detector")),
    ("beam", "cone", ("kvp", "kvp_range", "target", "anode_angle_deg", "filters", "current_ua", "focal_spot_um",
                      "sod", "sdd")),
    ("beam", "parallel", ("flux",)),
)
"""Keys every preset gives (condition None), and those it gives when a key has a value: (key, value, keys)."""

DETECTOR_REQUIRED: tuple[tuple[str | None, Any, tuple[str, ...]], ...] = (
    (None, None, ("shape", "spacing", "mode", "scintillator", "scintillator_um", "psf", "gain_sigma",
                  "gain_drift_sigma", "dead_fraction", "hot_fraction", "read_noise_adu", "offset_adu", "bit_depth")),
    ("mode", "integrating", ("adu_per_kev",)),
    ("mode", "counting", ("threshold_kev",)),
    ("psf", "gaussian", ("psf_sigma_px",)),
    ("psf", "glare", ("psf_sigma_px", "glare_fraction", "glare_sigma_px")),
    ("psf", "lorentzian", ("lorentz_gamma_px",)),
)
"""The detector's required keys, as :data:`REQUIRED`."""

_REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def where(path, table: str) -> str:
    """The location of a table in a presets file, for error messages: ``<path> [<table>]``."""
    return f"{path} [{table}]"


def read_presets(path=None) -> dict[str, dict[str, Any]]:
    """The checked presets of ``path`` (default :data:`PRESETS_FILE`), in file order: {name: fields}, ``fields``
    the Scanner fields (arrays as tuples, ``"none"`` as None, references filled in) with ``detector`` the
    Detector fields. One-line ValueError naming the file and table for anything not allowed."""
    if path is None:
        path = PRESETS_FILE
    elif isinstance(path, str | os.PathLike):
        path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"presets file {path} does not exist: give a TOML file of [presets.<name>] tables") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"presets file {path} is not valid TOML: {exc}") from None
    _known_keys(data, {"references": None, "presets": None}, f"presets file {path}")
    references = data.get("references", {})
    if not isinstance(references, dict) or not all(isinstance(v, str) for v in references.values()):
        raise ValueError(f"{where(path, 'references')}: is not allowed as given: give name = \"citation\" strings")
    presets = data.get("presets")
    if not isinstance(presets, dict) or not presets:
        raise ValueError(f"presets file {path} has no [presets.<name>] tables: give at least one preset")
    return {name: _preset(path, name, table, references) for name, table in presets.items()}


def _preset(path, name: str, table: Any, references: dict[str, str]) -> dict[str, Any]:
    """One preset's checked fields."""
    at = where(path, f"presets.{name}")
    if not isinstance(table, dict):
        raise ValueError(f"{at}: {table!r} is not allowed: give a table of Scanner fields")
    fields = _fields(table, SCANNER_KEYS | {"detector": ("table", False)}, REQUIRED, at)
    detector = table.get("detector")
    if not isinstance(detector, dict):
        raise ValueError(f"{at}: detector={detector!r} is not allowed: give a [presets.{name}.detector] table")
    fields["detector"] = _fields(detector, DETECTOR_KEYS, DETECTOR_REQUIRED, where(path, f"presets.{name}.detector"))
    fields["sources"] = tuple(_cite(s, references, at) for s in fields["sources"])
    return fields


def _fields(table: dict[str, Any], keys: dict[str, tuple[str, bool]], required, at: str) -> dict[str, Any]:
    """The values of ``table`` checked against ``keys`` (kinds) and ``required``; arrays as tuples."""
    _known_keys(table, keys, at)
    out: dict[str, Any] = {}
    for key, value in table.items():
        kind, nullable = keys[key]
        if kind == "table":
            continue
        if nullable and value == "none":
            out[key] = None
            continue
        what, ok = KINDS[kind]
        if not ok(value):
            raise ValueError(f"{at}: {key}={value!r} is not allowed: give {what}"
                             + (' or "none"' if nullable else ""))
        out[key] = _tuples(value)
    for key, value, needed in required:
        if key is not None and table.get(key) != value:
            continue
        missing = [k for k in needed if k not in table]
        if missing:
            who = "every preset" if key is None else f"a preset with {key} = {value!r}"
            raise ValueError(f"{at}: {missing[0]!r} is missing: {who} must give {', '.join(needed)}")
    return out


def _known_keys(table: dict[str, Any], keys, at: str) -> None:
    unknown = [k for k in table if k not in keys]
    if unknown:
        raise ValueError(f"{at}: key {unknown[0]!r} is not allowed: allowed keys are {', '.join(keys)}")


def _tuples(value: Any) -> Any:
    """TOML arrays (nested) as tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _cite(source: str, references: dict[str, str], at: str) -> str:
    """``source`` with every ``{name}`` replaced by the reference ``name``."""
    def sub(match: re.Match) -> str:
        if match[1] not in references:
            raise ValueError(f"{at}: sources cite {{{match[1]}}}, which is not in [references]: known are "
                             f"{', '.join(references) or 'none'}")
        return references[match[1]]

    return _REFERENCE.sub(sub, source)

"""Validation of phantom parameters: one-line errors naming the parameter, its value and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check_number(value, name: str, lo: float, hi: float, what: str, unit: str = "") -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name}={value!r} is not allowed: give {what} from {lo:g} to {hi:g}{unit}")
    return v


def check_length(value, name: str, lo: float, hi: float) -> float:
    """A finite length in mm within [lo, hi]."""
    return _check_number(value, name, lo, hi, "a length", " mm")


def check_fraction(value, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    """A finite number within [lo, hi]."""
    return _check_number(value, name, lo, hi, "a number")


def check_int(value, name: str, lo: int, hi: int) -> int:
    """An integer within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}={value!r} is not allowed: give an integer from {lo} to {hi}")
    return value


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """One of the allowed strings."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not allowed: choose one of {', '.join(choices)}")
    return value

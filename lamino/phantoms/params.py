"""Validation of phantom parameters: one-line errors naming the parameter, its value and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_length(value, name: str, lo: float, hi: float) -> float:
    """A finite length in mm within [lo, hi]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name}={value!r} is not allowed: give a length from {lo:g} to {hi:g} mm")
    return v


def check_fraction(value, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    """A finite number within [lo, hi]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"{name}={value!r} is not allowed: give a number from {lo:g} to {hi:g}")
    return v


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

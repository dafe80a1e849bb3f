"""Validation of numeric settings shared by lamino's dataclasses: one-line errors naming the field and its value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def number(name: str, value: Any, ok: Any, allowed: str) -> float:
    """``value`` as a float if ``ok(value)`` holds (NaN never does), else a ValueError naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or math.isnan(x) or not ok(x):
        raise ValueError(f"{name}={value!r} is not allowed: give {allowed}")
    return x


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def positive(name: str, value: Any, unit: str = "") -> float:
    return number(name, value, lambda x: 0 < x < math.inf, f"a finite value > 0{unit}")


def non_negative(name: str, value: Any, unit: str = "") -> float:
    return number(name, value, lambda x: 0 <= x < math.inf, f"a finite value ≥ 0{unit}")


def fraction(name: str, value: Any) -> float:
    return number(name, value, lambda x: 0 <= x <= 1, "a fraction in [0, 1]")


def count(name: str, value: Any) -> int:
    """An integer ≥ 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r} is not allowed: give an integer ≥ 1")
    return int(value)


def pair(name: str, value: Any) -> tuple[Any, Any]:
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give a pair of two values") from None
    return a, b

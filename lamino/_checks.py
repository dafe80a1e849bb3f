"""Validation of numeric settings shared by lamino's dataclasses: one-line errors naming the field and its value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SEED_LIMIT = 2**32
"""Seeds are integers in [0, SEED_LIMIT)."""

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


def seed(name: str, value: Any) -> int:
    """A random seed: an integer in [0, 2**32) (JAX's 32-bit keys would fold larger seeds onto smaller ones)."""
    if not is_int(value) or not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{name}={value!r} is not allowed: give an integer from 0 to {SEED_LIMIT - 1}")
    return int(value)


def finite(name: str, values: Any, source: str | None = None) -> None:
    """ValueError when the array ``values`` holds NaN or inf, saying how many (and from which file ``source``);
    traced arrays are not checked."""
    import jax

    if isinstance(values, jax.core.Tracer):
        return
    bad = nonfinite_count(values)
    if bad:
        raise nonfinite_error(name, bad, int(np.size(values)), source)


def nonfinite_count(values: Any) -> int:
    """How many values of a numpy or JAX array are NaN or inf: one sum over the array (NaN and inf make it
    non-finite), and a count only when that sum is not finite."""
    import jax

    if isinstance(values, jax.Array):
        import jax.numpy as jnp

        xp = jnp
    else:
        xp, values = np, np.asarray(values)
    with np.errstate(over="ignore", invalid="ignore"):
        if values.dtype.kind not in "fc" or math.isfinite(float(xp.abs(xp.sum(values)))):
            return 0
    return int(values.size - xp.count_nonzero(xp.isfinite(values)))      # 0 when the sum only overflowed


def nonfinite_error(name: str, bad: int, total: int, source: str | None = None) -> ValueError:
    """The one-line error for ``bad`` of ``total`` values NaN or inf in ``name`` (from file ``source``)."""
    where = f" of {source!r}" if source else ""
    verb = "are" if name.endswith("s") else "is"
    return ValueError(f"{name}{where} {verb} not allowed: {bad} of {total} values are NaN or inf; give finite values "
                      "(mask or repair bad pixels first)")

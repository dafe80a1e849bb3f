"""JAX set-up shared by lamino: CPU device count for multi-core CPUs, and the devices to compute on.

XLA runs lamino's small per-slice kernels fastest on one thread each; on a CPU with several cores lamino
therefore asks JAX for one CPU device per core (``jax_num_cpu_devices``) and splits views over them. This only
works before JAX's first computation; if JAX was already in use, lamino uses the devices that exist. Set
``LAMINO_CPU_DEVICES=N`` to choose the count (1 disables the split).

Compiled kernels are kept in JAX's persistent compilation cache (``~/.cache/lamino/jax``, or
``LAMINO_JAX_CACHE=/path``; ``LAMINO_JAX_CACHE=off`` disables it), so a second ``lamino`` command or study
worker does not compile again. A cache directory set through JAX's own configuration is left alone.
"""

from __future__ import annotations

import os

import jax


def _configure_cpu_devices() -> None:
    wanted = os.environ.get("LAMINO_CPU_DEVICES")
    try:
        n = int(wanted) if wanted else (os.cpu_count() or 1)
    except ValueError:
        raise ValueError(f"LAMINO_CPU_DEVICES={wanted!r} is not allowed: give an integer ≥ 1") from None
    if n > 1:
        try:
            jax.config.update("jax_num_cpu_devices", n)
        except (RuntimeError, AttributeError):  # backends already initialised: keep what exists
            pass


def _configure_compilation_cache() -> None:
    path = os.environ.get("LAMINO_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "lamino", "jax"))
    if path.strip().lower() in ("", "0", "off", "none", "false") or jax.config.jax_compilation_cache_dir:
        return
    try:
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except (RuntimeError, AttributeError):  # an older JAX without the persistent cache: compile every time
        pass


_configure_cpu_devices()
_configure_compilation_cache()


def compute_devices() -> list:
    """Devices that views are split over: all local CPU devices on CPU, the default device otherwise."""
    devices = jax.devices()
    if devices[0].platform == "cpu":
        return list(devices)
    return [devices[0]]

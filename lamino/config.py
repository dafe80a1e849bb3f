"""Explicit JAX set-up for lamino: CPU device count and the persistent compilation cache.

Importing lamino configures nothing. :func:`configure` — called by the ``lamino`` command line and by study
worker processes, and by library users who want the same speed — sets up JAX before its first computation:

- ``cpu_devices``: XLA runs lamino's small per-slice kernels fastest on one thread each, so on a CPU with
  several cores lamino asks JAX for one CPU device per core (``jax_num_cpu_devices``) and the projector
  splits the views over them. Default: ``LAMINO_CPU_DEVICES`` or the number of cores; 1 disables the split.
- ``cache_dir``: compiled kernels are kept in JAX's persistent compilation cache, so a second ``lamino``
  command or study worker does not compile again. Default: ``LAMINO_JAX_CACHE`` or ``~/.cache/lamino/jax``;
  ``"off"`` disables it.

A user who configured JAX first keeps their settings: a device count set through ``jax_num_cpu_devices`` or
``XLA_FLAGS``, a cache directory set through JAX's own configuration, and a JAX already running are never
overridden; a warning says when lamino would run slower with them.
"""

from __future__ import annotations

import os
import warnings

import jax

_OFF = ("", "0", "off", "none", "false")


def configure(cpu_devices: int | None = None, cache_dir: str | None = None) -> None:
    """Set JAX up for lamino (idempotent): ``cpu_devices`` CPU devices and the compilation cache ``cache_dir``.

    Call it before any JAX computation. Settings the user gave JAX first are kept (see the module docstring).
    """
    _configure_cpu_devices(_device_count(cpu_devices))
    _configure_compilation_cache(cache_dir)


def _device_count(cpu_devices: int | None) -> int:
    if cpu_devices is None:
        wanted = os.environ.get("LAMINO_CPU_DEVICES")
        try:
            cpu_devices = int(wanted) if wanted else (os.cpu_count() or 1)
        except ValueError:
            raise ValueError(f"LAMINO_CPU_DEVICES={wanted!r} is not allowed: give an integer ≥ 1") from None
    if isinstance(cpu_devices, bool) or not isinstance(cpu_devices, int) or cpu_devices < 1:
        raise ValueError(f"cpu_devices={cpu_devices!r} is not allowed: give an integer ≥ 1")
    return cpu_devices


def _configure_cpu_devices(n: int) -> None:
    chosen = getattr(jax.config, "jax_num_cpu_devices", -1)
    by_flag = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if chosen not in (-1, n) or by_flag:                  # the user's own choice: keep it
        have = chosen if chosen > 0 else None
        if have is not None and have < n:
            _slower(f"JAX was set to {have} CPU device(s)")
        return
    if chosen == n or n == 1:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except (RuntimeError, AttributeError):                 # JAX already running: use the devices that exist
        have = len(jax.devices("cpu"))
        if have < n:
            _slower(f"JAX was already running with {have} CPU device(s) when lamino.configure() was called")


def _slower(what: str) -> None:
    warnings.warn(f"{what}; lamino runs faster with one CPU device per core: call lamino.configure() before any "
                  "JAX computation, or set jax_num_cpu_devices yourself", RuntimeWarning, stacklevel=4)


def _configure_compilation_cache(cache_dir: str | None) -> None:
    path = cache_dir if cache_dir is not None else os.environ.get(
        "LAMINO_JAX_CACHE", os.path.join("~", ".cache", "lamino", "jax"))
    if str(path).strip().lower() in _OFF or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(str(path)))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def compute_devices() -> list:
    """Devices that views are split over: all local CPU devices on CPU, the default device otherwise."""
    devices = jax.devices()
    if devices[0].platform == "cpu":
        return list(devices)
    return [devices[0]]

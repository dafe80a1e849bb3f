"""Native cone-beam slice kernels for XLA:CPU (``_cone_cpu.cc``, compiled at install), as JAX calls.

The cone-beam projector resamples every slice by its own magnification; in XLA that is gathers, which XLA:CPU
runs element by element. These XLA FFI custom calls do the same separable linear interpolation as
``_shearwarp.zoom_contribution`` (forward), its exact transpose (adjoint) and ``_shearwarp._gather_zoom``
(backprojection) with plain loops. They run on CPU devices only, on concrete data (they have no
derivative rules: traced volumes and geometries use the XLA kernels), and only when the extension was built;
``LAMINO_NATIVE=0`` switches them off. The extension holds a baseline and an AVX2 + FMA build of each kernel
and runs the one the CPU supports (``LAMINO_NATIVE_BASELINE=1`` forces the baseline).

The kernels check every buffer's rank and shape before they touch it: bad arguments raise
``jax.errors.JaxRuntimeError`` (a ``RuntimeError``), "INVALID_ARGUMENT: <target>: what was wrong, what is allowed".

ABI handshake: before it registers any FFI target, this module loads the library with ctypes and reads its
``lamino_native_abi()`` (the targets' calling convention, :data:`ABI_VERSION`, bumped with ``kAbiVersion`` in
``_cone_cpu.cc`` whenever a target changes) and ``lamino_native_source_hash()`` (the hash of ``_cone_cpu.cc`` and
``_cone_cpu_kernels.h`` that ``setup.py`` compiles in, which :func:`source_hash` recomputes from the sources next
to this module; the package ships them). A library that lacks the symbols or reports other values (a stale build
left from an older checkout, or a foreign library found on ``sys.path``) is refused: :func:`available` is False,
the XLA kernels run, and one ``RuntimeWarning`` says why and how to rebuild (``pip install .``). Where the sources
are missing, only the ABI version is checked.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

_TARGETS = {"LaminoConeZoomSum": "lamino_cone_zoom_sum", "LaminoConeZoomSumT": "lamino_cone_zoom_sum_t",
            "LaminoConeZoomGather": "lamino_cone_zoom_gather", "LaminoBilinearSample": "lamino_bilinear_sample",
            "LaminoBilinearScatter": "lamino_bilinear_scatter"}

ABI_VERSION = 1         # the FFI targets' calling convention: kAbiVersion in _cone_cpu.cc
_SOURCES = ("_cone_cpu.cc", "_cone_cpu_kernels.h")


class StaleLibraryError(RuntimeError):
    """The native library found was not built from this module's kernel sources (or is not lamino's)."""


def source_hash() -> str | None:
    """The hash of the kernel sources next to this module, as ``setup.py`` compiles it into the library; None
    when they are missing."""
    paths = [Path(__file__).with_name(name) for name in _SOURCES]
    if not all(path.is_file() for path in paths):
        return None
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _check_handshake(lib: ctypes.CDLL, path: Path) -> None:
    """Raise :class:`StaleLibraryError` unless the library reports this module's ABI version and kernel sources."""
    fix = "Reinstall lamino (pip install .) to rebuild it."
    try:
        abi, built_from = lib.lamino_native_abi, lib.lamino_native_source_hash
    except AttributeError:
        raise StaleLibraryError(f"{path} has no ABI handshake (lamino_native_abi, lamino_native_source_hash), "
                                f"expected ABI version {ABI_VERSION}: a build older than this lamino, or not lamino's. "
                                f"{fix}") from None
    abi.restype, built_from.restype = ctypes.c_int64, ctypes.c_char_p
    found, found_src, expected_src = abi(), (built_from() or b"").decode(errors="replace"), source_hash()
    if found != ABI_VERSION or expected_src not in (None, found_src):
        raise StaleLibraryError(f"{path} reports ABI version {found} and kernel sources {found_src}, expected ABI "
                                f"version {ABI_VERSION} and sources {expected_src or '(not shipped)'}: a stale build "
                                f"from other sources. {fix}")


def _library_path() -> Path | None:
    """The compiled extension: next to this module, or else in another ``lamino`` on ``sys.path`` (the
    installed one, when the modules are imported from a source checkout, e.g. tests run from the repository
    root after ``pip install .``)."""
    spec = importlib.util.find_spec("lamino.projector._cone_cpu")
    if spec is not None and spec.origin:
        return Path(spec.origin)
    names = ["_cone_cpu" + suffix for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    for entry in sys.path:
        for name in names:
            path = Path(entry or ".", "lamino", "projector", name)
            if path.is_file():
                return path
    return None


@functools.cache
def _registered() -> bool:
    """Load the extension, check its ABI handshake and register its FFI targets for CPU (once); False when it
    was not built. A library from other sources raises :class:`StaleLibraryError` before anything is registered."""
    path = _library_path()
    if path is None:
        return False
    lib = ctypes.CDLL(str(path))
    _check_handshake(lib, path)
    for symbol, target in _TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return True


@functools.cache
def available() -> bool:
    """Whether the native kernels are built, registered and working (checked once, on a tiny problem);
    False when ``LAMINO_NATIVE=0``, and with one ``RuntimeWarning`` when the library is refused or fails."""
    if os.environ.get("LAMINO_NATIVE", "1") == "0":
        return False
    try:
        if not _registered():
            return False
        with jax.default_device(jax.devices("cpu")[0]):
            vol = jnp.ones((2, 3, 4), jnp.float32)
            params = jnp.tile(jnp.array([1.0, 0.0, 0.0], jnp.float32), (1, 2, 1))
            return bool(jnp.allclose(zoom_sum(vol, params, 0, (3, 4)), 2.0))
    except Exception as err:        # a stale or foreign library, a failed load, an FFI mismatch: fall back to XLA
        warnings.warn(f"lamino's native cone-beam kernels are not used, the XLA kernels run instead: {err}",
                      RuntimeWarning, stacklevel=2)
        return False


def _call(symbol: str, result, **kw):
    """The FFI call of one kernel (registering the targets on first use)."""
    if not _registered():
        raise RuntimeError("lamino's native kernels were not built (no C++ compiler at install?): "
                           "use the XLA kernels (native=False)")
    return jax.ffi.ffi_call(_TARGETS[symbol], result, **kw)


def zoom_sum(src, params, slice_axis: int, inter: tuple[int, int]):
    """Intermediate planes (n_views, H_a, H_b): Σ over slices of each slice zoomed by (λ, κ_a, κ_b).

    ``src``: the slice source (slices along ``slice_axis`` 0 or 1, see ``_shearwarp.read_slice``);
    ``params``: (n_views, n_c, 3) float32 per-view, per-slice (λ, κ_a, κ_b) as from ``_shearwarp.cone_maps``.
    """
    call = _call("LaminoConeZoomSum", jax.ShapeDtypeStruct((*params.shape[:1], *inter), jnp.float32))
    return call(src, params, slice_axis=np.int64(slice_axis))


def zoom_sum_transpose(acc, planes_ct, params, slice_axis: int):
    """``acc`` + the exact transpose of :func:`zoom_sum` applied to ``planes_ct`` (updated in place)."""
    call = _call("LaminoConeZoomSumT", jax.ShapeDtypeStruct(acc.shape, jnp.float32), input_output_aliases={0: 0})
    return call(acc, planes_ct, params, slice_axis=np.int64(slice_axis))


def zoom_gather(acc, planes, params, slice_axis: int):
    """``acc`` + each slice read back from the planes (n_views, H_a, H_b) with density 1/λ² (backprojection),
    summed over the views, in place."""
    call = _call("LaminoConeZoomGather", jax.ShapeDtypeStruct(acc.shape, jnp.float32), input_output_aliases={0: 0})
    return call(acc, planes, params, slice_axis=np.int64(slice_axis))


def bilinear_sample(images, rows, cols):
    """Bilinear samples (n, ...) of images (n, H, W) at fractional (rows, cols) (n, ...), zero outside: the
    native form of ``_shearwarp.sample_plane``."""
    return _call("LaminoBilinearSample", jax.ShapeDtypeStruct(rows.shape, jnp.float32))(images, rows, cols)


def bilinear_scatter(values, rows, cols, shape: tuple[int, int]):
    """Transpose of :func:`bilinear_sample`: images (n, *shape) from values (n, ...) at (rows, cols)."""
    call = _call("LaminoBilinearScatter", jax.ShapeDtypeStruct((*values.shape[:1], *shape), jnp.float32))
    return call(values, rows, cols)

"""Builds lamino's one native extension: the cone-beam slice kernels for XLA:CPU (``_cone_cpu.cc``).

They include XLA's FFI headers, which ship with jaxlib (a build requirement in pyproject.toml). The extension
is optional: if it cannot be built (no C++17 compiler, or no jaxlib headers), the install still succeeds, says
why in one line, and lamino runs its XLA kernels. The build passes in a hash of the kernel sources
(``LAMINO_SOURCE_HASH``), which ``lamino.projector._native`` checks before it uses the library.
"""

import hashlib
import importlib.util
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

KERNEL_SOURCES = ["lamino/projector/_cone_cpu.cc", "lamino/projector/_cone_cpu_kernels.h"]

FALLBACK = ("lamino: the native cone-beam kernels could not be built ({reason}); lamino will run its XLA kernels "
            "instead, about 3-7x slower for cone beam on CPU. Install a C++17 compiler (g++ or clang++) and "
            "reinstall (pip install .) to build them.")


def source_hash(paths: list[Path]) -> str:
    """The kernel sources' hash; ``lamino.projector._native.source_hash`` computes the same."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def xla_ffi_include() -> str | None:
    """jaxlib's include directory, if it holds the XLA FFI headers."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    include = Path(next(iter(spec.submodule_search_locations))) / "include"
    return str(include) if (include / "xla" / "ffi" / "api" / "ffi.h").is_file() else None


class OptionalBuildExt(build_ext):
    """``build_ext`` that skips the kernels with one clear line when they cannot be built."""

    def build_extension(self, ext: Extension) -> None:
        if xla_ffi_include() is None:
            return self._skip(ext, "jaxlib's XLA FFI headers were not found; is jaxlib installed?")
        try:
            super().build_extension(ext)
        except (CCompilerError, BaseError) as err:     # e.g. no compiler, or one that rejects the sources
            reason = " ".join(str(err).split()) or type(err).__name__
            self._skip(ext, reason if len(reason) <= 120 else "the C++ compiler failed; its messages are above")

    def _skip(self, ext: Extension, reason: str) -> None:
        stale = Path(self.get_ext_fullpath(ext.name))
        if stale.is_file():                 # an earlier build's library: do not install it with these sources
            stale.unlink()
        print(FALLBACK.format(reason=reason), file=sys.stderr, flush=True)


include = xla_ffi_include()
setup(cmdclass={"build_ext": OptionalBuildExt}, ext_modules=[Extension(
    "lamino.projector._cone_cpu",
    sources=["lamino/projector/_cone_cpu.cc"],
    depends=KERNEL_SOURCES[1:],
    define_macros=[("LAMINO_SOURCE_HASH", f'"{source_hash([Path(p) for p in KERNEL_SOURCES])}"')],
    extra_compile_args=["-O3", "-std=c++17", "-Wall", "-Wextra"] + ([f"-isystem{include}"] if include else []),
    language="c++",
    optional=True,
)])

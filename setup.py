"""Builds lamino's one native extension: the cone-beam slice kernels for XLA:CPU (``_cone_cpu.cc``).

They include XLA's FFI headers, which ship with jaxlib (a build requirement in pyproject.toml). The
extension is optional: if it cannot be compiled, lamino installs without it and runs its XLA kernels.
"""

import importlib.util
from pathlib import Path

from setuptools import Extension, setup


def _xla_ffi_include() -> list[str]:
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return []
    return [str(Path(next(iter(spec.submodule_search_locations))) / "include")]


setup(ext_modules=[Extension(
    "lamino.projector._cone_cpu",
    sources=["lamino/projector/_cone_cpu.cc"],
    depends=["lamino/projector/_cone_cpu_kernels.h"],
    extra_compile_args=["-O3", "-std=c++17"]
    + [f"-isystem{d}" for d in _xla_ffi_include()],
    language="c++",
    optional=True,
)])

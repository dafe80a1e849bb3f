"""lamino — digital twins of X-ray computed laminography (CL) scans.

Core: :mod:`lamino.geometry` (acquisition geometry, volume grid, detector frame), :mod:`lamino.projector`
(JAX forward/adjoint/backprojection), :mod:`lamino.materials` and :mod:`lamino.io`; the pipeline:
:mod:`lamino.phantoms` → :mod:`lamino.simulate` → :mod:`lamino.recon` → :mod:`lamino.studies`
(``docs/architecture.md``). Units: mm, keV, degrees, μ in 1/mm.

Importing lamino configures nothing: call :func:`lamino.configure` (as the ``lamino`` command does) to give
JAX one CPU device per core and a persistent compilation cache.
"""

import importlib

from lamino import geometry, projector
from lamino.config import configure
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector

__version__ = "0.1.0"

_SUBPACKAGES = ("materials", "io", "phantoms", "simulate", "recon", "studies")   # imported on first use

__all__ = ["Geometry", "VolumeGrid", "Projector", "configure", "geometry", "projector", *_SUBPACKAGES,
           "__version__"]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"lamino.{name}")
    raise AttributeError(f"module 'lamino' has no attribute {name!r}")

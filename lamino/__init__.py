"""lamino — digital twins of X-ray computed laminography (CL) scans.

Core: :mod:`lamino.geometry` (acquisition geometry, volume grid) and :mod:`lamino.projector` (JAX
forward/adjoint/backprojection). Units: mm, keV, degrees, μ in 1/mm.
"""

from lamino import _jax  # noqa: F401  (configures JAX CPU devices before first use)

__version__ = "0.1.0"

"""The JAX projector pair of lamino: :class:`Projector` (forward, adjoint, backproject)."""

from lamino.projector.projector import Projector, adjoint_project, backproject, forward_project

__all__ = ["Projector", "forward_project", "adjoint_project", "backproject"]

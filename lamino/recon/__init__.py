"""Reconstruction: analytic (FBP / FDK) and iterative (SIRT, CGLS, FISTA-TV) methods on lamino's projector,
projection preprocessing, and geometry calibration.

Every method reads the same :class:`~lamino.geometry.Geometry` that simulated (or describes) the data and runs
on :class:`~lamino.projector.Projector`. ``fbp`` dispatches to ``fdk`` for cone beam; both are built on the
analytic-reconstruction core :mod:`lamino.recon.analytic` (circular scan, angular weights, row alignment, chunked
filtering). Values are μ in 1/mm.
"""

from lamino.recon.calibrate import PARAMS as CALIBRATION_PARAMS
from lamino.recon.calibrate import Calibration, calibrate
from lamino.recon.fbp import fbp
from lamino.recon.fdk import fdk
from lamino.recon.filters import FILTERS
from lamino.recon.iterative import Reconstruction, cgls, coarser_grid, fista_tv, operator_norm, sirt
from lamino.recon.preprocess import bin_projections, crop_projections, linearize_beam_hardening, suppress_rings
from lamino.recon.reconstruct import METHODS, default_tv_weight, reconstruct

__all__ = ["CALIBRATION_PARAMS", "Calibration", "FILTERS", "METHODS", "Reconstruction", "bin_projections",
           "calibrate", "cgls", "coarser_grid", "crop_projections", "default_tv_weight", "fbp", "fdk", "fista_tv",
           "linearize_beam_hardening", "operator_norm", "reconstruct", "sirt", "suppress_rings"]

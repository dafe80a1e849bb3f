"""One entry point for every reconstruction method, by name: what the CLI and the studies call.

``reconstruct(projections, geometry, grid, method)`` runs ``fbp`` (FDK for cone beam), ``sirt``, ``cgls`` or
``fista-tv`` and returns a :class:`~lamino.recon.iterative.Reconstruction` (FBP with an empty history), so a
caller treats analytic and iterative methods alike.
"""

from __future__ import annotations

import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon.fbp import fbp
from lamino.recon.iterative import Reconstruction, cgls, fista_tv, operator_norm, sirt
from lamino.recon.truncation import check_sample_size, measured_support
from lamino.resources import FLOAT32, check_memory

METHODS = ("fbp", "sirt", "cgls", "fista-tv")

# float32 arrays at a method's peak, in projections (P) and volumes (X): the data, the method's own arrays, and the
# projector's working memory (about 2–3 × its input and output, docs/benchmarks.md). FBP: data, filtered views,
# backprojection; SIRT/CGLS: data, residual, row sums or search direction, x and its updates; FISTA-TV: also the
# momentum and the TV dual fields.
_PEAK = {"fbp": (4, 3), "sirt": (5, 5), "cgls": (5, 5), "fista-tv": (5, 10)}


def estimate_bytes(geometry: Geometry, grid: VolumeGrid, method: str = "fbp") -> int:
    """Peak memory (bytes) of :func:`reconstruct` with ``method``, estimated from the array shapes."""
    n_proj, n_vol = _PEAK[method]
    proj = geometry.n_views * geometry.det_shape[0] * geometry.det_shape[1]
    return FLOAT32 * (n_proj * proj + n_vol * int(np.prod(grid.shape)))


def default_tv_weight(projections, geometry: Geometry, grid: VolumeGrid, fraction: float = 0.01,
                      sample_size=None) -> float:
    """λ for FISTA-TV: ``fraction`` of the image scale (99th percentile of |FBP|, or of a 10-iteration SIRT where
    FBP does not apply) × ‖A‖². A prox step of weight λ/‖A‖² then flattens single-voxel variations of
    ``fraction`` × the image scale (μ, 1/mm). With ``sample_size`` (z, y, x) mm (truncated data of a wide flat
    sample) FBP extends the rows to it and ‖A‖ is that of the measured support's grid, which FISTA-TV uses."""
    try:
        start = np.asarray(fbp(projections, geometry, grid, sample_size=sample_size))
    except ValueError:
        start = np.asarray(sirt(projections, geometry, grid, iterations=10, sample_size=sample_size).volume)
    scale = float(np.percentile(np.abs(start), 99))
    norm_grid = grid if sample_size is None else measured_support(geometry, grid, sample_size, 10, "fista_tv").grid
    return fraction * scale * operator_norm(Projector(geometry, norm_grid)) ** 2


def reconstruct(projections, geometry: Geometry, grid: VolumeGrid, method: str = "fbp", *,
                iterations: int | None = None, lam: float | None = None, filter: str = "ram-lak",
                progress: bool = False, extend: bool = True, sample_size=None) -> Reconstruction:
    """Reconstruct line integrals (n_views, rows, cols) of ``geometry`` on ``grid`` with ``method`` (μ, 1/mm).

    ``iterations`` (iterative methods; default: each method's own), ``lam`` (FISTA-TV weight; default
    :func:`default_tv_weight`), ``filter`` (FBP ramp filter), ``sample_size`` ((z, y, x) mm of a flat sample
    wider than the field of view, a box centred on the origin: FBP continues truncated rows to it,
    :mod:`lamino.recon.truncation`; the iterative methods solve on its measured support and crop, see
    :mod:`lamino.recon.iterative`), ``extend`` (False: no region-of-interest handling at all — plain FBP and
    iterative methods on ``grid`` alone).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: choose one of {', '.join(METHODS)}")
    if isinstance(geometry, Geometry) and isinstance(grid, VolumeGrid):
        check_memory(estimate_bytes(geometry, grid, method), f"{method} of {geometry.n_views} views onto a "
                     f"{'×'.join(map(str, grid.shape))} grid", "use a coarser or smaller grid, or bin the projections")
    check_sample_size(sample_size)
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int)
                                   or iterations < 1):
        raise ValueError(f"iterations={iterations!r} is not allowed: give an integer ≥ 1")
    if method == "fbp":
        volume = fbp(projections, geometry, grid, filter=filter, extend=extend, sample_size=sample_size)
        params = {"filter": filter, "extend": extend,
                  "sample_size": None if sample_size is None else [float(v) for v in sample_size]}
        return Reconstruction(volume, grid, {}, "fbp", params)
    kw = {"iterations": iterations} if iterations else {}
    if sample_size is not None and extend:
        kw["sample_size"] = sample_size
    if method == "fista-tv":
        kw["lam"] = lam if lam is not None else default_tv_weight(projections, geometry, grid,
                                                                  sample_size=kw.get("sample_size"))
    solver = {"sirt": sirt, "cgls": cgls, "fista-tv": fista_tv}[method]
    return solver(projections, geometry, grid, progress=progress, **kw)

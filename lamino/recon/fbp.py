"""Filtered backprojection for parallel-beam CT and computed laminography (CL-FBP).

Formula (parallel beam, tilt α, laminographic angle θ = 90° − α; design.md "Parallel CL-FBP")::

    f(x) = (sin θ / 2) · Σ_i w_i · (h_u ∗ p_i)(u_i(x), v_i(x))                                  (1)

with p_i the line integrals of view i, h_u the ramp filter along the detector rows (u) only
(:mod:`lamino.recon.filters`, response ≈ |k_u|), w_i the angular weights (radians, see below) and (u_i(x), v_i(x))
where voxel x projects. Derivation (Fourier slice theorem): the 2-D FT of view φ is the 3-D FT of f on the
plane spanned by the detector's u (horizontal, ⟂ ray) and v directions; as φ turns, the volume element is
d³k = |k_u| · |ẑ × r̂| dk_u dk_v dφ with |ẑ × r̂| = cos α = sin θ, and over 360° every frequency outside the
missing double cone (half-angle α about the rotation axis z) lies on two such planes: hence the factor
sin θ / 2 and the ramp |k_u| (CL-FBP as used since Helfen et al., Appl. Phys. Lett. 86 (2005) and 94, 104103
(2009); derivation written out here, checked by tests/test_recon_fbp.py). At α = 0 this is ordinary FBP;
there a ray and its reverse carry the same line integral, so view angles are folded modulo 180° and the
factor becomes 1: any coverage ≥ 180° is then reconstructed exactly (short-scan parallel CT).

Angular weights w_i (the Voronoi weights of the sorted view angles, 2π / n for uniform scans), the coverage
check, the geometries supported and the resampling of detectors whose rows are not along the trajectory tangent
are those of the analytic-reconstruction core :mod:`lamino.recon.analytic`, shared with FDK.

Backprojection uses :meth:`lamino.projector.Projector.backproject`, which weights each view by
V_voxel / |(u × v) · r̂|; the filtered views are pre-scaled by the inverse of that factor so that (1) holds
in 1/mm (:func:`lamino.recon.analytic.parallel_fbp`, which FDK also hands parallel beams to). Cone-beam
geometries are handed to :func:`lamino.recon.fdk.fdk`.
"""

from __future__ import annotations

import jax

from lamino.geometry import Geometry, VolumeGrid
from lamino.recon.analytic import check_arguments, parallel_fbp
from lamino.recon.fdk import fdk


def fbp(projections, geometry: Geometry, grid: VolumeGrid, filter: str = "ram-lak", cutoff: float = 1.0,
        pad: bool = True, *, extend: bool = True, sample_size=None) -> jax.Array:
    """Filtered backprojection (CT and CL-FBP, eq. (1) of the module docstring): μ volume (nz, ny, nx), 1/mm.

    Args:
        projections: line integrals −log(I/I₀), (n_views, rows, cols) of ``geometry`` (numpy or JAX).
        geometry: parallel beam at any tilt (cone beam is passed to :func:`lamino.recon.fdk.fdk`).
        grid: the output voxel grid.
        filter: one of :data:`lamino.recon.filters.FILTERS`.
        cutoff: filter cutoff as a fraction of the Nyquist frequency, in (0, 1].
        pad: zero-pad the rows to ≥ 2·cols before the FFT (linear convolution).
        extend: region-of-interest handling: continue each row beyond the detector before the ramp
            (:mod:`lamino.recon.truncation`; needs ``pad``), so that a sample wider than the field of view is
            reconstructed without bias or cupping, and backproject through a soft detector window normalised by
            each voxel's measured fraction (:mod:`lamino.recon.coverage`), so that voxels leaving the detector
            for part of the turn fade out instead of streaking. False: plain zero-padded FBP.
        sample_size: (z, y, x) mm of the sample, a box centred on the origin: how far rows are continued.
            None: a laterally unbounded flat sample.

    Returns a float32 JAX array. For an isotropic object the value at its centre is cos α × truth (the missing
    cone); flat layers parallel to the sample plane are not recovered. Raises ValueError when analytic
    reconstruction does not apply (see :mod:`lamino.recon.analytic`).
    """
    proj, opts = check_arguments(projections, geometry, grid, filter, cutoff, pad, extend, sample_size)
    if geometry.beam == "cone":
        return fdk(proj, geometry, grid, filter=opts.name, cutoff=opts.cutoff, pad=opts.pad, extend=opts.extend,
                   sample_size=opts.sample_size)
    return parallel_fbp(proj, geometry, grid, opts)

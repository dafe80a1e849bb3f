"""FDK-type filtered backprojection for cone-beam CT and cone-beam computed laminography (CL).

In the sample frame the source of a cone-beam CL scan runs on a circle about the rotation axis z, of radius
R = SOD·cos α at height z_s = SOD·sin α (α = tilt). Feldkamp, Davis & Kress (J. Opt. Soc. Am. A 1, 612,
1984) apply to such a circle once the data live on a *virtual detector parallel to the axis*: this is the
method of Sun et al. (Meas. Sci. Technol. 32, 045403, 2021), who resample the tilted real detector onto that
virtual one and run standard FDK. With the virtual detector through the axis, coordinates (A, B) along the
trajectory tangent t = ẑ × source and along z, FDK reads (Kak & Slaney 1988, ch. 3, Feldkamp algorithm,
shifted along z by z_s)::

    f(x) = ½ Σ_i w_i · R² / (R − x·ŝ_i)² · ∫ h(A(x) − A') · R / |X(A', B) − S_i| · p_i(A', B) dA'        (1)

(ŝ_i horizontal unit vector from the axis to the source S_i, X(A, B) the virtual-detector point, h the ramp
of :mod:`lamino.recon.filters`, w_i the angular weights of :func:`lamino.recon.analytic.angular_weights`).

This module evaluates (1) *on the real detector, without resampling*. The tangent t is the lab x axis,
i.e. the real detector's row direction (when it is not — ``det_roll_deg`` ≠ 0, or ``cor_offset`` ≠ 0, which
puts the source off the detector's central column — by more than 0.25°, the views are first resampled onto a
virtual detector with rows along t by :func:`lamino.recon.analytic.align_rows`), so the plane through S_i and a
real row contains t and meets the virtual detector in a virtual row: rows map to rows. Along one row the
central projection from S_i is a scaling A = λ·u + const with λ = |X − S| / |P_d − S| constant on the row
(P_d the real pixel). Since the ramp kernel is homogeneous, h(λ·u) = h(u) / λ², and
R / (R − x·ŝ) = λ·|P_d − S| / |x − S|, every λ cancels and (1) becomes::

    f(x) = (R / 2) Σ_i w_i · (|P_d − S_i| / |x − S_i|)² · [h_u ∗ (p_i / |P_d − S_i|)](u_i(x), v_i(x))     (2)

with h_u the ramp along the real detector rows (u) and P_d the pixel that x projects to. Eq. (2) is exact
FDK (1) for any circular cone-beam scan with detector rows along the tangent, at any tilt; it is ordinary
FDK at α = 0, and as SOD → ∞ (|P_d − S| ≈ SDD, |P_d − S| / |x − S| ≈ SDD / SOD, magnification M) it becomes
the parallel CL-FBP of :func:`lamino.recon.fbp.fbp`: the ramp of data magnified by M scales as 1 / M, so
(R / 2)·M²·(1 / SDD)·(1 / M) = cos α / 2.

:meth:`lamino.projector.Projector.backproject` supplies (|P_d − S| / |x − S|)² · V / |(u × v) · r̂|; the
filtered views are multiplied by (R / 2)·w_i·|(u × v) · (d − S_i)| / (V·|P_d − S_i|) (d the detector centre;
|(u × v) · r̂| = |(u × v) · (d − S)| / |P_d − S|) before it. Like all FDK methods the result is approximate away
from the source's plane (cone-angle artefacts grow with the distance from z = z_s and with the cone angle); it
needs a full 360° scan (no short-scan weights).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.geometry.frame import pixel_centres, split_vectors
from lamino.recon.analytic import (
    Filtering,
    backproject_measured,
    check_arguments,
    chunk_size,
    circular_scan,
    extended_response,
    map_view_chunks,
    parallel_fbp,
)
from lamino.recon.filters import _apply, ramp_response
from lamino.recon.truncation import filter_extended


def fdk(projections, geometry: Geometry, grid: VolumeGrid, filter: str = "ram-lak", cutoff: float = 1.0,
        pad: bool = True, *, extend: bool = True, sample_size=None) -> jax.Array:
    """Cone-beam CT/CL reconstruction by FDK on a virtual axis-parallel detector (eq. (2)): (nz, ny, nx), 1/mm.

    Args:
        projections: line integrals, (n_views, rows, cols) of ``geometry`` (numpy or JAX).
        geometry: a cone-beam circular scan over 360° at any tilt (parallel beam is reconstructed by the
            CL-FBP of :func:`lamino.recon.fbp.fbp`).
        grid: the output voxel grid.
        filter: one of :data:`lamino.recon.filters.FILTERS`.
        cutoff: fraction of the Nyquist frequency in (0, 1].
        pad: zero-pad the rows to ≥ 2·cols before the FFT.
        extend, sample_size: continue truncated rows beyond the detector, as far as the sample box (z, y, x) mm
            reaches (None: laterally unbounded); see :func:`lamino.recon.fbp.fbp`.

    Returns a float32 JAX array. Raises ValueError for short scans, non-circular trajectories and other
    geometries where (2) does not apply (see :func:`lamino.recon.analytic.circular_views`).
    """
    proj, opts = check_arguments(projections, geometry, grid, filter, cutoff, pad, extend, sample_size)
    if geometry.beam != "cone":
        return parallel_fbp(proj, geometry, grid, opts)
    proj, geometry, views = circular_scan(proj, geometry)
    src, det, u, v = split_vectors(views.vectors)
    radius = np.hypot(src[:, 0], src[:, 1])                                  # R: source to axis
    flux = np.abs(np.sum(np.cross(u, v) * (det - src), 1))                   # |(u × v) · (d − S)|
    scale = 0.5 * radius * views.weights * flux / float(np.prod(grid.voxel_size))
    # every view moved by −S_i (source at the origin): its pixel centres are then P_d − S_i
    from_source = np.concatenate([np.zeros_like(src), det - src, u, v], axis=1)
    filtered = _filter_cone(proj, from_source, float(np.linalg.norm(u[0])), opts, scale, opts.extents(geometry))
    return backproject_measured(filtered, geometry, grid, views.weights, opts.extend)


def _filter_cone(proj, from_source, du: float, opts: Filtering, scale: np.ndarray, extents: np.ndarray | None):
    """scale_i / |P_d − S| · [h_u ∗ (p_i / |P_d − S|)] for every view, in chunks of views: float32 (n, rows, cols).

    ``from_source``: the views' 12-vectors (n, 12) moved by −S_i, so that their pixel centres are P_d − S_i (mm).
    With ``extents`` (n, rows, 2) the weighted rows p_i / |P_d − S| are continued beyond the detector at their
    edge value (:func:`lamino.recon.truncation.filter_extended`), which neglects the slow growth of |P_d − S|
    along the continued row; on the cone-beam plate of tests/test_recon_roi.py the result is as close to the
    untruncated reconstruction as in parallel beam (1.3 %)."""
    n, rows, cols = proj.shape
    if extents is None:
        response, n_fft = ramp_response(cols, du, opts.name, opts.cutoff, opts.pad)
        extents = np.zeros((n, rows, 2), np.float32)
    else:
        response, n_fft = extended_response(cols, du, opts.name, opts.cutoff)
    return map_view_chunks(lambda chunk, vec, ext, sc: _cone_chunk(chunk, vec, ext, sc, response, du, n_fft,
                                                                   extend=opts.extend and opts.pad),
                           proj, chunk_size(n, rows, n_fft), from_source, extents, scale)


@functools.partial(jax.jit, static_argnames=("n_fft", "extend"))
def _cone_chunk(chunk, from_source, extents, scale, response, du: float, n_fft: int, extend: bool):
    """The FDK filtering of eq. (2) for a chunk of views (b, rows, cols), float32."""
    ray = pixel_centres(from_source, chunk.shape[1:], jnp, jnp.float32)    # P_d − S: (b, rows, cols, 3)
    inv_dist = 1.0 / jnp.linalg.norm(ray, axis=-1)
    weighted = chunk * inv_dist
    filtered = (filter_extended(weighted, extents, response, du, n_fft) if extend
                else _apply(weighted, response, n_fft))
    return filtered * inv_dist * scale[:, None, None]

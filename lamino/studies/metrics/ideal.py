"""The ideal-scan truth: the part of a volume that a geometry can measure at all.

A parallel-beam view with ray direction d̂ measures the central plane k·d̂ = 0 of the volume's Fourier transform
(Fourier slice theorem). Parallel CL over 360° at tilt α therefore measures every frequency k except the double
cone of half-angle α about the rotation axis (the sample's z axis),

    missing:  |k_z| > |k| cos α                                                                            (1)

(design.md, "Laminography facts"). Exact CL-FBP (``lamino.recon.fbp``) with infinitely many views has the
transfer function H(k) = 1 outside that cone and 0 inside it: for k outside the cone the view angle φ crosses the
plane k·d̂(φ) = 0 twice, and the ramp |k_u| = k_r |sin(φ − ψ)| cancels the Jacobian |∂(k·d̂)/∂φ| =
k_r cos α |sin(φ − ψ)|, so each crossing contributes 1/cos α, which the factor sin θ / 2 = cos α / 2 turns into
1 (k_r = in-plane |k|, ψ its azimuth). The ideal-scan truth is thus IFFT(H · FFT(truth)): what a noise-free,
infinitely-many-view scan of the geometry reconstructs with exact FBP. For an isotropic object its centre is
cos α × the truth (the share of directions outside the cone), as design.md states.

Discretisation (all in physical frequency, cycles/mm, so anisotropic voxels are handled):

- the volume is padded to ≥ 2× its size on every axis before the FFT, so the cone filter (whose kernel decays
  as 1/r³) does not wrap around: zeros along z, the edge values along y and x (a flat sample wider than the grid
  continues, as it does in the scan);
- each DFT bin stands for a cell of Δk = 1 / (n_pad · voxel size) per axis; H is the share of that cell outside
  the cone (3 × 3 × 3 sub-samples), which resolves the cone at low |k| (a compact object's spectrum is smooth
  across a cell: with H at the bin centres only, a Gaussian blob's centre at 45° comes out 5 % high);
- the bins on the k_z axis other than DC get H = 0: their content is what is constant sideways over the padded
  box (layers continued past the grid), all of it inside the cone;
- the DC bin (k = 0, on the axis, where H has no limit) gets the share of measured directions, cos α, the
  value that reproduces "centre = cos α × truth" for an isotropic object. With the 2× padding its effect on
  any voxel is at most cos α × sum(truth) / n_pad, a uniform offset.

Cone-beam CL: the parallel-beam cone of the same tilt is used, an approximation (the cone-beam coverage depends
on the point; it converges to (1) as SOD → ∞). Trajectories given by vectors (e.g. limited-angle CT): H is 1 where
the direction k̂ lies within half a view step of some view's measured plane (the test of
:func:`~lamino.studies.metrics.coverage.missing_cone_fraction`, on each view's central ray: the parallel-beam
approximation), and the DC bin gets the covered share of directions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray

from lamino.geometry import Geometry, VolumeGrid

__all__ = ["ideal_filter", "ideal_truth", "measured_energy_fraction"]

_SUB = 3                       # sub-samples per axis and DFT cell in the share of the cell outside the cone


def _padded_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(scipy.fft.next_fast_len(2 * int(n)) for n in shape)  # type: ignore[return-value]


def _frequencies(shape: tuple[int, int, int], voxel_size: tuple[float, float, float]):
    """Physical frequencies (cycles/mm) of an rfftn over ``shape``: kz (nz,1,1), ky (1,ny,1), kx (1,1,nx//2+1)."""
    kz = np.fft.fftfreq(shape[0], voxel_size[0]).astype(np.float32)[:, None, None]
    ky = np.fft.fftfreq(shape[1], voxel_size[1]).astype(np.float32)[None, :, None]
    kx = np.fft.rfftfreq(shape[2], voxel_size[2]).astype(np.float32)[None, None, :]
    return kz, ky, kx


def _cone_filter(shape, voxel_size, tilt_deg: float) -> NDArray[np.float32]:
    """H on the rfft bins: the share of each bin's cell outside the double cone |k_z| > |k| cos α
    (``_SUB``³ sub-samples); 0 on the k_z axis, cos α at DC (see the module docstring)."""
    if tilt_deg == 0:
        return np.ones((shape[0], shape[1], shape[2] // 2 + 1), np.float32)
    kz, ky, kx = _frequencies(shape, voxel_size)
    dk = [np.float32(1.0 / (n * s)) for n, s in zip(shape, voxel_size, strict=True)]
    cos2 = np.float32(math.cos(math.radians(tilt_deg)) ** 2)
    offsets = ((np.arange(_SUB) + 0.5) / _SUB - 0.5).astype(np.float32)
    h = np.zeros((shape[0], shape[1], shape[2] // 2 + 1), np.float32)
    for oz in offsets:                       # _SUB³ whole-array passes, no loop over voxels
        z2 = (kz + oz * dk[0]) ** 2
        for oy in offsets:
            r2 = z2 + (ky + oy * dk[1]) ** 2
            for ox in offsets:
                h += z2 <= cos2 * (r2 + (kx + ox * dk[2]) ** 2)
    h /= _SUB**3
    h[:, 0, 0] = 0.0                         # the k_z axis: layers continued sideways, all in the cone
    h[0, 0, 0] = math.cos(math.radians(tilt_deg))
    return h


def _direction_filter(shape, voxel_size, geometry: Geometry) -> NDArray[np.float32]:
    """H at each rfft bin of a trajectory given by vectors: 1 if k̂ lies within half a view step of a view's
    measured plane (central rays, parallel-beam approximation), else 0; DC = the covered share of directions."""
    from lamino.studies.metrics import coverage

    vec = np.asarray(geometry.vectors(), np.float64)
    rays = vec[:, 0:3] if geometry.beam == "parallel" else vec[:, 3:6] - vec[:, 0:3]
    rays = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    tol = 0.5 * coverage._view_step_rad(rays)
    kz, ky, kx = _frequencies(shape, voxel_size)
    k = np.stack(np.broadcast_arrays(kx, ky, kz), axis=-1).reshape(-1, 3).astype(np.float64)
    norm = np.linalg.norm(k, axis=-1)
    norm[0] = 1.0
    h = coverage._covered(k / norm[:, None], rays[:, None, :], tol).astype(np.float32)
    h[0] = 1.0 - coverage.missing_cone_fraction(geometry)
    return h.reshape(shape[0], shape[1], shape[2] // 2 + 1)


def _filter(shape: tuple[int, int, int], voxel_size: tuple[float, float, float], geometry: Geometry):
    if geometry.custom_vectors is None:
        return _cone_filter(shape, voxel_size, float(geometry.tilt_deg))
    return _direction_filter(shape, voxel_size, geometry)


def _checked(grid: Any, geometry: Any) -> tuple[float, float, float]:
    if not isinstance(grid, VolumeGrid):
        raise ValueError(f"grid={type(grid).__name__} is not allowed: give a lamino VolumeGrid")
    if not isinstance(geometry, Geometry) or not geometry.is_concrete:
        raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a concrete lamino Geometry")
    return tuple(float(s) for s in grid.voxel_size)  # type: ignore[return-value]


def _volume(volume: Any, grid: VolumeGrid) -> NDArray[np.float32]:
    vol = np.asarray(volume, np.float32)
    if vol.shape != tuple(grid.shape) or not np.all(np.isfinite(vol)):
        raise ValueError(f"volume (shape {vol.shape}) is not allowed: give finite values of the grid's shape "
                         f"{tuple(grid.shape)}")
    return vol


def ideal_filter(grid: VolumeGrid, geometry: Geometry) -> NDArray[np.float32]:
    """The transfer function H of an ideal scan of ``geometry`` (0 … 1, float32) on the rfftn bins of ``grid``
    padded to ≥ 2× per axis (shape (nz_pad, ny_pad, nx_pad // 2 + 1)); see the module docstring."""
    size = _checked(grid, geometry)
    return _filter(_padded_shape(grid.shape), size, geometry)


def ideal_truth(truth: Any, grid: VolumeGrid, geometry: Geometry,
                filter: NDArray[np.float32] | None = None) -> NDArray[np.float32]:
    """The ideal-scan truth (same units as ``truth``, e.g. μ in 1/mm; (nz, ny, nx) float32): ``truth`` with its
    Fourier components that ``geometry`` cannot measure removed, IFFT(H · FFT(truth)) with H of
    :func:`ideal_filter` (give ``filter`` to reuse one). What noise-free, infinitely-many-view exact FBP of that
    geometry reconstructs; see the module docstring for the maths and the discretisation."""
    vol = _volume(truth, grid)
    h = ideal_filter(grid, geometry) if filter is None else filter
    shape = _padded_shape(grid.shape)
    if h.shape != (shape[0], shape[1], shape[2] // 2 + 1):
        raise ValueError(f"filter shape {h.shape} is not allowed: give ideal_filter(grid, geometry)")
    nz, ny, nx = vol.shape
    before = [(p - n) // 2 for p, n in zip(shape, vol.shape, strict=True)]
    lateral = np.pad(vol, ((0, 0), (before[1], shape[1] - ny - before[1]), (before[2], shape[2] - nx - before[2])),
                     mode="edge")                        # the sample continues sideways
    padded = np.pad(lateral, ((before[0], shape[0] - nz - before[0]), (0, 0), (0, 0)))   # air above and below
    spec = scipy.fft.rfftn(padded, workers=-1)
    spec *= h
    out = scipy.fft.irfftn(spec, s=shape, workers=-1)
    return np.ascontiguousarray(out[before[0]:before[0] + nz, before[1]:before[1] + ny, before[2]:before[2] + nx],
                                dtype=np.float32)


def measured_energy_fraction(volume: Any, grid: VolumeGrid, geometry: Geometry) -> float:
    """Σ H |F|² / Σ |F|² (dimensionless), F the DFT of ``volume`` on the grid itself (periodic, no padding) and H
    the ideal filter on those bins: the share of the volume's Fourier energy the geometry measures. For white
    noise and parallel CL at tilt α it is the cone's complement, cos α (1 − cos α missing)."""
    size = _checked(grid, geometry)
    vol = _volume(volume, grid)
    shape = tuple(int(n) for n in grid.shape)
    h = _filter(shape, size, geometry)  # type: ignore[arg-type]
    power = np.abs(scipy.fft.rfftn(vol, workers=-1)) ** 2
    weight = np.full(power.shape[-1], 2.0)           # rfft: the bins 1 … ⌈nx/2⌉−1 stand for ±k
    weight[0] = 1.0
    if shape[2] % 2 == 0:
        weight[-1] = 1.0
    return float(np.sum(h * power * weight) / np.sum(power * weight))

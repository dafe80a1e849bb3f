"""Shared fixtures: analytic phantoms with exact line integrals."""

from __future__ import annotations

import math

import numpy as np

import lamino

lamino.configure()      # as the command line does: one JAX CPU device per core, the compilation cache


def ball_fractions(grid, radius: float, center=(0.0, 0.0, 0.0), supersample: int = 4) -> np.ndarray:
    """Fraction of each voxel inside a ball (x, y, z centre in mm), by supersampling: (nz, ny, nx) float32."""
    return ellipsoid_fractions(grid, (radius, radius, radius), center, supersample)


def ellipsoid_fractions(grid, semi_axes, center=(0.0, 0.0, 0.0), supersample: int = 4) -> np.ndarray:
    """Fraction of each voxel inside an axis-aligned ellipsoid (semi-axes and centre as x, y, z in mm)."""
    k = supersample
    sub = (np.arange(k) + 0.5) / k - 0.5
    axes = []
    for dim in range(3):
        base = grid.axis(dim)
        axes.append((base[:, None] + sub[None, :] * grid.voxel_size[dim]).ravel())
    z, y, x = np.meshgrid(*axes, indexing="ij")
    ax, ay, az = semi_axes
    cx, cy, cz = center
    inside = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0
    nz, ny, nx = grid.shape
    return inside.reshape(nz, k, ny, k, nx, k).mean(axis=(1, 3, 5)).astype(np.float32)


def ellipsoid_chords(geometry, semi_axes, center=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Exact chord length (mm) of every detector ray through an axis-aligned ellipsoid: (views, rows, cols)."""
    vec = np.asarray(geometry.vectors())
    pix = geometry.pixel_positions()
    if geometry.beam == "cone":
        origin = np.broadcast_to(vec[:, None, None, 0:3], pix.shape)
        direction = pix - origin
    else:
        origin = pix
        direction = np.broadcast_to(vec[:, None, None, 0:3], pix.shape)
    direction = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    scale = np.asarray(semi_axes, dtype=float)
    o = (origin - np.asarray(center)) / scale
    d = direction / scale
    a = np.sum(d * d, -1)
    b = np.sum(o * d, -1)
    c = np.sum(o * o, -1) - 1.0
    disc = np.maximum(b * b - a * c, 0.0)
    return 2.0 * np.sqrt(disc) / a


def gaussian_projections(geometry, sigma: float, peak: float = 1.0, center=(0.0, 0.0, 0.0)):
    """Exact line integrals of peak·exp(−|x − c|² / 2σ²) (c as x, y, z mm): (n_views, rows, cols) float32."""
    vec = np.asarray(geometry.vectors())
    pix = geometry.pixel_positions()
    if geometry.beam == "cone":
        ray = pix - vec[:, None, None, 0:3]
    else:
        ray = np.broadcast_to(vec[:, None, None, 0:3], pix.shape)
    ray = ray / np.linalg.norm(ray, axis=-1, keepdims=True)
    w = pix - np.asarray(center, dtype=float)
    perp = w - np.sum(w * ray, -1, keepdims=True) * ray
    return (peak * sigma * math.sqrt(2 * math.pi) * np.exp(-np.sum(perp**2, -1) / (2 * sigma**2))).astype(np.float32)


# the phantom, scanner, simulation and grid of the tiny Siemens-star studies of the study tests (seconds a point)
TINY_STAR_TABLES = """
[phantom]
name = "siemens_star"
seed = 0

[phantom.params]
n_spokes = 8
radius_mm = 0.3
thickness_mm = 0.05
substrate_thickness_mm = 0.05
arc_points = 2
label_sectors = 4

[scanner]
preset = "esrf_id19"
det_shape = [12, 20]
det_spacing = 0.04
energy_kev = 30.0
exposure_s = 0.0005

[simulate]
n_bins = 1
noise = true

[recon]
grid = { shape = [6, 16, 16], voxel_size = 0.045 }
"""


def tiny_star_study(study: str, rest: str) -> str:
    """A study file: the ``[study]`` table ``study``, the tiny Siemens-star tables, then ``rest`` (sweep, objective,
    planner)."""
    return study.rstrip("\n") + "\n" + TINY_STAR_TABLES + rest

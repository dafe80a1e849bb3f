"""Shared fixtures: analytic phantoms with exact line integrals, and a single-interpolation backprojector."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import lamino
from lamino.geometry.frame import projection_matrices

lamino.configure()      # as the command line does: one JAX CPU device per core, the compilation cache


def voxel_driven_backproject(filtered, geometry, grid, chunk: int = 8) -> jax.Array:
    """Reference backprojection with one detector interpolation per voxel and view (plain JAX, slow):
    Σ_views bilinear(view, projection of the voxel centre), (nz, ny, nx). Parallel beam with unit weights
    V / |(u × v)·r̂| = 1 (cubic voxels of one detector pixel)."""
    m = projection_matrices(geometry.vectors(), geometry.beam, geometry.det_shape)
    m[:, :, 3] += m[:, :, :3] @ np.asarray(grid.center)[::-1]
    z, y, x = (jnp.asarray(grid.axis(k) - grid.center[k], jnp.float32) for k in range(3))
    rows, cols = geometry.det_shape
    pad = (-len(m)) % chunk
    views = jnp.concatenate([jnp.asarray(filtered, jnp.float32), jnp.zeros((pad, rows, cols), jnp.float32)])
    mats = jnp.asarray(np.concatenate([m, np.repeat(m[-1:], pad, 0)]), jnp.float32)

    def one(img, mm):
        def form(i):
            return mm[i, 0] * x[None, None, :] + mm[i, 1] * y[None, :, None] + mm[i, 2] * z[:, None, None] + mm[i, 3]

        col, row = form(0) / form(2), form(1) / form(2)
        r0, c0 = jnp.floor(row), jnp.floor(col)
        fr, fc = row - r0, col - c0
        r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)
        flat = jnp.pad(img, 1).ravel()

        def tap(r, c):
            ok = (r >= -1) & (r <= rows) & (c >= -1) & (c <= cols)
            return jnp.where(ok, flat[(jnp.clip(r, -1, rows) + 1) * (cols + 2) + jnp.clip(c, -1, cols) + 1], 0.0)

        return (tap(r0, c0) * (1 - fr) * (1 - fc) + tap(r0, c0 + 1) * (1 - fr) * fc
                + tap(r0 + 1, c0) * fr * (1 - fc) + tap(r0 + 1, c0 + 1) * fr * fc)

    @jax.jit
    def run(views, mats):
        def body(acc, vm):
            return acc + jax.vmap(one)(*vm).sum(0), None

        return jax.lax.scan(body, jnp.zeros(grid.shape, jnp.float32),
                            (views.reshape(-1, chunk, rows, cols), mats.reshape(-1, chunk, 3, 4)))[0]

    return run(views, mats)


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

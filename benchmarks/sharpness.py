"""Sharpness of CL-FBP: lamino's backprojection against a single-interpolation voxel-driven reference.

Usage: python benchmarks/sharpness.py [--size 64] [--views 360] [--tilts 30 45]

Both reconstruct the same filtered views of analytic data (parallel CL; ``extend=False``): a Gaussian blob of
σ = 3 voxels on a voxel centre (its centre value, against cos α × truth, the CL-FBP law) and a ball of radius
size/4 (the 10–90 % width of its edge along x through the centre, in voxels). lamino's backprojection
interpolates twice (detector → intermediate plane, bilinear; plane → slice, linear: the shear-warp of
lamino.projector); the reference projects every voxel centre onto every view and interpolates the detector once
(bilinear). The reference is plain JAX and slow (about 35× lamino's at 128³); it is a yardstick, not a method.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import lamino
import lamino.recon.analytic as analytic
from lamino.geometry import Geometry, VolumeGrid
from lamino.geometry.frame import projection_matrices
from lamino.recon import fbp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from conftest import ellipsoid_chords, gaussian_projections  # noqa: E402  (exact line integrals)

lamino.configure()


def voxel_driven_backproject(filtered, geometry: Geometry, grid: VolumeGrid, chunk: int = 8) -> jax.Array:
    """Σ_views bilinear(view, projection of the voxel centre): (nz, ny, nx). Parallel beam with unit weights
    V / |(u × v)·r̂| = 1 (cubic voxels of one detector pixel), as in this benchmark."""
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


def edge_width(vol: np.ndarray, grid: VolumeGrid, radius: float) -> float:
    """10–90 % width (voxels) of the falling edge at x = radius along x through the centre."""
    x = grid.axis(2)
    row = vol[grid.shape[0] // 2, grid.shape[1] // 2]
    top = np.mean(row[(x > radius - 8) & (x < radius - 5)])
    sel = (x > radius - 4) & (x < radius + 4)
    xi = np.linspace(x[sel][0], x[sel][-1], 4001)
    fi = np.interp(xi, x[sel], row[sel] / top)
    return float(xi[np.argmax(fi < 0.1)] - xi[np.argmax(fi < 0.9)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--tilts", type=float, nargs="+", default=[30.0, 45.0])
    args = ap.parse_args()
    n = args.size
    grid = VolumeGrid((n, n, n), 1.0)
    lamino_backproject = analytic.backproject_measured

    def reference(filtered, geometry, grid, weights, measured=True):
        return voxel_driven_backproject(np.asarray(filtered), geometry, grid)

    for tilt in args.tilts:
        g = Geometry.parallel(tilt, args.views, (n, n), 1.0)
        at = 0.5 if n % 2 == 0 else 0.0                  # a voxel centre: voxel n // 2 of every axis
        blob = gaussian_projections(g, 3.0, center=(at, at, at))
        ball = ellipsoid_chords(g, (n / 4,) * 3).astype(np.float32)
        c = n // 2
        for name, backproject in (("lamino (two interpolations)", lamino_backproject),
                                  ("single interpolation", reference)):
            analytic.backproject_measured = backproject
            try:
                b = np.asarray(fbp(blob, g, grid, extend=False))
                e = np.asarray(fbp(ball, g, grid, extend=False))
            finally:
                analytic.backproject_measured = lamino_backproject
            centre = float(b[c, c, c])
            print(f"tilt {tilt:g}°, {name:28s} blob centre {centre:.4f} (cos α {np.cos(np.radians(tilt)):.4f}), "
                  f"edge 10–90 % {edge_width(e, grid, n / 4):.2f} voxels")


if __name__ == "__main__":
    main()

"""Reconstruction timings: CL-FBP of 256³ from 360 views of 256², and one SIRT / CGLS / FISTA-TV iteration
against one forward + one adjoint (seconds, this machine).

Usage: python benchmarks/recon.py [--size 256] [--views 360] [--tilt 30] [--beam parallel|cone] [--iterations 3]
Targets (issue 5): FBP < 10 s after compilation on the 2-core development machine; one SIRT or CGLS iteration
< 1.2× one forward + one backprojection.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import lamino
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon import cgls, fbp, fista_tv, sirt

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def timed(fn, repeats: int = 2) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call (compilation excluded)."""
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--tilt", type=float, default=30.0)
    ap.add_argument("--beam", choices=["parallel", "cone"], default="parallel")
    ap.add_argument("--iterations", type=int, default=3)
    args = ap.parse_args()
    n = args.size
    if args.beam == "parallel":
        g = Geometry.parallel(args.tilt, args.views, (n, n), 1.0)
    else:
        g = Geometry.cone(args.tilt, args.views, sod=4.0 * n, sdd=8.0 * n, det_shape=(n, n), det_spacing=2.0)
    grid = VolumeGrid((n, n, n), 1.0)
    P = Projector(g, grid)
    rng = np.random.default_rng(0)
    vol = np.zeros(grid.shape, np.float32)
    vol[n // 2 - n // 8:n // 2 + n // 8, n // 4:3 * n // 4, n // 4:3 * n // 4] = 0.01
    vol += 0.002 * rng.random(grid.shape, np.float32)
    proj = P.forward(vol)
    print(f"{args.beam} beam, tilt {args.tilt:g}°, {n}³ grid, {args.views} views of {n}², "
          f"devices {jax.devices()}", flush=True)
    t_fwd = timed(lambda: P.forward(vol))
    t_adj = timed(lambda: P.adjoint(proj))
    t_bp = timed(lambda: P.backproject(proj))
    t_fbp = timed(lambda: fbp(proj, g, grid))
    print(f"forward {t_fwd:.2f} s, adjoint {t_adj:.2f} s, backproject {t_bp:.2f} s", flush=True)
    print(f"fbp {t_fbp:.2f} s (target < 10 s)", flush=True)
    k = args.iterations
    pair = t_fwd + t_adj
    for name, solver, kw in (("sirt", sirt, {}), ("cgls", cgls, {}), ("fista-tv", fista_tv, {"lam": 1e-3})):
        t_k = timed(lambda solver=solver, kw=kw: solver(proj, g, grid, iterations=k, projector=P, **kw).volume,
                    repeats=1)
        t_1 = timed(lambda solver=solver, kw=kw: solver(proj, g, grid, iterations=1, projector=P, **kw).volume,
                    repeats=1)
        per_iter = (t_k - t_1) / (k - 1)
        print(f"{name}: {per_iter:.2f} s per iteration = {per_iter / pair:.2f} × (forward + adjoint); "
              f"{per_iter / (t_fwd + t_bp):.2f} × (forward + backproject)", flush=True)


if __name__ == "__main__":
    main()

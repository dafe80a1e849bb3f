"""Phantom timings: voxelisation of each named phantom and exact path lengths (seconds, this machine).

Usage: python benchmarks/phantoms.py [--size 256] [--supersample 2] [--views 360] [--det 256] [--beads 200]
Targets (issue 3): voxelising any named phantom at 256³ with 2× supersampling < 10 s; exact path lengths for a
≤ 200-primitive phantom at 256² × 360 views < 30 s on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import lamino
from lamino import phantoms
from lamino.geometry import Geometry
from lamino.phantoms import Ellipsoid, Phantom, place
from lamino.phantoms.figures import phantom_grid

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def beads(n: int, seed: int = 0) -> Phantom:
    """n small copper beads in an aluminium-free epoxy-like cloud: n primitives, few per ray."""
    rng = np.random.default_rng(seed)
    parts = [place(Ellipsoid(tuple(rng.uniform(0.2, 0.5, 3))), "copper", "bead", at=tuple(rng.uniform(-4, 4, 3)))
             for _ in range(n)]
    return Phantom.build("beads", parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--det", type=int, default=256)
    ap.add_argument("--beads", type=int, default=200)
    args = ap.parse_args()
    print(f"{'phantom':>14} {'task':>28} {'seconds':>8}")
    for name in phantoms.names():
        ph = phantoms.get(name)
        grid = phantom_grid(ph, args.size, min_voxels=args.size)
        t0 = time.perf_counter()
        ph.voxelize(grid, args.supersample)
        print(f"{name:>14} {f'voxelize {grid.shape} ×{args.supersample}':>28} {time.perf_counter() - t0:>8.2f}",
              flush=True)
    for ph in (phantoms.get("siemens_star", n_spokes=72), beads(args.beads)):
        lo, hi = (np.asarray(b) for b in ph.bounds)
        pixel = float(np.max(hi - lo)) * 1.2 / args.det
        g = Geometry.parallel(30.0, args.views, (args.det, args.det), pixel)
        t0 = time.perf_counter()
        ph.path_lengths(g)
        task = f"paths {len(ph.parts)} parts {args.det}²×{args.views}"
        print(f"{ph.name:>14} {task:>28} {time.perf_counter() - t0:>8.2f}", flush=True)


if __name__ == "__main__":
    main()

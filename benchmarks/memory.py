"""Peak host memory of the projector against the bytes of volume + projections.

Usage: python benchmarks/memory.py [--size 256] [--views 360] [--tilt 30] [--beam parallel]
Starts the JAX runtime with a tiny projector, then runs forward and adjoint once each and prints the process's
peak resident memory (ru_maxrss) above the runtime's, next to the bytes of one float32 volume plus one float32
projection stack (issue 2 target: ≤ 3× that). The compilation cache should be warm (run twice): compiling
needs memory of its own.
"""

from __future__ import annotations

import argparse
import resource

import jax
import numpy as np

import lamino
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--tilt", type=float, default=30.0)
    ap.add_argument("--beam", choices=["parallel", "cone"], default="parallel")
    args = ap.parse_args()
    n = args.size
    grid = VolumeGrid((n, n, n), 1.0)
    if args.beam == "parallel":
        g = Geometry.parallel(args.tilt, args.views, (n, n), 1.0)
    else:
        g = Geometry.cone(args.tilt, args.views, sod=4.0 * n, sdd=8.0 * n, det_shape=(n, n), det_spacing=2.0)
    tiny = Projector(Geometry.parallel(args.tilt, 4, (8, 8), 1.0), VolumeGrid((8, 8, 8), 1.0))
    jax.block_until_ready(tiny.adjoint(tiny.forward(np.ones((8, 8, 8), np.float32))))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    vol = np.random.default_rng(0).random((n, n, n), dtype=np.float32)   # no float64 temporary
    P = Projector(g, grid)
    proj = jax.block_until_ready(P.forward(vol))
    jax.block_until_ready(P.adjoint(proj))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    data = (vol.nbytes + np.prod(P.proj_shape) * 4) / 2**30
    print(f"{args.beam} {n}³ × {args.views} views, tilt {args.tilt:g}°: volume + projections = {data:.2f} GiB; "
          f"peak RSS {peak:.2f} GiB, JAX runtime {base:.2f} GiB: peak above the runtime = "
          f"{(peak - base) / data:.2f}× the data")


if __name__ == "__main__":
    main()

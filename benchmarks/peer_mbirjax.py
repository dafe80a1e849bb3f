"""mbirjax side-by-side figures, run in mbirjax's own environment (it pins its own jax).

Usage:  python -m venv /tmp/mbvenv && /tmp/mbvenv/bin/pip install mbirjax
        /tmp/mbvenv/bin/python benchmarks/peer_mbirjax.py [--size 256] [--views 256] [--tilt 0]
Prints GUPS (voxels × views / s / 1e9, median of repeats after compilation) for mbirjax's forward and back
projection: ``ParallelBeamModel`` at tilt 0 (CT), ``MultiAxisParallelBeamModel`` (elevation = tilt) otherwise.
Compare with ``python benchmarks/projector.py`` on the same sizes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np


def main() -> None:
    import mbirjax

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=256)
    ap.add_argument("--tilt", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n, v = args.size, args.views
    azimuth = np.linspace(0, 2 * np.pi, v, endpoint=False)
    if args.tilt == 0:
        model = mbirjax.ParallelBeamModel((v, n, n), azimuth)
        name = "ParallelBeamModel"
    else:
        angles = np.stack([azimuth, np.full(v, np.radians(args.tilt))], axis=1)
        model = mbirjax.MultiAxisParallelBeamModel((v, n, n), angles)
        name = "MultiAxisParallelBeamModel"
    recon_shape = model.get_params("recon_shape")
    vol = jax.numpy.asarray(np.random.rand(*recon_shape).astype(np.float32))
    sino = jax.numpy.asarray(np.random.rand(v, n, n).astype(np.float32))
    for op, fn, arg in (("forward", model.forward_project, vol), ("backproject", model.back_project, sino)):
        jax.block_until_ready(fn(arg))
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times.append(time.perf_counter() - t0)
        sec = statistics.median(times)
        vox = int(np.prod(recon_shape))
        print(f"mbirjax {name} {recon_shape} × {v} views, tilt {args.tilt:g}°: {op} {sec:.3f} s, "
              f"{vox * v / sec / 1e9:.3f} GUPS")


if __name__ == "__main__":
    main()

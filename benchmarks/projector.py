"""Projector throughput in GUPS = voxels × views / seconds / 1e9 (after compilation, median of repeats).

Usage: python benchmarks/projector.py [--sizes 128 256] [--views 256] [--repeats 3] [--peers] [--json out.json]
Prints a table for forward, adjoint and backproject, parallel and cone beam, tilt 0 and 30°. With ``--peers``
and the ``bench`` extra installed, times ASTRA (2-D CPU 'linear' projector slice by slice, tilt 0) on the
same problems and prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import jax
import numpy as np

import lamino
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def _time(fn, arg, repeats: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(arg))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), compile_s


def geometry(beam: str, tilt: float, n: int, views: int) -> Geometry:
    if beam == "parallel":
        return Geometry.parallel(tilt, views, (n, n), 1.0)
    # sample fills ~70 % of the field of view, magnification 2
    return Geometry.cone(tilt, views, sod=4.0 * n, sdd=8.0 * n, det_shape=(n, n), det_spacing=2.0)


def astra_forward_backward(n: int, views: int, repeats: int):
    """ASTRA 2-D CPU 'linear' projector applied slice by slice (CT, tilt 0): (forward s, backproject s)."""
    import astra

    vol_geom = astra.create_vol_geom(n, n)
    proj_geom = astra.create_proj_geom("parallel", 1.0, n, np.linspace(0, 2 * np.pi, views, endpoint=False))
    pid = astra.create_projector("linear", proj_geom, vol_geom)
    vol = np.random.rand(n, n).astype(np.float32)
    sino = np.random.rand(views, n).astype(np.float32)

    def fwd():
        for _ in range(n):
            sid, _ = astra.create_sino(vol, pid)
            astra.data2d.delete(sid)

    def bwd():
        for _ in range(n):
            rid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete(rid)

    out = []
    for f in (fwd, bwd):
        f()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        out.append(statistics.median(ts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--views", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--beams", nargs="+", default=["parallel", "cone"])
    ap.add_argument("--tilts", type=float, nargs="+", default=[0.0, 30.0])
    ap.add_argument("--ops", nargs="+", default=["forward", "adjoint", "backproject"])
    ap.add_argument("--batch", type=int, default=None, help="views per batch (default: 1 on CPU, 16 on GPU)")
    ap.add_argument("--peers", action="store_true", help="also time ASTRA when installed")
    ap.add_argument("--json", help="write the results to this JSON file")
    args = ap.parse_args()

    dev = jax.devices()
    print(f"# lamino projector benchmark — {platform.processor() or platform.machine()}, "
          f"{dev[0].platform} × {len(dev)} device(s), jax {jax.__version__}, views per batch {args.batch or 'auto'}")
    print(f"{'size':>5} {'views':>5} {'beam':>8} {'tilt':>5} {'op':>12} {'seconds':>8} {'GUPS':>7} {'compile s':>9}")
    rows = []
    for n in args.sizes:
        grid = VolumeGrid((n, n, n), 1.0)
        vol = np.random.rand(n, n, n).astype(np.float32)
        for beam in args.beams:
            for tilt in args.tilts:
                g = geometry(beam, tilt, n, args.views)
                proj_op = Projector(g, grid, views_per_batch=args.batch)
                proj = np.random.rand(*proj_op.proj_shape).astype(np.float32)
                for op in args.ops:
                    fn = getattr(proj_op, op)
                    arg = vol if op == "forward" else proj
                    sec, comp = _time(fn, arg, args.repeats)
                    gups = n ** 3 * args.views / sec / 1e9
                    rows.append(dict(size=n, views=args.views, beam=beam, tilt=tilt, op=op, seconds=sec,
                                     gups=gups, compile_s=comp))
                    print(f"{n:>5} {args.views:>5} {beam:>8} {tilt:>5.0f} {op:>12} {sec:>8.3f} {gups:>7.3f} "
                          f"{comp:>9.1f}", flush=True)
        if args.peers:
            try:
                f_s, b_s = astra_forward_backward(n, args.views, args.repeats)
            except ImportError:
                print("# ASTRA not installed (pip install 'lamino[bench]'): peer skipped")
            else:
                for op, sec in (("forward", f_s), ("backproject", b_s)):
                    gups = n ** 3 * args.views / sec / 1e9
                    ours = [r["gups"] for r in rows if r["size"] == n and r["beam"] == "parallel"
                            and r["tilt"] == 0 and r["op"] == op]
                    ratio = f"  lamino/ASTRA = {ours[0] / gups:.2f}" if ours else ""
                    print(f"{n:>5} {args.views:>5} {'ASTRA-2D':>8} {0:>5} {op:>12} {sec:>8.3f} {gups:>7.3f}{ratio}")
                    rows.append(dict(size=n, views=args.views, beam="astra2d", tilt=0, op=op, seconds=sec,
                                     gups=gups))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()

"""The ``lamino`` command. Sub-commands arrive with their issues; ``demo`` is the end-to-end projector demo."""

from __future__ import annotations

import argparse
import os
import sys
import time

from lamino.io import atomic_write


def _demo(args: argparse.Namespace) -> int:
    """Project an analytic ball-and-plate sample at a CT and a CL tilt and write a PNG of the projections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from lamino.geometry import Geometry, VolumeGrid
    from lamino.projector import Projector

    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out {args.out!r} is not allowed: give a .png file name")
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out!r} exists: pass --overwrite to replace it")
    n = args.size
    if n < 16:
        raise ValueError(f"--size {n} is not allowed: give at least 16 pixels")
    voxel = 0.1                                                   # mm
    grid = VolumeGrid((n // 4, n, n), voxel)                      # a flat sample
    z, y, x = np.meshgrid(*[grid.axis(i) for i in range(3)], indexing="ij")
    half = 0.42 * n * voxel
    mu = np.where((np.abs(x) < half) & (np.abs(y) < half), 0.05, 0.0)   # polymer plate, 1/mm
    for cx, cy in [(-0.2, -0.2), (0.2, -0.2), (0.0, 0.2)]:             # metal spheres, 1/mm
        r2 = (x - cx * n * voxel) ** 2 + (y - cy * n * voxel) ** 2 + z**2
        mu = np.where(r2 < (0.04 * n * voxel) ** 2, 0.5, mu)
    mu = mu.astype(np.float32)
    fig, axes = plt.subplots(1, len(args.tilts), figsize=(4 * len(args.tilts), 4), squeeze=False)
    for ax, tilt in zip(axes[0], args.tilts, strict=True):
        g = Geometry.parallel(tilt_deg=tilt, n_views=args.views, det_shape=(n, n), det_spacing=0.1)
        t0 = time.perf_counter()
        proj = np.asarray(Projector(g, grid).forward(mu))
        dt = time.perf_counter() - t0
        ax.imshow(proj[0], cmap="gray", origin="lower")
        ax.set_title(f"tilt {tilt:g}° (θ = {90 - tilt:g}°), view 0")
        ax.set_xlabel("detector column (u)")
        ax.set_ylabel("detector row (v)")
        print(f"tilt {tilt:5.1f}°: {args.views} views of {n}×{n} in {dt:.2f} s (incl. compilation), "
              f"max ∫μ dl = {proj.max():.3f}")
    fig.suptitle("lamino: line integrals of a plate with metal spheres")
    fig.tight_layout()
    with atomic_write(args.out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    print(f"wrote {args.out}")
    return 0


def _parse_params(pairs: list[str]) -> dict:
    """--param k=v pairs → dict; values are Python literals where they parse, else strings."""
    import ast

    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param {pair!r} is not allowed: write key=value, e.g. --param n_spokes=72")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def _phantom_list(args: argparse.Namespace) -> int:
    from lamino import phantoms

    for name in phantoms.names():
        defaults = ", ".join(f"{k}={v!r}" for k, v in phantoms.parameters(name).items())
        print(f"{name}: {defaults}")
    return 0


def _phantom_show(args: argparse.Namespace) -> int:
    from lamino import phantoms
    from lamino.phantoms.figures import show_phantom

    if not args.out.lower().endswith(".png"):
        raise ValueError(f"--out {args.out!r} is not allowed: give a .png file name")
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out!r} exists: pass --overwrite to replace it")
    if not 16 <= args.size <= 1024:
        raise ValueError(f"--size {args.size} is not allowed: give 16 to 1024 voxels")
    ph = phantoms.get(args.name, **_parse_params(args.param))
    show_phantom(ph, args.out, size=args.size)
    lo, hi = ph.bounds
    print(f"{args.name}: {', '.join(sorted(ph.materials))}; bounds {lo} to {hi} mm; wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lamino import __version__

    parser = argparse.ArgumentParser(prog="lamino", description="Digital twins of X-ray computed laminography.")
    parser.add_argument("--version", action="version", version=f"lamino {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="project a flat sample at CT and CL tilts and write a PNG")
    demo.add_argument("--out", default="lamino-demo.png", help="PNG file to write (default: lamino-demo.png)")
    demo.add_argument("--size", type=int, default=128, help="detector and grid size in pixels (default 128)")
    demo.add_argument("--views", type=int, default=90, help="number of views over 360° (default 90)")
    demo.add_argument("--tilts", type=float, nargs="+", default=[0.0, 30.0], help="tilts in degrees")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    demo.set_defaults(func=_demo)
    phantom = sub.add_parser("phantom", help="list phantoms or draw one")
    psub = phantom.add_subparsers(dest="phantom_command", metavar="ACTION", required=True)
    plist = psub.add_parser("list", help="names and default parameters of the procedural phantoms")
    plist.set_defaults(func=_phantom_list)
    pshow = psub.add_parser("show", help="three orthogonal slices with a material legend, as a PNG")
    pshow.add_argument("name", help="phantom name (see 'lamino phantom list')")
    pshow.add_argument("--param", action="append", metavar="KEY=VALUE", help="phantom parameter (repeatable)")
    pshow.add_argument("--out", default="phantom.png", help="PNG file to write (default: phantom.png)")
    pshow.add_argument("--size", type=int, default=192, help="voxels along the longest side (default 192)")
    pshow.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    pshow.set_defaults(func=_phantom_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"lamino {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

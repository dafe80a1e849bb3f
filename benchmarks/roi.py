"""Region-of-interest CL: accuracy against an untruncated detector, and the cost of the row extension.

Usage: python benchmarks/roi.py [--size 128] [--repeats 3] [--figure docs/roi-before-after.png]

Accuracy: the wide-plate cases of tests/test_recon_roi.py (a 16 mm plate, μ 0.2/mm, with beads and a crack,
seen through a 5.2 mm detector; parallel and cone CL), inside the fully measured region: relative RMS difference
from the FBP of an untruncated detector (÷ its standard deviation there), bias and cupping (÷ μ), for zero-padded
FBP (``extend=False``), the default (laterally unbounded sample) and ``sample_size`` given.
Cost: FBP of size³ voxels from 360 views of size² pixels, min/median of ``--repeats`` warm runs, with and
without the extension (and the measured-fraction normalisation that comes with it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax.numpy as jnp
import numpy as np

import lamino
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon import fbp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_recon_roi import MU, PLATE, ROI, errors, geometries, plate_volume  # noqa: E402  (the tested case)

from lamino.recon.coverage import TAPER_PIXELS  # noqa: E402

lamino.configure()


def accuracy(figure: str | None) -> None:
    grid, vol = plate_volume()
    panels = []
    for beam, tilt in (("parallel", 30.0), ("cone", 30.0), ("parallel", 45.0)):
        wide, narrow = geometries(beam, tilt)
        full = np.asarray(Projector(wide, grid).forward(jnp.asarray(vol)))
        start = (wide.det_shape[1] - narrow.det_shape[1]) // 2
        truncated = full[:, :, start:start + narrow.det_shape[1]]
        reference = np.asarray(fbp(full, wide, ROI, extend=False))
        region = narrow.field_of_view(ROI, margin=0.5 + TAPER_PIXELS) & \
            (np.abs(ROI.axis(0))[:, None, None] < PLATE[0] / 2 - ROI.voxel_size[0])
        results = {}
        for name, kw in (("zero-padded", dict(extend=False)), ("unbounded (default)", {}),
                         ("sample_size given", dict(sample_size=PLATE))):
            results[name] = np.asarray(fbp(truncated, narrow, ROI, **kw))
            rel, bias, cup = errors(results[name], reference, region)
            print(f"{beam:8s} {tilt:4.0f}°  {name:20s} relative RMS {rel:6.1%}  bias {bias:+6.1%} μ  "
                  f"cupping {cup:+6.1%} μ")
        panels.append((f"{beam} CL, {tilt:g}°", reference, results))
    if figure:
        _figure(panels[0], figure)


def _figure(panel, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lamino._plotting import save_figure

    title, reference, results = panel
    k = ROI.shape[0] // 2
    images = [("untruncated detector", reference)] + [(n, results[n]) for n in ("zero-padded", "sample_size given")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    x = ROI.axis(2)
    ext = (x[0], x[-1], ROI.axis(1)[0], ROI.axis(1)[-1])
    for ax, (name, img) in zip(axes[:3], images, strict=True):
        ax.imshow(img[k], origin="lower", extent=ext, cmap="gray", vmin=-0.15, vmax=0.35)
        ax.set_title(f"{name}", fontsize=9)
        ax.set_xlabel("x (mm)")
    for (name, img), style in zip(images, ("k-", "C1-", "C2--"), strict=True):
        axes[3].plot(x, img[k, ROI.shape[1] // 2], style, lw=2.5 if style == "k-" else 1.5, label=name)
    axes[3].set_xlabel("x (mm)")
    axes[3].set_ylabel("μ (1/mm)")
    axes[3].legend(fontsize=7)
    axes[3].set_title("profile through the centre", fontsize=9)
    fig.subplots_adjust(wspace=0.35, bottom=0.16)
    fig.suptitle(f"{title}: a 16 mm plate (μ {MU}/mm) through a 5.2 mm detector, mid-plane slice", fontsize=10)
    save_figure(fig, out)
    print(f"wrote {out}")


def cost(size: int, repeats: int) -> None:
    grid = VolumeGrid((size,) * 3, 1.0)
    proj = np.random.default_rng(0).random((360, size, size), dtype=np.float32)
    for beam in ("parallel", "cone"):
        g = (Geometry.parallel(30.0, 360, (size, size), 1.0) if beam == "parallel" else
             Geometry.cone(30.0, 360, sod=5.0 * size, sdd=10.0 * size, det_shape=(size, size), det_spacing=2.0))
        times = {}
        for name, kw in (("zero-padded", dict(extend=False)), ("region of interest", {})):
            fbp(proj, g, grid, **kw).block_until_ready()
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                fbp(proj, g, grid, **kw).block_until_ready()
                runs.append(time.perf_counter() - t)
            times[name] = runs
            print(f"{beam:8s} FBP {size}³, 360 views, {name:18s} min {min(runs):.2f} s, "
                  f"median {statistics.median(runs):.2f} s")
        ratio = statistics.median(times["region of interest"]) / statistics.median(times["zero-padded"])
        print(f"{beam:8s} cost of the region-of-interest handling: {ratio:.2f}× (medians)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--figure", help="write the before/after picture (PNG)")
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    accuracy(args.figure)
    if not args.skip_cost:
        cost(args.size, args.repeats)


if __name__ == "__main__":
    main()

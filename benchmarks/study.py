"""Study throughput: an 8-tilt × 5-view-count sweep of a solid-state-battery pellet on a 128³ grid, FBP and every
metric, run from a cold start (seconds, this machine).

Usage: python benchmarks/study.py [--beam parallel|cone] [--workers 0] [--size 128] [--keep-cache] [--out DIR]
``parallel``: a synchrotron beam line (esrf_id19, 30 keV), CL-FBP; ``cone``: the Nikon XT 225 at 100 kV, FDK.
Target (issue 6): the whole sweep < 5 minutes on the 2-core development machine, JIT compilations reused
across points of equal shape. Prints the wall time, the time per stage summed over points, and the slowest
points. By default JAX's persistent compilation cache is switched off so every compilation is counted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

TEMPLATE = """
[study]
name = "bench-ssb-{size}"
description = "benchmark: 8 tilts x 5 view counts, pellet on a {size}^3 grid, {beam} beam, FBP, all metrics"

[phantom]
name = "ssb_pellet"
seed = 0
params = {{ diameter_mm = 4.0, thickness_mm = 0.6, electrode_diameter_mm = 3.0, pouch_size_mm = [8.0, 8.0], \
aperture_um = [20.0, 60.0], crack_length_mm = [1.0, 3.0], n_pores = 10, pore_radius_um = [20.0, 60.0] }}

{scanner}

[simulate]
n_bins = 16

[recon]
method = "fbp"
grid = {{ shape = [{size}, {size}, {size}], voxel_size = {voxel} }}

[sweep]
tilt_deg = [10, 20, 30, 40, 50, 60, 70, 80]
n_views = [60, 120, 180, 240, 360]
seeds = [0]

[objective]
weights = {{ crack_dice = 1.0 }}

[planner]
refine = "none"
"""


SCANNERS = {
    "parallel": """[scanner]
preset = "esrf_id19"
energy_kev = 30.0
exposure_s = 0.0005
det_shape = [{rows}, {cols}]
det_spacing = {pixel}
""",
    "cone": """[scanner]
preset = "nikon_xt225"
kvp = 100
exposure_s = 1.0
det_shape = [{rows}, {cols}]

[geometry]
sod = 120.0
""",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/lamino-bench-study")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--beam", choices=list(SCANNERS), default="parallel")
    ap.add_argument("--keep-cache", action="store_true", help="use JAX's persistent compilation cache")
    args = ap.parse_args()
    if not args.keep_cache:
        os.environ["LAMINO_JAX_CACHE"] = "off"
    import lamino

    lamino.configure()      # one JAX CPU device per core, as the lamino command
    from lamino.studies.run import run_study
    from lamino.studies.spec import parse_spec
    from lamino.studies.store import ResultStore

    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    voxel = 4.5 / args.size
    rows, cols = args.size, int(args.size * 1.25)
    scanner = SCANNERS[args.beam].format(rows=rows, cols=cols, pixel=voxel)
    text = TEMPLATE.format(size=args.size, voxel=voxel, beam=args.beam, scanner=scanner)
    path = os.path.join(args.out, "bench.toml")
    with open(path, "w") as f:
        f.write(text)
    import tomllib

    spec = parse_spec(tomllib.loads(text), source=path, text=text)
    t0 = time.perf_counter()
    result = run_study(spec, os.path.join(args.out, "results"), workers=args.workers, progress=sys.stderr.isatty())
    wall = time.perf_counter() - t0
    records = ResultStore.open(os.path.join(args.out, "results")).records()
    stages = {k: sum(r["seconds"][k] for r in records) for k in ("simulate", "recon", "metrics", "total")}
    print(f"{len(records)} points ({args.beam} beam, {args.size}³ grid, detector {rows}×{cols}, "
          f"{args.workers or 'no'} workers): {wall:.1f} s wall ({wall / 60:.2f} min; target < 5 min)")
    print("  summed over points: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    slow = sorted(records, key=lambda r: -r["seconds"]["total"])[:3]
    for r in slow:
        p = r["point"]
        print(f"  slowest: tilt {p['tilt_deg']}°, {p['n_views']} views: {r['seconds']}")
    rec = result.recommended
    if rec is not None:
        print(f"  recommended: tilt {rec.point['tilt_deg']}°, {rec.point['n_views']} views, "
              f"crack Dice {rec.objective_mean:.3f}")


if __name__ == "__main__":
    main()

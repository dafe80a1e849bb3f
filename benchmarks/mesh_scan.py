"""lamino vs gVirtualXray on one job: a cone-beam scan of a ~100k-triangle aluminium mesh, mono and 32-bin.

Usage: python benchmarks/mesh_scan.py [--views 360] [--det 256] [--bins 32] [--faces 100000] [--no-gvxr]

The job is the one of ``benchmarks/peer_gvxr.py`` (same mesh builder, SOD 300 mm, SDD 600 mm, 256² detector,
views about the vertical axis, 80 kV W spectrum with 1 mm Al, an ideal noise-free energy-integrating detector).
lamino traces the mesh exactly (:func:`lamino.phantoms.mesh_projection.mesh_path_lengths`, once for both beams)
and runs its acquisition chain (monochromatic at the spectrum's mean energy, then ``--bins`` bins). When gvxr
can run here, ``peer_gvxr.py`` is run in the same invocation and both timings are printed side by side.
Target (issue 4): lamino matches or beats gvxr (measured here at about 22 s for 32 bins, 6 s mono).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_gvxr import build_mesh  # noqa: E402

import lamino  # noqa: E402
from lamino.geometry import Geometry  # noqa: E402
from lamino.phantoms import from_mesh  # noqa: E402
from lamino.phantoms.mesh_projection import mesh_path_lengths  # noqa: E402
from lamino.simulate import Detector, Scanner, simulate  # noqa: E402

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def run_gvxr(args: argparse.Namespace) -> dict | None:
    """Run peer_gvxr.py on the same job in a subprocess; its JSON, or None when gvxr is not available."""
    out = os.path.join(tempfile.mkdtemp(), "gvxr.json")
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_gvxr.py"),
           "--views", str(args.views), "--det", str(args.det), "--bins", str(args.bins), "--faces",
           str(args.faces), "--json", out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or "gvxr not available" in proc.stdout or not os.path.exists(out):
        print(f"gvxr: skipped ({(proc.stdout + proc.stderr).strip().splitlines()[-1:]})")
        return None
    with open(out) as fh:
        return json.load(fh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--det", type=int, default=256)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--size", type=float, default=20.0, help="object size, mm (as peer_gvxr.py)")
    ap.add_argument("--no-gvxr", action="store_true", help="time lamino only")
    args = ap.parse_args()
    mesh, _ = build_mesh(args.size, args.faces)
    sod, sdd, fill = 300.0, 600.0, 0.7
    pixel = args.size * sdd / sod / (fill * args.det)                  # as peer_gvxr.py: object spans 70 %
    g = Geometry.cone(tilt_deg=0.0, n_views=args.views, det_shape=(args.det, args.det), det_spacing=pixel,
                      sod=sod, sdd=sdd)
    tube = Scanner.preset("nikon_xt225", kvp=80.0, filters=(("Al", 1.0),), focal_spot_um=0.0, sod=sod, sdd=sdd
                          ).replace(detector=Detector.ideal((args.det, args.det), pixel))
    e_mean = tube.spectrum(args.bins).mean_energy_kev
    ph = from_mesh(mesh, material="aluminium", name="gvxr job")
    print(f"job: {len(mesh.faces)} triangles, {args.views} views, {args.det}² detector of {pixel:.4f} mm, "
          f"{args.bins} bins (mono at {e_mean:.2f} keV)", flush=True)

    t0 = time.perf_counter()
    mesh_path_lengths(mesh.vertices, mesh.faces, g)
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    lengths = {"aluminium": mesh_path_lengths(mesh.vertices, mesh.faces, g)}
    t_paths = time.perf_counter() - t0
    print(f"lamino tracing: {t_paths:.2f} s ({t_first:.2f} s on the first call, with compilation)", flush=True)
    times = {}
    for label, scanner, bins in (("mono", tube.replace(energy_kev=e_mean), 1), ("poly", tube, args.bins)):
        simulate(ph, g.replace(angles_deg=g.angles_deg[:2]), scanner, n_bins=bins, noise=False, truth=False,
                 lengths={"aluminium": lengths["aluminium"][:2]})            # compile outside the timing
        t0 = time.perf_counter()
        scan = simulate(ph, g, scanner, n_bins=bins, noise=False, truth=False, lengths=lengths)
        times[label] = t_paths + time.perf_counter() - t0
        centre = scan.line_integrals()[0, args.det // 2 - 1:args.det // 2 + 1, args.det // 2 - 1:args.det // 2 + 1]
        print(f"lamino {label}: {times[label]:.2f} s ({t_paths:.2f} s tracing + chain), central −ln T = "
              f"{float(np.mean(centre)):.4f}", flush=True)
    if args.no_gvxr:
        return
    ref = run_gvxr(args)
    if ref is None:
        return
    tg = ref["timings_s"]
    for label in ("mono", "poly"):
        print(f"{label}: lamino {times[label]:.2f} s, gvxr {tg[label]['best']:.2f} s "
              f"(×{tg[label]['best'] / times[label]:.2f} in lamino's favour); gvxr central −ln T = "
              f"{ref['sanity'][label]['line_integral_gvxr']:.4f}")


if __name__ == "__main__":
    main()

"""Simulation timings: a 5-material phantom on a 256³ grid, 360 views, 256² detector, full detector chain.

Usage: python benchmarks/simulate.py [--size 256] [--views 360] [--det 256] [--bins 32] [--beam parallel|cone]
Targets (issue 4): the whole scan (projection of every material + 32-bin polychromatic chain with noise, blur,
gain, read noise and quantisation, flats and darks) < 60 s on the 2-core development machine, and the
polychromatic contraction adds < 20 % to the monochromatic time. The first chain call of a shape compiles
(a few seconds, then kept in the persistent cache); it is reported separately.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import lamino
from lamino.geometry import Geometry
from lamino.phantoms import Cylinder, Ellipsoid, Phantom, place
from lamino.simulate import Scanner, Spectrum, simulate

lamino.configure()      # one JAX CPU device per core and the compilation cache, as the lamino command


def five_materials(seed: int = 0) -> Phantom:
    """An ABS disc (Ø 20 × 6 mm) with aluminium, copper, steel and tungsten inclusions: 5 materials."""
    rng = np.random.default_rng(seed)
    parts = [place(Cylinder(10.0, 6.0), "abs", "matrix")]
    for material in ("aluminium", "copper", "steel_316", "tungsten"):
        for _ in range(6):
            r = rng.uniform(0.3, 1.2, 3) * (0.3 if material == "tungsten" else 1.0)
            parts.append(place(Ellipsoid(tuple(r)), material, material,
                               at=(*rng.uniform(-6, 6, 2), rng.uniform(-1.5, 1.5))))
    return Phantom.build("five_materials", parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="voxels across the phantom's widest side")
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--det", type=int, default=256)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--beam", choices=["parallel", "cone"], default="parallel")
    args = ap.parse_args()
    ph = five_materials()
    pixel = 24.0 / args.det
    if args.beam == "parallel":      # a beam line with a pink beam (a filtered 100 kV spectrum from a file)
        g = Geometry.parallel(30.0, args.views, (args.det, args.det), pixel)
        base = Scanner.preset("esrf_id19")                # same flux density, larger pixels: shorter exposure
        exposure = base.exposure_s * (base.detector.spacing[1] / pixel) ** 2
        base = base.replace(det_shape=(args.det, args.det), det_spacing=pixel, exposure_s=exposure)
        spectrum_file = os.path.join(tempfile.mkdtemp(), "pink.txt")
        Spectrum.tube(100.0, filters=(("Al", 2.0),), n_bins=args.bins).to_file(spectrum_file)
        poly = base.replace(energy_kev=None, spectrum_file=spectrum_file)
    else:
        g = Geometry.cone(30.0, args.views, (args.det, args.det), pixel * 2, sod=300.0, sdd=600.0)
        poly = Scanner.preset("nikon_xt225", det_shape=(args.det, args.det), det_spacing=pixel * 2, kvp=100.0)
        base = poly
    mono = base.replace(energy_kev=60.0)
    voxel = 20.0 / args.size
    t0 = time.perf_counter()
    lengths = ph.voxel_path_lengths(g, voxel_size=voxel)
    t_paths = time.perf_counter() - t0
    print(f"{'task':>44} {'seconds':>8}")
    print(f"{f'voxelise {ph.name} (voxel {voxel:.4f} mm) + project 5×':>44} {t_paths:>8.2f}", flush=True)
    for label, scanner, bins in (("monochromatic 60 keV", mono, 1), (f"polychromatic, {args.bins} bins", poly,
                                                                      args.bins)):
        for run in ("first call", "second call"):
            t0 = time.perf_counter()
            simulate(ph, g, scanner, seed=1, n_bins=bins, truth=False, lengths=lengths)
            dt = time.perf_counter() - t0
            print(f"{f'chain {label} ({run})':>44} {dt:>8.2f}", flush=True)
        if bins == 1:
            t_mono = dt
        else:
            t_poly = dt
    total_mono, total_poly = t_paths + t_mono, t_paths + t_poly
    print(f"whole scan: monochromatic {total_mono:.1f} s, polychromatic {total_poly:.1f} s "
          f"(contraction adds {100 * (total_poly / total_mono - 1):.1f} %)")


if __name__ == "__main__":
    main()

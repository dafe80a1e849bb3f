"""The ``lamino`` command: demo, phantom, scanners, simulate, recon, study, plan, dataset and bench."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

from lamino.config import configure
from lamino.io import atomic_write
from lamino.io.files import check_output_file, check_output_folder, clean_temporaries
from lamino.resources import FLOAT32, check_memory


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
    check_output_file(args.out)
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out!r} exists: pass --overwrite to replace it")
    n = args.size
    if n < 16:
        raise ValueError(f"--size {n} is not allowed: give at least 16 pixels")
    for tilt in args.tilts:                                       # before any work
        if not 0 <= tilt < 90:
            raise ValueError(f"--tilts {tilt:g} is not allowed: give tilts in [0, 90) degrees")
    check_memory(8 * 6 * (n // 4) * n * n + FLOAT32 * 2 * max(args.views, 1) * n * n,   # float64 coordinates
                 f"the demo at --size {n}", "give a smaller --size or fewer --views")
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


def _parse_params(pairs: list[str], flag: str = "--param") -> dict:
    """--param (or --set) k=v pairs → dict; values are Python literals where they parse, else strings."""
    import ast

    params = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            example = "n_spokes=72" if flag == "--param" else "read_noise_adu=2"
            raise ValueError(f"{flag} {pair!r} is not allowed: write key=value, e.g. {flag} {example}")
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
    check_output_file(args.out)
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out!r} exists: pass --overwrite to replace it")
    if not 16 <= args.size <= 1024:
        raise ValueError(f"--size {args.size} is not allowed: give 16 to 1024 voxels")
    ph = phantoms.get(args.name, **_parse_params(args.param))
    geometry = None
    if args.scanner:
        from lamino.simulate import Scanner

        if not (math.isfinite(args.tilt) and 0 <= args.tilt < 90):
            raise ValueError(f"--tilt {args.tilt} is not allowed: give a tilt in [0, 90) degrees")
        geometry = Scanner.preset(args.scanner).geometry(args.tilt, 36)
    show_phantom(ph, args.out, size=args.size, geometry=geometry)
    lo, hi = ph.bounds
    seen = f"; greyed out: not measured in every view by {args.scanner} at {args.tilt:g}°" if geometry else ""
    print(f"{args.name}: {', '.join(sorted(ph.materials))}; bounds {lo} to {hi} mm{seen}; wrote {args.out}")
    return 0


def _scanners(args: argparse.Namespace) -> int:
    from lamino.simulate import Scanner

    for name in Scanner.presets():
        sc = Scanner.preset(name)
        beam = f"{sc.energy_kev:g} keV monochromatic" if sc.energy_kev else f"{sc.kvp:g} kV {sc.target} tube"
        det = sc.detector
        print(f"{name}: {sc.beam} beam, {beam}, detector {det.shape[0]}×{det.shape[1]} × "
              f"{det.spacing[1] * 1e3:g} µm ({det.mode}), exposure {sc.exposure_s:g} s")
    return 0


def _pair(text: str, name: str, kind=float) -> tuple:
    """'a,b' or 'a' → a pair of numbers (for --det and --spacing)."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise ValueError(f"{name} {text!r} is not allowed: give one number or two separated by a comma")
    return tuple(values * 2 if len(values) == 1 else values)


def _det_shape(text: str) -> tuple:
    shape = _pair(text, "--det", int)
    if not all(1 <= n <= 100_000 for n in shape):
        raise ValueError(f"--det {text!r} is not allowed: give rows,cols of 1 to 100000 pixels each")
    return shape


def _det_spacing(text: str) -> tuple:
    spacing = _pair(text, "--spacing")
    if not all(0 < v < math.inf for v in spacing):
        raise ValueError(f"--spacing {text!r} is not allowed: give pixel sizes > 0 mm")
    return spacing


def _simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from lamino import phantoms
    from lamino.simulate import Scanner, simulate

    if not args.out.lower().endswith((".h5", ".hdf5", ".nx", ".nxs")):
        raise ValueError(f"--out {args.out!r} is not allowed: give an HDF5 file name (.h5, .nxs)")
    check_output_file(args.out)
    if os.path.exists(args.out) and not args.overwrite:
        raise ValueError(f"--out {args.out!r} exists: pass --overwrite to replace it")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed} is not allowed: give an integer ≥ 0")
    overrides = _parse_params(args.set, "--set")
    for key, value in (("kvp", args.kvp), ("energy_kev", args.energy), ("exposure_s", args.exposure)):
        if value is not None:
            overrides[key] = value
    if args.det:
        overrides["det_shape"] = _det_shape(args.det)
    if args.spacing:
        overrides["det_spacing"] = _det_spacing(args.spacing)
    scanner = Scanner.preset(args.scanner, **overrides)
    ph = phantoms.get(args.phantom, **_parse_params(args.param))
    geometry_kw = {k: v for k, v in (("sod", args.sod), ("sdd", args.sdd)) if v is not None}
    if geometry_kw and scanner.beam != "cone":
        raise ValueError(f"--sod/--sdd are not allowed for {args.scanner!r}: it is a parallel beam")
    if args.views < 1:
        raise ValueError(f"--views {args.views} is not allowed: give at least 1 view")
    g = scanner.geometry(args.tilt, args.views, **geometry_kw)
    clean_temporaries(os.path.dirname(os.path.abspath(args.out)), prefix=os.path.basename(args.out))
    t0 = time.perf_counter()
    scan = simulate(ph, g, scanner, seed=args.seed, noise=not args.no_noise, blur=not args.no_blur,
                    method=args.method, progress=True, truth=not args.no_truth)
    scan.save(args.out, overwrite=args.overwrite)
    dt = time.perf_counter() - t0
    p = scan.line_integrals()
    print(f"{args.phantom} on {args.scanner}: {g.n_views} views of {g.det_shape[0]}×{g.det_shape[1]} at tilt "
          f"{args.tilt:g}°; counts {scan.counts.min():.6g}–{scan.counts.max():.6g}, mean transmission "
          f"{float(np.mean(np.exp(-p))):.3f}; {dt:.1f} s; wrote {args.out}")
    return 0


def _parse_grid(text: str, scan):
    """--grid auto | n,voxel | nz,ny,nx,voxel → a VolumeGrid (auto: the truth's grid, else VolumeGrid.fit)."""
    from lamino.geometry import VolumeGrid

    if text == "auto":
        return scan.truth.grid if scan.truth is not None else VolumeGrid.fit(scan.geometry)
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 4) or not all(0 < v < math.inf for v in values) or \
            any(v != int(v) for v in values[:-1]):
        raise ValueError(f"--grid {text!r} is not allowed: give auto, n,voxel_mm or nz,ny,nx,voxel_mm "
                         "(e.g. 64,0.05 or 16,64,64,0.05)")
    shape = (int(values[0]),) * 3 if len(values) == 2 else tuple(int(v) for v in values[:3])
    return VolumeGrid(shape, values[-1])


def _parse_sample_size(text: str) -> tuple[float, float, float]:
    """``--sample-size z,y,x`` (mm, all > 0)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"--sample-size {text!r} is not allowed: give the sample's z,y,x sizes in mm, all > 0 "
                         "(thickness first, e.g. 0.6,20,20)")
    return values


def _scan_sample_size(scan) -> tuple[float, float, float] | None:
    """The (z, y, x) mm extent of the phantom a simulated scan records, or None (a real or unknown sample)."""
    size = scan.phantom.get("sample_size_mm")
    try:
        size = tuple(float(v) for v in size)
    except (TypeError, ValueError):
        return None
    return size if len(size) == 3 and all(math.isfinite(v) and v > 0 for v in size) else None


def _recon(args: argparse.Namespace) -> int:
    import numpy as np

    from lamino import recon
    from lamino.io import Scan, Volume
    from lamino.recon import coverage

    if not args.out.lower().endswith((".h5", ".hdf5", ".nx", ".nxs")):
        raise ValueError(f"--out {args.out!r} is not allowed: give an HDF5 file name (.h5, .nxs)")
    for path, flag in ((args.out, "--out"), (args.png, "--png")):
        if path:
            check_output_file(path, flag)
        if path and os.path.exists(path) and not args.overwrite:
            raise ValueError(f"{flag} {path!r} exists: pass --overwrite to replace it")
    if args.png and not args.png.lower().endswith(".png"):
        raise ValueError(f"--png {args.png!r} is not allowed: give a .png file name")
    if args.iterations is not None and args.iterations < 1:
        raise ValueError(f"--iterations {args.iterations} is not allowed: give at least 1")
    grid = None if args.grid == "auto" else _parse_grid(args.grid, None)
    sample_size = None if args.sample_size is None else _parse_sample_size(args.sample_size)
    scan = Scan.load(args.scan)
    grid = grid or _parse_grid(args.grid, scan)
    partial, never = coverage.unmeasured_share(scan.geometry, grid)
    if never >= 1.0:
        raise ValueError(f"--grid {args.grid!r} is not allowed: it lies outside what the scan measures (no voxel is "
                         "on the detector in any view); centre it on the sample")
    t0 = time.perf_counter()
    proj = scan.line_integrals()
    if args.rings:
        proj = recon.suppress_rings(proj)
    kw = {"iterations": args.iterations} if args.iterations else {}
    size = sample_size if sample_size is not None else _scan_sample_size(scan)
    result = recon.reconstruct(proj, scan.geometry, grid, args.method, lam=args.lam, filter=args.filter,
                               progress=args.method != "fbp", extend=not args.no_extend, sample_size=size, **kw)
    volume, history, params = np.asarray(result.volume), result.history, result.params
    if partial > 0:                                      # after the memory check of reconstruct()
        warnings.warn(f"--grid {args.grid!r} extends past what the scan measures: {partial:.0%} of its voxels leave "
                      "the detector in some views; they are faded out (the measured fraction is stored with the "
                      "volume)", stacklevel=2)
    measured = scan.geometry.measured_fraction(grid, step=coverage.coarse_step(grid))
    dt = time.perf_counter() - t0
    Volume(volume, grid, scan.geometry, method=args.method, params=params, history=history,
           provenance={"scan": os.path.abspath(args.scan), "seconds": round(dt, 3),
                       "sample": scan.phantom.get("name", "sample"),
                       "sample_size_mm": None if size is None else list(map(float, size))},
           measured_fraction=measured).save(args.out, overwrite=args.overwrite)
    line = (f"{args.method} of {args.scan}: grid {grid.shape} × {grid.voxel_size[2]:g} mm in {dt:.1f} s; "
            f"μ range {volume.min():.4g}–{volume.max():.4g} 1/mm; wrote {args.out}")
    if args.png:
        from lamino.recon.figures import compare_slices

        truth = scan.truth
        compare_slices(volume, grid, args.png, truth=None if truth is None else truth.mu,
                       truth_grid=None if truth is None else truth.grid,
                       title=f"{args.method} of {os.path.basename(args.scan)}", geometry=scan.geometry)
        line += f" and {args.png}"
    print(line)
    return 0


def _print_plan(result, store_path: str) -> None:
    from lamino.studies.planner import uncertain

    rec = result.recommended
    print(f"objective: {result.objective}")
    if rec is None:
        print(f"no protocol recommended: {result.reason}")
        return
    p = rec.point
    kvp = f", {p['kvp']:g} kV" if p.get("kvp") is not None else ""
    print(f"recommended protocol: tilt {p['tilt_deg']:g}°, {p['n_views']} views × {p['exposure_s']:.3g} s{kvp}, "
          f"{p['method']}; scan time {rec.scan_time_s:.0f} s; objective {uncertain(rec)}")
    print(f"why: {result.reason}")
    if result.gradient:
        print("gradient: " + ", ".join(f"{k} = {v:.4g}" for k, v in result.gradient.items()))
    print(f"results: {store_path}")


def _check_backend(args: argparse.Namespace) -> None:
    if args.workers < 0:
        raise ValueError(f"--workers {args.workers} is not allowed: give 0 (in process) or a number of processes")


def _study_run(args: argparse.Namespace) -> int:
    from lamino.studies.run import run_study
    from lamino.studies.spec import load_spec

    _check_backend(args)
    spec = load_spec(args.spec)
    t0 = time.perf_counter()
    result = run_study(spec, args.out, workers=args.workers, dask=args.dask, refine=not args.no_refine,
                       overwrite=args.overwrite)
    print(f"{spec.name}: {len(result.configurations)} configurations in {time.perf_counter() - t0:.0f} s")
    _print_plan(result, args.out)
    return 0


def _study_report(args: argparse.Namespace) -> int:
    from lamino.studies.planner import analyse
    from lamino.studies.report import write_report
    from lamino.studies.store import ResultStore

    store = ResultStore.open(args.results)
    out = args.out or os.path.join(args.results, "report")
    check_output_folder(out, "--out")
    if not store.ids():
        raise ValueError(f"{args.results!r} has no finished points: run 'lamino study run' first")
    index = write_report(store, analyse(store), out, overwrite=args.overwrite)
    print(f"report: {index}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from lamino.studies.report import write_report
    from lamino.studies.run import run_study
    from lamino.studies.spec import load_spec
    from lamino.studies.store import ResultStore

    _check_backend(args)
    spec = load_spec(args.spec)
    out = args.out or os.path.join("results", spec.name)
    report = args.report or os.path.join(out, "report")
    # --out is checked where the study opens its folder; the default report folder inside it is --out's too
    check_output_folder(report, "--report" if args.report else "--out")
    t0 = time.perf_counter()
    result = run_study(spec, out, workers=args.workers, dask=args.dask, refine=not args.no_refine,
                       overwrite=args.overwrite)
    index = write_report(ResultStore.open(out), result, report, overwrite=True)
    print(f"{spec.name}: {len(result.configurations)} configurations in {time.perf_counter() - t0:.0f} s")
    _print_plan(result, out)
    print(f"report: {index}")
    return 0


_VARY_DEFAULTS = {"seed": "sequential", "noise_seed": "sequential", "tilt_deg": [10.0, 60.0]}


def _parse_vary(text: str | None) -> dict:
    """--vary seed,tilt_deg=20:50,n_views=90|180,param.n_spokes=24:48 → generate_dataset's ``vary``."""
    vary: dict = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, value = item.partition("=")
        if not value:
            if name not in _VARY_DEFAULTS:
                raise ValueError(f"--vary {name!r} needs values: write {name}=MIN:MAX or {name}=A|B|C "
                                 f"(bare names allowed: {', '.join(_VARY_DEFAULTS)})")
            vary[name] = _VARY_DEFAULTS[name]
        elif ":" in value:
            lo, hi = (_number(v, f"--vary {name}") for v in value.split(":", 1))
            vary[name] = [lo, hi]
        else:
            vary[name] = {"choices": [_number(v, f"--vary {name}") for v in value.split("|")]}
    return vary


def _number(text: str, what: str):
    try:
        return int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{what} value {text!r} is not allowed: give a finite number") from None
        return value


def _dataset_generate(args: argparse.Namespace) -> int:
    from lamino.studies.dataset import MAX_COUNT, MAX_VIEWS, generate_dataset

    if not 1 <= args.count <= MAX_COUNT:
        raise ValueError(f"--count {args.count} is not allowed: give 1 to {MAX_COUNT} samples")
    if not 2 <= args.views <= MAX_VIEWS:
        raise ValueError(f"--views {args.views} is not allowed: give 2 to {MAX_VIEWS} projections (a reconstruction "
                         "needs at least 2)")
    if args.seed < 0:
        raise ValueError(f"--seed {args.seed} is not allowed: give an integer ≥ 0")
    if not 0 <= args.tilt < 90:
        raise ValueError(f"--tilt {args.tilt:g} is not allowed: give an angle in [0, 90) degrees")
    check_output_folder(args.out)
    geometry: dict = {"tilt_deg": args.tilt, "n_views": args.views}
    if args.det:
        geometry["det_shape"] = _det_shape(args.det)
    if args.spacing:
        geometry["det_spacing"] = _det_spacing(args.spacing)
    vary = _parse_vary(args.vary)
    for key in ("tilt_deg", "n_views"):
        if key in vary:
            geometry.pop(key)
    t0 = time.perf_counter()
    manifest = generate_dataset(args.phantom, args.count, args.out, vary=vary, params=_parse_params(args.param),
                                scanner=args.scanner, scanner_overrides=_parse_params(args.set, "--set"),
                                geometry=geometry, seed=args.seed, overwrite=args.overwrite)
    print(f"{len(manifest)} samples of {args.phantom} in {time.perf_counter() - t0:.0f} s; manifest {manifest.path}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like the command's other errors (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from lamino import __version__

    parser = _Parser(prog="lamino", description="Digital twins of X-ray computed laminography.")
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
    pshow.add_argument("--scanner", help="grey out what this instrument preset does not measure in every view")
    pshow.add_argument("--tilt", type=float, default=30.0, help="axis tilt for --scanner, degrees (default 30)")
    pshow.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    pshow.set_defaults(func=_phantom_show)
    scanners = sub.add_parser("scanners", help="list the instrument presets (digital twins)")
    scanners.set_defaults(func=_scanners)
    sim = sub.add_parser("simulate", help="simulate a scan of a phantom and write it as NXtomo HDF5")
    sim.add_argument("--phantom", required=True, help="phantom name (see 'lamino phantom list')")
    sim.add_argument("--param", action="append", metavar="KEY=VALUE", help="phantom parameter (repeatable)")
    sim.add_argument("--scanner", default="nikon_xt225", help="instrument preset (see 'lamino scanners')")
    sim.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="scanner or detector field override, e.g. --set read_noise_adu=2 (repeatable)")
    sim.add_argument("--kvp", type=float, help="tube voltage, kV")
    sim.add_argument("--energy", type=float, help="monochromatic beam energy, keV")
    sim.add_argument("--exposure", type=float, help="exposure per projection, s")
    sim.add_argument("--det", help="detector rows,cols (pixels)")
    sim.add_argument("--spacing", help="detector pixel size dv,du or one value (mm)")
    sim.add_argument("--sod", type=float, help="source–object distance, mm (cone beam)")
    sim.add_argument("--sdd", type=float, help="source–detector distance, mm (cone beam)")
    sim.add_argument("--tilt", type=float, default=30.0, help="axis tilt α in degrees (0 = CT; default 30)")
    sim.add_argument("--views", type=int, default=600, help="projections over 360° (default 600)")
    sim.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    sim.add_argument("--method", choices=["exact", "voxel"], default="exact", help="path lengths (default exact)")
    sim.add_argument("--no-noise", action="store_true", help="no photon or read noise")
    sim.add_argument("--no-blur", action="store_true", help="no detector PSF")
    sim.add_argument("--no-truth", action="store_true", help="do not store the ground-truth volume")
    sim.add_argument("--out", default="scan.h5", help="HDF5 file to write (default: scan.h5)")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    sim.set_defaults(func=_simulate)
    rec = sub.add_parser("recon", help="reconstruct a scan file (FBP/FDK, SIRT, CGLS, FISTA-TV)")
    rec.add_argument("scan", help="scan file written by 'lamino simulate' or Scan.save")
    rec.add_argument("--method", choices=["fbp", "sirt", "cgls", "fista-tv"], default="fbp",
                     help="fbp (FDK for cone beam; default), sirt, cgls or fista-tv")
    rec.add_argument("--iterations", type=int, help="iterations of sirt, cgls, fista-tv")
    rec.add_argument("--lam", type=float, help="TV weight of fista-tv (default: 1 %% of the image scale × ‖A‖²)")
    rec.add_argument("--filter", default="ram-lak", help="fbp filter: ram-lak, shepp-logan, cosine, hann")
    rec.add_argument("--grid", default="auto", help="auto (the truth's grid, else one fitted to the detector), "
                                                    "n,voxel_mm or nz,ny,nx,voxel_mm")
    rec.add_argument("--out", default="recon.h5", help="HDF5 volume to write (default: recon.h5)")
    rec.add_argument("--sample-size", help="z,y,x mm of the sample (thickness first), a box centred on the axis: "
                                           "how far truncated rows are continued (default: the simulated "
                                           "phantom's extent, else laterally unbounded)")
    rec.add_argument("--no-extend", action="store_true",
                     help="plain zero-padded FBP: no continuation of truncated rows, no fading of partially "
                          "measured voxels")
    rec.add_argument("--rings", action="store_true",
                     help="suppress ring artefacts (detector stripes) before reconstructing (recon.suppress_rings)")
    rec.add_argument("--png", help="also write orthogonal slices (beside the truth when the scan has one); "
                                   "what was not measured in every view is greyed out")
    rec.add_argument("--overwrite", action="store_true", help="replace existing output files")
    rec.set_defaults(func=_recon)
    study = sub.add_parser("study", help="run an acquisition study (tilt × views sweep) or write its report")
    ssub = study.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    srun = ssub.add_parser("run", help="evaluate every point of a study TOML file into a results folder")
    srun.add_argument("spec", help="study file (TOML; see examples/)")
    srun.add_argument("--out", required=True, help="results folder (rerun to resume an interrupted study)")
    _backend_args(srun)
    srun.set_defaults(func=_study_run)
    srep = ssub.add_parser("report", help="write the HTML report of a results folder")
    srep.add_argument("results", help="results folder of 'lamino study run'")
    srep.add_argument("--out", help="report folder (default: RESULTS/report)")
    srep.add_argument("--overwrite", action="store_true", help="replace an existing report folder")
    srep.set_defaults(func=_study_report)
    plan = sub.add_parser("plan", help="run a study and write its report: the recommended protocol")
    plan.add_argument("spec", help="study file (TOML), e.g. examples/quickstart.toml")
    plan.add_argument("--out", help="results folder (default: results/<study name>)")
    plan.add_argument("--report", help="report folder (default: <results>/report)")
    _backend_args(plan)
    plan.set_defaults(func=_plan)
    dataset = sub.add_parser("dataset", help="labelled validation datasets (NXtomo + ground truth)")
    dsub = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    gen = dsub.add_parser("generate", help="simulate N labelled scans with varied parameters and a manifest")
    gen.add_argument("--phantom", required=True, help="phantom name (see 'lamino phantom list')")
    gen.add_argument("--count", type=int, required=True, help="number of samples")
    gen.add_argument("--vary", help="what varies per sample, e.g. seed,tilt_deg=20:50,n_views=90|180,"
                                    "param.n_spokes=24:48 (ranges MIN:MAX drawn uniformly, A|B cycled; bare "
                                    "seed / noise_seed count up, bare tilt_deg is 10:60)")
    gen.add_argument("--param", action="append", metavar="KEY=VALUE", help="fixed phantom parameter (repeatable)")
    gen.add_argument("--scanner", default="nikon_xt225", help="instrument preset (see 'lamino scanners')")
    gen.add_argument("--set", action="append", metavar="KEY=VALUE", help="scanner or detector override")
    gen.add_argument("--det", default="64,64", help="detector rows,cols (default 64,64)")
    gen.add_argument("--spacing", help="detector pixel size dv,du or one value (mm)")
    gen.add_argument("--tilt", type=float, default=30.0, help="tilt when not varied (default 30°)")
    gen.add_argument("--views", type=int, default=100, help="projections when not varied (default 100)")
    gen.add_argument("--seed", type=int, default=0, help="seed of the draws and first phantom seed (default 0)")
    gen.add_argument("--out", required=True, help="dataset folder (rerun to resume)")
    gen.add_argument("--overwrite", action="store_true", help="delete an existing dataset in --out first")
    gen.set_defaults(func=_dataset_generate)
    bench = sub.add_parser("bench", help="time the projector and FBP on this machine (GUPS)")
    bench.add_argument("--size", type=int, default=128, help="grid size n of the n³ volume (default 128)")
    bench.add_argument("--views", type=int, default=180, help="number of views (default 180)")
    bench.add_argument("--tilt", type=float, default=30.0, help="tilt in degrees (default 30)")
    bench.add_argument("--beam", choices=["parallel", "cone"], default="parallel")
    bench.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up (default 3)")
    bench.set_defaults(func=_bench)
    return parser


def _bench(args: argparse.Namespace) -> int:
    """Throughput of the projector and FBP on this machine (GUPS = voxels × views / s / 1e9, after compiling)."""
    import jax
    import numpy as np

    from lamino.geometry import Geometry, VolumeGrid
    from lamino.projector import Projector
    from lamino.recon import fbp

    if args.size < 8 or args.views < 2:
        raise ValueError(f"--size {args.size} / --views {args.views} are not allowed: give a size ≥ 8 and ≥ 2 views")
    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats} is not allowed: give at least 1 timed repeat")
    n, v = args.size, args.views
    check_memory(FLOAT32 * (3 * n**3 + 3 * v * n * int(n * 1.5)), f"the benchmark of {n}³ voxels × {v} views",
                 "give a smaller --size or fewer --views")
    grid = VolumeGrid((n, n, n), 1.0)
    kw = dict(tilt_deg=args.tilt, n_views=v, det_shape=(n, int(n * 1.5)))
    if args.beam == "cone":                                  # magnification 2: one pixel per voxel at the object
        g = Geometry.cone(sod=20.0 * n, sdd=40.0 * n, det_spacing=2.0, **kw)
    else:
        g = Geometry.parallel(det_spacing=1.0, **kw)
    P = Projector(g, grid)
    vol = np.random.default_rng(0).random(grid.shape, np.float32)
    proj = np.asarray(P.forward(vol))
    rows = []
    for name, fn in (("forward", lambda: P.forward(vol)), ("adjoint", lambda: P.adjoint(proj)),
                     ("backproject", lambda: P.backproject(proj)), ("fbp", lambda: fbp(proj, g, grid))):
        jax.block_until_ready(fn())
        best = math.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            best = min(best, time.perf_counter() - t0)
        rows.append((name, best, n**3 * v / best / 1e9))
    device = jax.devices()[0]
    print(f"{args.beam} beam, tilt {args.tilt:g}°, {n}³ voxels × {v} views, {len(jax.devices())} × "
          f"{device.platform} ({device.device_kind})")
    for name, seconds, gups in rows:
        print(f"  {name:12s} {seconds:8.3f} s  {gups:7.3f} GUPS")
    return 0


def _backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=0, help="local worker processes (default 0: in this process)")
    p.add_argument("--dask", metavar="ADDRESS", help="run points on a Dask cluster: tcp://host:8786, or 'local'")
    p.add_argument("--no-refine", action="store_true", help="skip the planner's tilt refinement")
    p.add_argument("--overwrite", action="store_true", help="discard results of a different study in --out")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"lamino {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = one_line_warning
    try:
        configure()
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lamino {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:                        # a file system refusal found late: still one line, no traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"lamino {args.command}: error: {exc.strerror or exc}{where}: check the paths given and that they "
              "are writable", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line."""
    return " ".join(str(exc).split("\n"))


if __name__ == "__main__":
    sys.exit(main())

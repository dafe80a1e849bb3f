"""Figure of the physics the plans reproduce (docs/studies.md, "Physics the plans reproduce").

Usage: python benchmarks/plan_physics.py [--seeds 6] [--figure docs/plan-physics.png]

Runs the same set-ups as tests/test_plan_physics.py (imported from there, so figure and tests measure one thing):
(a) NPW d′ of a flat and a through-thickness void crack in a Li₆PS₅Cl plate against tilt, through the study
chain (``evaluate_point`` with ``[[task]]`` tables); (b) at a fixed total exposure, the FBP noise variance and the
view-aliasing RMSE against the view count, without and with 16 photons of read noise per view. Error bars are
standard errors over the noise seeds. About 3 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import lamino  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--figure", default="docs/plan-physics.png")
    args = ap.parse_args()
    lamino.configure()
    import test_plan_physics as t

    from lamino.studies.point import evaluate_point
    from lamino.studies.spec import parse_spec

    spec = parse_spec(t.crack_study(seeds=tuple(range(args.seeds))))
    got: dict = {}
    for point in spec.points():
        m = evaluate_point(spec, point).metrics
        for name in ("flat", "vertical"):
            got.setdefault((name, point["tilt_deg"]), []).append(m[f"dprime_{name}"])
    views = (30, 60, 120, 240)
    pure = t._fractionation(views, seeds=range(args.seeds))
    read = t._fractionation(views, seeds=range(args.seeds), read_noise=16.0)
    for name in ("flat", "vertical"):
        print(name, " ".join(f"{a:g}°: {np.mean(got[name, a]):.2f} ± "
                             f"{np.std(got[name, a], ddof=1) / np.sqrt(args.seeds):.2f}" for a in t.TILTS))
    for n in views:
        print(f"{n} views: variance {pure[n]['variance']:.4e} ± {pure[n]['sem']:.1e}, with read noise "
              f"{read[n]['variance']:.4e} ± {read[n]['sem']:.1e}; aliasing RMSE {pure[n]['aliasing']:.2e} 1/mm")

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, colour, label in (("flat", "C3", "flat crack (normal z)"),
                                ("vertical", "C0", "through-thickness crack (normal x)")):
        mean = [np.mean(got[name, a]) for a in t.TILTS]
        sem = [np.std(got[name, a], ddof=1) / np.sqrt(args.seeds) for a in t.TILTS]
        ax1.errorbar(t.TILTS, mean, yerr=sem, marker="o", capsize=3, color=colour, label=label)
    ax1.set_xlabel("tilt α (°)")
    ax1.set_ylabel("NPW d′")
    ax1.set_title("(a) 0.4 × 0.2 mm void cracks, 40 µm open,\nin a 0.3 mm Li₆PS₅Cl plate (25 keV, 90 views)")
    ax1.set_ylim(bottom=0)
    ax1.legend(loc="lower left")
    n = np.array(views)
    for res, colour, label in ((pure, "C2", "noise variance, photon noise only"),
                               (read, "C1", "noise variance, + 16 photons read noise")):
        ax2.errorbar(n, [res[k]["variance"] * 1e3 for k in views], yerr=[res[k]["sem"] * 1e3 for k in views],
                     marker="o", capsize=3, color=colour, label=label)
    ax2.set_xscale("log")
    ax2.set_xticks(n, [str(k) for k in views])
    ax2.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax2.set_xlabel("views (same total exposure: views × exposure = 1.2 ms)")
    ax2.set_ylabel("noise variance (10⁻³ mm⁻²)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("(b) dose fractionation: 0.3 mm Al plate, 30°, FBP")
    twin = ax2.twinx()
    twin.plot(n, [pure[k]["aliasing"] * 1e3 for k in views], "k--s", label="view aliasing RMSE (noise-free)")
    twin.set_yscale("log")
    twin.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    twin.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    twin.set_ylabel("view-aliasing RMSE (10⁻³ mm⁻¹)")
    lines = ax2.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax2.legend(lines[0] + more[0], lines[1] + more[1], loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.figure, dpi=110)
    print("wrote", args.figure)


if __name__ == "__main__":
    main()

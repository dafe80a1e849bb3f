"""Pictures of phantoms: three orthogonal slices with a material legend and a scale bar."""

from __future__ import annotations

import numpy as np

from lamino.geometry import VolumeGrid
from lamino.io import atomic_write
from lamino.phantoms.scene import Phantom


def phantom_grid(phantom: Phantom, size: int = 192, min_voxels: int = 48) -> VolumeGrid:
    """A grid over the phantom's bounds: ``size`` voxels along its longest side, and at least ``min_voxels``
    along every side, so thin layers of flat samples stay visible (voxels then are not cubes)."""
    lo, hi = (np.asarray(b) for b in phantom.bounds)
    extent = hi - lo
    voxel = float(extent.max()) / size
    shape = [int(max(1, np.ceil(e / voxel))) for e in extent[::-1]]            # (nz, ny, nx)
    shape = [max(n, min(min_voxels, size)) for n in shape]
    sizes = tuple(float(e) / n for e, n in zip(extent[::-1], shape, strict=True))
    return VolumeGrid(tuple(shape), sizes, center=tuple(((lo + hi) / 2)[::-1]))


def show_phantom(phantom: Phantom, out: str, size: int = 192, supersample: int = 2) -> str:
    """Write a PNG of the xy, xz and yz slices through the densest material's centroid; returns ``out``.

    Each voxel shows the densest material filling at least 5 % of it, so thin metal layers stay visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    grid = phantom_grid(phantom, size)
    vox = phantom.voxelize(grid, supersample)
    names = sorted(vox.fractions, key=lambda m: phantom.materials[m].density)
    index = np.zeros(grid.shape, np.int8)                                   # 0 = empty, i = names[i-1]
    for i, m in enumerate(names, start=1):                                  # densest present wins
        index[vox.fractions[m] >= 0.05] = i
    densest = vox.fractions[names[-1]]
    centre = [int(np.clip(np.round(np.average(np.arange(n), weights=densest.sum(axis=tuple(a for a in range(3)
                                                                                          if a != d)) + 1e-12)),
                          0, n - 1)) for d, n in enumerate(grid.shape)]
    colours = ["#ffffff"] + [plt.cm.tab10(i % 10) for i in range(len(names))]
    cmap = ListedColormap(colours)
    ax_z, ax_y, ax_x = (grid.axis(d) for d in range(3))
    views = [("xy", index[centre[0]], ax_x, ax_y, f"z = {ax_z[centre[0]]:.3g} mm"),
             ("xz", index[:, centre[1]], ax_x, ax_z, f"y = {ax_y[centre[1]]:.3g} mm"),
             ("yz", index[:, :, centre[2]], ax_y, ax_z, f"x = {ax_x[centre[2]]:.3g} mm")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, (plane, img, h, v, where) in zip(axes, views, strict=True):
        dh, dv = (h[1] - h[0] if len(h) > 1 else 1.0) / 2, (v[1] - v[0] if len(v) > 1 else 1.0) / 2
        ax.imshow(img, cmap=cmap, vmin=0, vmax=len(colours) - 1, origin="lower", interpolation="nearest",
                  extent=(h[0] - dh, h[-1] + dh, v[0] - dv, v[-1] + dv), aspect="auto")
        ax.set_title(f"{plane} slice at {where}")
        ax.set_xlabel(f"{plane[0]} (mm)")
        ax.set_ylabel(f"{plane[1]} (mm)")
        _scale_bar(ax, h[-1] - h[0])
    legend = [Patch(facecolor=colours[i + 1], edgecolor="k", label=f"{m} ({phantom.materials[m].density:.3g} g/cm³)")
              for i, m in enumerate(names)]
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 5), frameon=False)
    shown = {k: v for k, v in phantom.params.items()
             if isinstance(v, (int, float, str, bool, type(None))) or (isinstance(v, tuple) and len(v) <= 3)}
    fig.suptitle(f"{phantom.name}: {', '.join(f'{k}={v}' for k, v in shown.items())}", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    try:
        with atomic_write(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=90)
    finally:
        plt.close(fig)
    return out


def _scale_bar(ax, width_mm: float) -> None:
    """A bar of a round length (1, 2 or 5 × 10ⁿ mm) about a fifth of the axis width."""
    target = width_mm / 5
    exp = np.floor(np.log10(target))
    length = min((m * 10**exp for m in (1, 2, 5)), key=lambda v: abs(v - target))
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    xs = x1 - 0.05 * (x1 - x0) - length
    ys = y0 + 0.06 * (y1 - y0)
    ax.plot([xs, xs + length], [ys, ys], color="k", lw=3)
    label = f"{length * 1000:g} µm" if length < 1 else f"{length:g} mm"
    ax.text(xs + length / 2, ys + 0.03 * (y1 - y0), label, ha="center", va="bottom", fontsize=8)

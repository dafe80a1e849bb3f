"""Pictures of phantoms: three orthogonal slices with a material legend and a scale bar."""

from __future__ import annotations

import numpy as np

from lamino._plotting import measured_planes, orthogonal_slices, save_figure, shade_unmeasured, show_slice
from lamino.geometry import VolumeGrid
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


def show_phantom(phantom: Phantom, out: str, size: int = 192, supersample: int = 2, geometry=None) -> str:
    """Write a PNG of the xy, xz and yz slices through the densest material's centroid; returns ``out``.

    Each voxel shows the densest material filling at least 5 % of it, so thin metal layers stay visible. With a
    ``geometry`` (a :class:`~lamino.geometry.Geometry`), what that scan would not measure in every view is greyed
    out and the fully measured region outlined.
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
    centre_mm = tuple(float(grid.axis(d)[c]) for d, c in enumerate(centre))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    measured = measured_planes(geometry, grid, centre_mm) if geometry is not None else [None] * 3
    for ax, (plane, img, h, v, where), fraction in zip(axes, orthogonal_slices(index, grid, centre_mm), measured,
                                                        strict=True):
        show_slice(ax, img, h, v, cmap=cmap, vmin=0, vmax=len(colours) - 1, interpolation="nearest")
        if fraction is not None:
            shade_unmeasured(ax, fraction, h, v)
        ax.set_title(f"{plane} slice at {where}")
        ax.set_xlabel(f"{plane[0]} (mm)")
        ax.set_ylabel(f"{plane[1]} (mm)")
    legend = [Patch(facecolor=colours[i + 1], edgecolor="k", label=f"{m} ({phantom.materials[m].density:.3g} g/cm³)")
              for i, m in enumerate(names)]
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 5), frameon=False)
    shown = {k: v for k, v in phantom.params.items()
             if isinstance(v, (int, float, str, bool, type(None))) or (isinstance(v, tuple) and len(v) <= 3)}
    fig.suptitle(f"{phantom.name}: {', '.join(f'{k}={v}' for k, v in shown.items())}", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return save_figure(fig, out)


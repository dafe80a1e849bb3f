"""Pictures of reconstructions: orthogonal slices, beside the ground truth when there is one."""

from __future__ import annotations

import numpy as np

from lamino._plotting import measured_planes, orthogonal_slices, save_figure, shade_unmeasured, show_slice
from lamino.geometry import VolumeGrid


def compare_slices(volume: np.ndarray, grid: VolumeGrid, out: str, truth: np.ndarray | None = None,
                   truth_grid: VolumeGrid | None = None, title: str = "",
                   geometry=None) -> str:
    """Write a PNG of the xy, xz and yz slices (μ in 1/mm, each row on its own 0.5–99.5 % grey scale) through the
    |μ|-weighted centroid of the truth (or of the volume), with the truth's slices at the same positions in a
    second row when ``truth`` is given; returns ``out``. With the scan's ``geometry`` the reconstruction's slices
    grey out what was not measured in every view and outline the fully measured region
    (:func:`lamino._plotting.measured_planes`, :func:`lamino._plotting.shade_unmeasured`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = np.asarray(volume, np.float32)
    rows = [("reconstruction", volume, grid)]
    if truth is not None:
        rows.append(("truth", np.asarray(truth, np.float32), truth_grid or grid))
    centre = _centroid(*rows[-1][1:])                     # where the (true) structure is
    fig, axes = plt.subplots(len(rows), 3, figsize=(15, 4.6 * len(rows)), squeeze=False)
    for r, (name, vol, g) in enumerate(rows):
        masks = measured_planes(geometry, grid, centre) if (geometry is not None and r == 0) else None
        lo, hi = (float(np.percentile(vol, q)) for q in (0.5, 99.5))
        hi = hi if hi > lo else lo + 1e-6
        for k, (ax, (plane, img, h, v, where)) in enumerate(zip(axes[r], orthogonal_slices(vol, g, centre),
                                                                strict=True)):
            im = show_slice(ax, img, h, v, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            if masks is not None:
                shade_unmeasured(ax, masks[k], h, v)
            ax.set_title(f"{name}: {plane} at {where}")
            ax.set_xlabel(f"{plane[0]} (mm)")
            ax.set_ylabel(f"{plane[1]} (mm)")
        fig.colorbar(im, ax=axes[r].tolist(), label=f"{name} μ (1/mm)", shrink=0.9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, out)


def _centroid(volume: np.ndarray, grid: VolumeGrid) -> tuple[float, float, float]:
    """(z, y, x) mm: the |volume|-weighted mean position (the grid centre for an empty volume)."""
    weight = np.abs(volume)
    total = float(weight.sum())
    if total <= 0:
        return tuple(grid.center)
    return tuple(float(np.sum(weight.sum(axis=tuple(a for a in range(3) if a != d)) * grid.axis(d)) / total)
                 for d in range(3))

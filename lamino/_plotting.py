"""Small matplotlib helpers shared by lamino's pictures: scale bars and orthogonal slices of a grid."""

from __future__ import annotations

import numpy as np

from lamino.geometry import VolumeGrid


def scale_bar(ax, width_mm: float) -> None:
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


def orthogonal_slices(volume: np.ndarray, grid: VolumeGrid, centre_mm: tuple[float, float, float]) -> list[tuple]:
    """The xy, xz and yz slices through the voxel nearest ``centre_mm`` (z, y, x):
    [(plane, image, horizontal axis mm, vertical axis mm, "z = … mm"), …]."""
    axes = [grid.axis(d) for d in range(3)]
    idx = [int(np.argmin(np.abs(a - c))) for a, c in zip(axes, centre_mm, strict=True)]
    ax_z, ax_y, ax_x = axes
    return [("xy", volume[idx[0]], ax_x, ax_y, f"z = {ax_z[idx[0]]:.3g} mm"),
            ("xz", volume[:, idx[1]], ax_x, ax_z, f"y = {ax_y[idx[1]]:.3g} mm"),
            ("yz", volume[:, :, idx[2]], ax_y, ax_z, f"x = {ax_x[idx[2]]:.3g} mm")]


def show_slice(ax, image: np.ndarray, h: np.ndarray, v: np.ndarray, **imshow) -> object:
    """``imshow`` of a slice in mm coordinates (pixel centres at the axis values), with a scale bar."""
    dh = (h[1] - h[0] if len(h) > 1 else 1.0) / 2
    dv = (v[1] - v[0] if len(v) > 1 else 1.0) / 2
    im = ax.imshow(image, origin="lower", extent=(h[0] - dh, h[-1] + dh, v[0] - dv, v[-1] + dv), aspect="auto",
                   **imshow)
    scale_bar(ax, h[-1] - h[0])
    return im


def save_figure(fig, out: str, dpi: int = 90) -> str:
    """Save a matplotlib figure as a PNG atomically (temporary file, then rename) and close it; returns ``out``."""
    import matplotlib.pyplot as plt

    from lamino.io import atomic_write

    try:
        with atomic_write(out, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return out


def shade_unmeasured(ax, fraction: np.ndarray, h: np.ndarray, v: np.ndarray) -> None:
    """Over a slice drawn by :func:`lamino._plotting.show_slice`: a translucent grey where ``fraction`` < 1 (voxels
    not measured in every view) and a dashed yellow line around the fully measured region."""
    full = np.asarray(fraction) >= 1.0
    if full.all():
        return
    dh = (h[1] - h[0] if len(h) > 1 else 1.0) / 2
    dv = (v[1] - v[0] if len(v) > 1 else 1.0) / 2
    extent = (h[0] - dh, h[-1] + dh, v[0] - dv, v[-1] + dv)
    ax.imshow(np.where(full, np.nan, 1.0), origin="lower", extent=extent, aspect="auto", cmap="Greys",
              vmin=0, vmax=2, alpha=0.6, interpolation="nearest")
    if full.any() and min(full.shape) > 1:
        ax.contour(h, v, full.astype(float), levels=[0.5], colors="yellow", linewidths=1.0, linestyles="--")


def measured_planes(geometry, grid, centre_mm: tuple[float, float, float]) -> list[np.ndarray]:
    """The measured fraction (:meth:`lamino.geometry.Geometry.measured_fraction`) on the xy, xz and yz slices of
    :func:`orthogonal_slices` through the voxel nearest ``centre_mm`` (z, y, x), each computed on that slice
    alone."""
    from lamino.geometry import VolumeGrid

    idx = [int(np.argmin(np.abs(grid.axis(d) - c))) for d, c in enumerate(centre_mm)]
    nz, ny, nx = grid.shape

    def plane(shape, d):                        # a one-voxel-thick grid through voxel idx[d] along axis d
        centre = list(grid.center)
        centre[d] = float(grid.axis(d)[idx[d]])
        return geometry.measured_fraction(VolumeGrid(shape, grid.voxel_size, tuple(centre)))

    return [plane((1, ny, nx), 0)[0], plane((nz, 1, nx), 1)[:, 0], plane((nz, ny, 1), 2)[:, :, 0]]

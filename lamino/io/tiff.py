"""TIFF export of a scan: one float32 image per projection, the averaged flat and dark, and the geometry."""

from __future__ import annotations

import glob
import json
import os
from typing import TYPE_CHECKING

import numpy as np

from lamino.io.files import atomic_write

if TYPE_CHECKING:
    from lamino.io.scan import Scan

__all__ = ["export_scan"]


def export_scan(scan: Scan, folder, overwrite: bool = False) -> list[str]:
    """Write ``proj_0000.tif`` … (one float32 TIFF per view), ``flat.tif`` and ``dark.tif`` (averaged
    frames) and ``geometry.json`` (``Geometry.to_dict()``, mm, degrees) into ``folder``; return the paths.

    Each file is written atomically. A non-empty ``folder`` is refused unless ``overwrite``; then
    projections of an earlier export that this one does not replace are removed.
    """
    import tifffile

    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"folder={folder!r} is not allowed: it exists and is not a folder")
    if os.path.isdir(folder) and os.listdir(folder) and not overwrite:
        raise ValueError(f"folder={folder!r} is not empty; pass overwrite=True to write into it")
    os.makedirs(folder, exist_ok=True)
    width = max(4, len(str(scan.n_views - 1)))
    names = [f"proj_{i:0{width}d}.tif" for i in range(scan.n_views)]
    for stale in glob.glob(os.path.join(glob.escape(folder), "proj_*.tif")):
        if os.path.basename(stale) not in names:
            os.remove(stale)
    images = [*zip(names, scan.counts, strict=True),
              ("flat.tif", scan.flats.mean(axis=0, dtype=np.float64)),
              ("dark.tif", scan.darks.mean(axis=0, dtype=np.float64))]
    paths = []
    for name, image in images:
        paths.append(os.path.join(folder, name))
        with atomic_write(paths[-1], suffix=".tif") as tmp:
            tifffile.imwrite(tmp, np.asarray(image, dtype=np.float32))
    paths.append(os.path.join(folder, "geometry.json"))
    with atomic_write(paths[-1], suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(scan.geometry.to_dict(), fh, indent=1)
    return paths

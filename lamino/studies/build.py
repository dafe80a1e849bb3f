"""What a study point is made of: its scanner, its acquisition geometry and the study's reconstruction grid,
built from a :class:`~lamino.studies.spec.StudySpec` and a point of its sweep (mm, degrees, seconds).

Both the spec (which builds the first point's geometry to validate ``[geometry]``) and the point evaluation
(:mod:`lamino.studies.point`) use these, so they live below both: this module needs the spec only for its type.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from lamino.geometry import Geometry, VolumeGrid
from lamino.recon.coverage import reliable_region
from lamino.simulate import Scanner

if TYPE_CHECKING:
    from lamino.studies.spec import StudySpec

# sample frame of a CT whose axis is the sample's z → sample frame of a flat sample whose CT axis is its x axis
# and whose normal (z) faces the beam at the middle view: z → x, y → z, x → y
_LIMITED_ANGLE_FRAME = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def build_scanner(spec: StudySpec, point: dict[str, Any]) -> Scanner:
    """The spec's scanner preset with its overrides and the point's exposure and kVp."""
    overrides = {k: v for k, v in spec.scanner.items() if k != "preset"}
    overrides["exposure_s"] = point["exposure_s"]
    if point.get("kvp") is not None:
        overrides["kvp"] = point["kvp"]
    return Scanner.preset(spec.scanner["preset"], **overrides)


def build_geometry(spec: StudySpec, point: dict[str, Any], scanner: Scanner | None = None) -> Geometry:
    """The point's geometry: the scanner's detector and distances, the spec's [geometry] keywords, the point's
    tilt and view count.

    ``trajectory = "limited-angle"``: limited-angle CT of the flat sample (the rotation axis along the sample's x
    axis, in its plane) over an arc of Φ = 180° × cos α centred on the face-on view, so that its missing wedge,
    a fraction (180° − Φ) / 180° of Fourier directions, equals CL's missing cone 1 − cos α at tilt α."""
    scanner = scanner or build_scanner(spec, point)
    kw = dict(spec.geometry)
    for key in ("det_shape", "det_spacing", "det_offset"):
        if key in kw and isinstance(kw[key], list):
            kw[key] = tuple(kw[key])
    tilt, n_views = point["tilt_deg"] * 1.0, int(point["n_views"])       # a traced tilt stays traced
    if point.get("trajectory", "cl") == "cl":
        return scanner.geometry(tilt, n_views, **kw)
    arc = 180.0 * math.cos(math.radians(tilt))
    ct = scanner.geometry(0.0, n_views, angles_deg=np.linspace(-arc / 2, arc / 2, n_views), **kw)
    vec = np.asarray(ct.vectors(), float).reshape(n_views, 4, 3) @ _LIMITED_ANGLE_FRAME.T
    return Geometry.from_vectors(vec.reshape(n_views, 12), ct.det_shape, ct.beam)


def fixed_grid(table: dict[str, Any]) -> VolumeGrid:
    """The grid of a ``[recon] grid = { shape = [nz, ny, nx], voxel_size = mm, center = [cz, cy, cx] }`` table."""
    return VolumeGrid(tuple(table["shape"]), table["voxel_size"], tuple(table.get("center", (0.0, 0.0, 0.0))))


def study_grid(spec: StudySpec) -> VolumeGrid:
    """The reconstruction grid shared by every point: [recon] grid, or (``"auto"``) what the detector sees at
    the largest tilt of the sweep."""
    g = spec.recon.get("grid", "auto")
    if g == "auto":
        point = spec.points()[0]
        point["tilt_deg"] = max(spec.sweep["tilt_deg"])
        return VolumeGrid.fit(build_geometry(spec, point))
    return fixed_grid(g)


def grid_coverage(spec: StudySpec, grid: VolumeGrid) -> list[tuple[float, str, float, float]]:
    """For each tilt and trajectory of the sweep (36 views): (tilt, trajectory, share of the grid's voxels that
    leave the detector in some views, share on it in no view), from
    :func:`lamino.recon.coverage.unmeasured_share`."""
    from lamino.recon.coverage import unmeasured_share

    base = spec.points()[0]
    out = []
    for tilt in spec.sweep["tilt_deg"]:
        for trajectory in spec.sweep["trajectory"]:
            g = build_geometry(spec, {**base, "tilt_deg": tilt, "trajectory": trajectory, "n_views": 36})
            out.append((float(tilt), trajectory, *unmeasured_share(g, grid)))
    return out


def coverage_warning(spec: StudySpec) -> str | None:
    """A one-line warning when the study grid extends past what some trajectory measures, else None."""
    partial, tilt = max((c[2], c[0]) for c in grid_coverage(spec, study_grid(spec)))
    if partial <= 0:
        return None
    return (f"[recon] grid extends past what the scan measures: {partial:.0%} of its voxels leave the detector in "
            f"some views at tilt {tilt:g}°; reconstructions fade them out where they are measured in under half "
            "of the views, and scores use only voxels measured in at least 90 %")


def measured_region(spec: StudySpec, grid: VolumeGrid) -> np.ndarray:
    """Voxels that every trajectory of the sweep (each tilt and trajectory) reconstructs reliably, so all points
    are scored on the same region (a wide flat sample in CL is truncated at the detector's edges, differently
    at each tilt): :func:`lamino.recon.coverage.reliable_region`, with views sampled every 10°."""
    region = np.ones(grid.shape, bool)
    base = spec.points()[0]
    for tilt in spec.sweep["tilt_deg"]:
        for trajectory in spec.sweep["trajectory"]:
            g = build_geometry(spec, {**base, "tilt_deg": tilt, "trajectory": trajectory, "n_views": 36})
            region &= reliable_region(g, grid)
    return region

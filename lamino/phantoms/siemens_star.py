"""Siemens star: the classic CL resolution target — metal spokes on a thin substrate (mm)."""

from __future__ import annotations

import numpy as np

from lamino.phantoms.params import check_choice, check_int, check_length
from lamino.phantoms.scene import Phantom, place
from lamino.phantoms.shapes import Box, Prism

METALS = ("gold", "tungsten")
SUBSTRATES = ("silicon", "silicon_nitride", "polyimide")


def siemens_star(n_spokes: int = 36, radius_mm: float = 2.0, thickness_mm: float = 0.005, metal: str = "gold",
                 substrate: str = "silicon", substrate_thickness_mm: float = 0.2, plane: str = "xy",
                 arc_points: int = 8, label_sectors: int = 8, seed: int | None = None) -> Phantom:
    """``n_spokes`` metal sectors (half the circle, alternating with gaps) of ``thickness_mm`` on a square
    substrate of side 2.4 × ``radius_mm``. ``plane="xy"`` lies flat in the sample plane (CL target);
    ``plane="xz"`` stands in a plane containing the rotation axis (for CL vs limited-angle CT comparisons).
    Spatial period at radius r: 2π r / n_spokes. Labels: ``substrate``, ``spoke`` (all spokes) and per spoke region
    ``spoke:k`` (k = 0 … ``label_sectors`` − 1: the spokes whose centre angle lies in [k, k + 1) × 360° /
    label_sectors, for contrast-isotropy scoring); every spoke is listed in ``params["spokes_deg"]`` as [start,
    end] polar angles (degrees, in the star's own plane, from its x axis). ``seed`` is accepted for a uniform
    interface; the star has nothing random.
    """
    check_int(n_spokes, "n_spokes", 4, 720)
    check_length(radius_mm, "radius_mm", 1e-3, 1e3)
    check_length(thickness_mm, "thickness_mm", 1e-5, 10.0)
    check_length(substrate_thickness_mm, "substrate_thickness_mm", 1e-5, 100.0)
    check_choice(metal, "metal", METALS)
    check_choice(substrate, "substrate", SUBSTRATES)
    check_choice(plane, "plane", ("xy", "xz"))
    check_int(arc_points, "arc_points", 2, 64)
    check_int(label_sectors, "label_sectors", 1, n_spokes)
    tilt = (90.0, 0.0, 0.0) if plane == "xz" else (0.0, 0.0, 0.0)

    def placed(shape, material, label, z):
        offset = np.array([0.0, 0.0, z])
        if plane == "xz":                                   # R_x(90°) takes +z to −y
            offset = np.array([0.0, -z, 0.0])
        return place(shape, material, label, at=offset, rotate_deg=tilt)

    side = 2.4 * radius_mm
    parts = [placed(Box((side, side, substrate_thickness_mm)), substrate, "substrate",
                    -substrate_thickness_mm / 2)]
    width = np.pi / n_spokes
    for j in range(n_spokes):
        a = np.linspace(2 * width * j, 2 * width * j + width, arc_points + 1)
        verts = [(0.0, 0.0)] + [(radius_mm * np.cos(t), radius_mm * np.sin(t)) for t in a]
        sector = int((2 * j + 0.5) * width / (2 * np.pi) * label_sectors) % label_sectors
        parts.append(placed(Prism(tuple(verts), thickness_mm), metal, f"spoke:{sector}", thickness_mm / 2))
    params = dict(n_spokes=n_spokes, radius_mm=radius_mm, thickness_mm=thickness_mm, metal=metal,
                  substrate=substrate, substrate_thickness_mm=substrate_thickness_mm, plane=plane,
                  arc_points=arc_points, label_sectors=label_sectors,
                  spokes_deg=[[360.0 * j / n_spokes, 360.0 * j / n_spokes + 180.0 / n_spokes] for j in range(n_spokes)])
    return Phantom.build("siemens_star", parts, params)

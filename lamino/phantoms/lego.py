"""LEGO bricks in ABS: the 2 × 4 brick (part 3001) to the published dimensions, other sizes, plates, and a flat
multi-brick assembly on a baseplate like the LEGO scans used to demonstrate computed laminography (mm).

Dimensions (mm): stud pitch 8.0; a piece of n × m studs measures (8n − 0.2) × (8m − 0.2) (0.2 mm play);
body height 9.6 (brick) or 3.2 (plate); studs Ø4.8 × 1.7 on top, centred on the 8 mm grid; top 1.0 thick;
side walls 1.2 thick; open underside with hollow tubes (Ø6.51 outside, Ø4.8 inside) between the stud rows,
or solid pins Ø3.0 under 1-wide pieces, as tall as the cavity (body height − top thickness).

Each piece is built with the painter's rule (later parts replace earlier ones): solid ABS body box, a ``void``
box for the cavity (inner size = outer − 2 × wall in x and y, from the base up to the underside of the top),
the tubes (ABS cylinder, then a void cylinder inside it) or pins, then the studs on top.
"""

from __future__ import annotations

import numpy as np

from lamino.phantoms.params import check_choice, check_int
from lamino.phantoms.scene import Part, Phantom, place
from lamino.phantoms.shapes import Box, Cylinder

PITCH_MM = 8.0                 # stud pitch
PLAY_MM = 0.2                  # a piece is n × pitch − play long
BRICK_HEIGHT_MM = 9.6
PLATE_HEIGHT_MM = 3.2
STUD_DIAMETER_MM = 4.8
STUD_HEIGHT_MM = 1.7
TOP_THICKNESS_MM = 1.0
WALL_THICKNESS_MM = 1.2
TUBE_OUTER_DIAMETER_MM = 6.51
TUBE_INNER_DIAMETER_MM = 4.8
PIN_DIAMETER_MM = 3.0

KINDS = {"brick": BRICK_HEIGHT_MM, "plate": PLATE_HEIGHT_MM}
ASSEMBLIES = ("single", "baseplate")
# footprints (studs) of common bricks and plates that the assembly draws from; each may be turned by 90°
CATALOGUE = ((1, 1), (1, 2), (1, 3), (1, 4), (1, 6), (2, 2), (2, 3), (2, 4), (2, 6))
MATERIAL = "abs"


def lego(studs_x: int = 4, studs_y: int = 2, kind: str = "brick", assembly: str = "single",
         baseplate_studs: int = 8, n_bricks: int = 4, seed: int = 0) -> Phantom:
    """A LEGO piece of ``studs_x`` × ``studs_y`` studs (default: the 2 × 4 brick, part 3001, 31.8 × 15.8 × 9.6 mm
    plus 1.7 mm studs) in ABS, ``kind`` "brick" (9.6 mm body) or "plate" (3.2 mm body), studs up (+z).

    ``assembly="baseplate"``: a flat assembly — a ``baseplate_studs`` × ``baseplate_studs`` plate (3.2 mm) with
    ``n_bricks`` bricks and plates pressed onto its studs, their sizes (from :data:`CATALOGUE`, turned by 90° at
    random), kinds and stud-grid positions drawn from ``seed`` without overlap. ``studs_x``, ``studs_y`` and
    ``kind`` describe the single piece and are not used by the assembly.

    The bounding box is centred on the origin: the base at z = −height/2, the stud tops at +height/2, where
    height = body + studs (9.6 + 1.7 = 11.3 mm for a brick). Labels: ``body`` (piece bodies and walls),
    ``stud``, ``tube`` (underside tubes and pins) and, for the assembly, ``baseplate`` (the baseplate's body).
    """
    check_int(studs_x, "studs_x", 1, 48)
    check_int(studs_y, "studs_y", 1, 48)
    check_choice(kind, "kind", tuple(KINDS))
    check_choice(assembly, "assembly", ASSEMBLIES)
    check_int(baseplate_studs, "baseplate_studs", 1, 48)
    check_int(n_bricks, "n_bricks", 0, min(64, baseplate_studs**2))
    check_int(seed, "seed", 0, 2**32 - 1)
    params = dict(studs_x=studs_x, studs_y=studs_y, kind=kind, assembly=assembly, baseplate_studs=baseplate_studs,
                  n_bricks=n_bricks, seed=seed)

    if assembly == "single":
        height = KINDS[kind] + STUD_HEIGHT_MM
        parts = _piece(studs_x, studs_y, KINDS[kind], (0.0, 0.0), -height / 2)
        return Phantom.build("lego", parts, params)

    layout = _layout(baseplate_studs, n_bricks, np.random.default_rng(seed))
    top = max([KINDS[k] for k, *_ in layout], default=0.0)
    height = PLATE_HEIGHT_MM + top + STUD_HEIGHT_MM
    z_base = -height / 2
    plate = _piece(baseplate_studs, baseplate_studs, PLATE_HEIGHT_MM, (0.0, 0.0), z_base, body_label="baseplate")
    # the baseplate's studs go last: the pieces' cavities (void) would otherwise erase the studs they hold
    studs = [p for p in plate if p.label == "stud"]
    parts = [p for p in plate if p.label != "stud"]
    half = (baseplate_studs - 1) / 2
    for piece_kind, nx, ny, ix, iy in layout:
        centre = ((ix + (nx - 1) / 2 - half) * PITCH_MM, (iy + (ny - 1) / 2 - half) * PITCH_MM)
        parts += _piece(nx, ny, KINDS[piece_kind], centre, z_base + PLATE_HEIGHT_MM)
    return Phantom.build("lego", parts + studs, params)


def _piece(nx: int, ny: int, body_height: float, centre: tuple[float, float], z_base: float,
           body_label: str = "body") -> list[Part]:
    """Parts of one nx × ny stud piece whose body spans z_base … z_base + body_height, centred at (x, y)."""
    cx, cy = centre
    size_x, size_y = nx * PITCH_MM - PLAY_MM, ny * PITCH_MM - PLAY_MM
    cavity_h = body_height - TOP_THICKNESS_MM
    z_cavity = z_base + cavity_h / 2
    parts = [place(Box((size_x, size_y, body_height)), MATERIAL, body_label, at=(cx, cy, z_base + body_height / 2)),
             place(Box((size_x - 2 * WALL_THICKNESS_MM, size_y - 2 * WALL_THICKNESS_MM, cavity_h)), "void",
                   at=(cx, cy, z_cavity))]
    # underside: hollow tubes between 2 × 2 groups of studs, or solid pins between the studs of a 1-wide piece
    if nx >= 2 and ny >= 2:
        for i in range(nx - 1):
            for j in range(ny - 1):
                at = (cx + (i - (nx - 2) / 2) * PITCH_MM, cy + (j - (ny - 2) / 2) * PITCH_MM, z_cavity)
                parts.append(place(Cylinder(TUBE_OUTER_DIAMETER_MM / 2, cavity_h), MATERIAL, "tube", at=at))
                parts.append(place(Cylinder(TUBE_INNER_DIAMETER_MM / 2, cavity_h), "void", at=at))
    elif max(nx, ny) >= 2:
        n = max(nx, ny)
        for i in range(n - 1):
            off = (i - (n - 2) / 2) * PITCH_MM
            at = (cx + off, cy, z_cavity) if nx >= ny else (cx, cy + off, z_cavity)
            parts.append(place(Cylinder(PIN_DIAMETER_MM / 2, cavity_h), MATERIAL, "tube", at=at))
    stud = Cylinder(STUD_DIAMETER_MM / 2, STUD_HEIGHT_MM)
    z_stud = z_base + body_height + STUD_HEIGHT_MM / 2
    for i in range(nx):
        for j in range(ny):
            at = (cx + (i - (nx - 1) / 2) * PITCH_MM, cy + (j - (ny - 1) / 2) * PITCH_MM, z_stud)
            parts.append(place(stud, MATERIAL, "stud", at=at))
    return parts


def _layout(n: int, count: int, rng: np.random.Generator) -> list[tuple[str, int, int, int, int]]:
    """``count`` non-overlapping pieces (kind, studs_x, studs_y, ix, iy) on an n × n stud grid, (ix, iy) being
    the grid index of a piece's lowest-x, lowest-y stud. A piece is accepted only if enough free studs remain
    for the pieces still to come, so 1 × 1 always fits and any count ≤ n² succeeds."""
    free = np.ones((n, n), bool)                 # [iy, ix]
    layout = []
    for k in range(count):
        still_to_come = count - k - 1
        piece_kind = ("brick", "plate")[int(rng.integers(2))]
        for idx in list(rng.permutation(len(CATALOGUE))) + [0]:          # random sizes, then 1 × 1
            nx, ny = CATALOGUE[idx]
            if rng.random() < 0.5:
                nx, ny = ny, nx
            if nx > n or ny > n or free.sum() - nx * ny < still_to_come:
                continue
            window = np.lib.stride_tricks.sliding_window_view(free, (ny, nx)).all(axis=(2, 3))
            spots = np.argwhere(window)                                  # (iy, ix)
            if len(spots):
                iy, ix = (int(v) for v in spots[rng.integers(len(spots))])
                free[iy:iy + ny, ix:ix + nx] = False
                layout.append((piece_kind, nx, ny, ix, iy))
                break
    return layout

"""Solid-state-battery pellet: a Li₆PS₅Cl pellet between lithium electrodes in a pouch, with seeded cracks (mm).

The lab CL demonstration of the background review scans a FAST-sintered LPSCl pellet sealed under vacuum in a
150 mm × 90 mm × 0.2 mm pouch. Cracks in Li/Li₆PS₅Cl/Li cells follow Ning et al. (Nat. Mater. 20, 1121, 2021):
plating starts *spallation* cracks, conical "pothole" cracks under the plated electrode, mostly at its edge;
*transverse* cracks then run through the thickness from one electrode to the other, and lithium fills cracks
from behind their fronts. Everything lies flat in the sample xy plane (z = rotation axis), centred on the origin.

Scene, in painter's order (later parts replace earlier ones):

- ``pouch``: two flat laminate walls (``pouch_laminate``) of ``pouch_size_mm`` (x, y), each
  ``pouch_thickness_mm / 2`` thick, lying on the electrodes; the space between them is vacuum;
- ``pellet``: ``Cylinder`` of ``diameter_mm`` × ``thickness_mm``, material ``li6ps5cl_pellet`` (85 % dense:
  the sintered porosity is homogenised into the material);
- ``pore``: ``n_pores`` resolved spherical voids (radius ``pore_radius_um``, log-uniform) fully inside the pellet,
  so detection tasks have something small to find;
- ``crack_<i>``: the crack network (void, or lithium for a ``li_filled_fraction`` of the cracks);
- ``electrode``: lithium discs of ``electrode_diameter_mm`` × ``lithium_thickness_mm`` on both faces.

Crack model (all in the sample frame; ground truth in ``phantom.params["cracks"]``):

- **transverse** (``n_transverse``): a vertical slab through the whole pellet thickness, a ``Prism`` whose outline
  is a thin hexagon of width = aperture, pointed at both tips (the tips close over the last 20 % of the length
  at each end). Centre uniform over the inner 80 % of the pellet radius, in-plane direction uniform, length
  uniform in ``crack_length_mm`` then clipped to the pellet (chord of the disc). Normal in-plane (n_z = 0).
- **spallation** (``n_spallation``): part of a conical pothole under the top or bottom electrode, centred on the
  electrode rim: the cone opens towards that pellet face (surface radius 0.3–0.8 × thickness, depth ≤ 0.6 ×
  thickness), its surface inclined at ``spallation_angle_deg`` (uniform) to the pellet plane, over an azimuthal
  arc of 90°–240°. It is built from planar facets (thin ``Prism`` trapezoids, one per ≤ 30° of arc) whose
  mid-lines are tangent to the cone, clipped to the pellet faces by half-space cuts. Its ``normal`` is the
  cone normal at the middle of the arc (|n_z| = cos(inclination)); ``facet_normals`` lists all.
- **branch**: every transverse or spallation crack, with probability ``branching``, gets one child: a transverse
  (through-thickness) crack starting at one tip of a transverse parent, deflected by ±20°–60° from it, or at the
  outer rim of a spallation's arc, deflected by up to ±45° from the outward radial direction; length 0.3–0.7 ×
  a length drawn from ``crack_length_mm``, clipped to the pellet (no branch if the clipped length is below
  0.05 mm in every tried direction). Children do not branch again.

Apertures are log-uniform in ``aperture_um``. ``round(li_filled_fraction × n_cracks)`` cracks, chosen at
random, are lithium (``filled="lithium"``), the others void. Independent random streams (``numpy`` ``SeedSequence``
children of ``seed``) drive transverse cracks, spallations, branches, pores and filling, so e.g. changing
``n_pores`` does not move the cracks.

``params["cracks"]``: one dict per crack, in label order: ``label``, ``kind`` (``"transverse"``,
``"spallation"``, ``"branch"``), ``center_mm`` (x, y, z; area centroid of the crack surface), ``normal`` (unit,
sample frame, sign canonical: n_z ≥ 0, in-plane normals with n_y ≥ 0), ``aperture_mm``, ``length_mm``
(tip-to-tip length; for a spallation the arc length along its surface rim), ``filled`` (``"void"``,
``"lithium"``), ``parent`` (the parent's label for a branch, else ``None``), and per kind: ``endpoints_mm``
(transverse, branch: the two tips (x, y, z) at mid-thickness; the crack spans the full thickness) or
``apex_axis_mm`` (the pothole axis (x, y) and its surface z), ``surface_radius_mm``, ``depth_mm``,
``inclination_deg``, ``arc_deg``, ``side`` (``"top"`` = +z face, ``"bottom"``), ``facet_normals``
(spallation). ``params["pores"]``: ``{"center_mm", "radius_mm"}`` per pore.

Cost: every crack, facet and pore is one part; an exact ray crosses only the few it meets (limit ~64 per ray).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lamino.phantoms.params import check_fraction, check_int, check_length
from lamino.phantoms.scene import Part, Phantom, place
from lamino.phantoms.shapes import Box, Cylinder, Ellipsoid, Prism

PELLET = "li6ps5cl_pellet"
LITHIUM = "lithium"
LAMINATE = "pouch_laminate"
VOID = "void"

_TIP_TAPER = 0.2               # fraction of the length over which a transverse crack closes at each tip
_MIN_CRACK_MM = 0.05           # shortest branch kept (mm)
_MAX_FACET_DEG = 30.0          # a spallation facet spans at most this much arc
_ARC_DEG = (90.0, 240.0)       # spallation arc range
_DEFLECT_DEG = (20.0, 60.0)    # branch deflection from a transverse parent
_SPALL_BRANCH_DEG = 45.0       # branch deflection from a spallation's outward radial direction


def ssb_pellet(diameter_mm: float = 10.0, thickness_mm: float = 0.5, electrode_diameter_mm: float = 8.0,
               lithium_thickness_mm: float = 0.05, pouch_size_mm: Sequence[float] | None = (150.0, 90.0),
               pouch_thickness_mm: float = 0.2, n_transverse: int = 6, n_spallation: int = 2,
               branching: float = 0.3, aperture_um: Sequence[float] = (0.5, 50.0),
               crack_length_mm: Sequence[float] = (0.5, 4.0), spallation_angle_deg: Sequence[float] = (30.0, 60.0),
               li_filled_fraction: float = 0.0, n_pores: int = 40, pore_radius_um: Sequence[float] = (2.0, 15.0),
               seed: int = 0) -> Phantom:
    """A Li₆PS₅Cl pellet (``diameter_mm`` × ``thickness_mm``, 85 % dense) between lithium electrodes, vacuum-sealed
    in a pouch, with a seeded crack network and resolved pores; see the module docstring for the model.

    ``pouch_size_mm`` = (x, y) of the pouch (``None``: no pouch); ``pouch_thickness_mm`` is the laminate of both
    walls together (the published 150 × 90 × 0.2 mm pouch: 2 × 0.1 mm). ``aperture_um``, ``crack_length_mm``,
    ``spallation_angle_deg`` and ``pore_radius_um`` are (min, max) ranges. Labels: ``pouch``, ``pellet``,
    ``pore``, ``crack_<i>``, ``electrode``. Ground truth: ``params["cracks"]``, ``params["pores"]``.
    """
    diameter_mm = check_length(diameter_mm, "diameter_mm", 0.2, 1000.0)
    thickness_mm = check_length(thickness_mm, "thickness_mm", 0.01, 100.0)
    electrode_diameter_mm = check_length(electrode_diameter_mm, "electrode_diameter_mm", 0.01, diameter_mm)
    lithium_thickness_mm = check_length(lithium_thickness_mm, "lithium_thickness_mm", 1e-4, 10.0)
    if pouch_size_mm is not None:
        pouch_size_mm = _pair(pouch_size_mm, "pouch_size_mm", diameter_mm, 1e4, "mm", ordered=False)
        pouch_thickness_mm = check_length(pouch_thickness_mm, "pouch_thickness_mm", 1e-3, 10.0)
    n_transverse = check_int(n_transverse, "n_transverse", 0, 64)
    n_spallation = check_int(n_spallation, "n_spallation", 0, 16)
    branching = check_fraction(branching, "branching")
    aperture_um = _pair(aperture_um, "aperture_um", 0.01, 200.0, "µm")
    crack_length_mm = _pair(crack_length_mm, "crack_length_mm", 0.01, diameter_mm, "mm")
    spallation_angle_deg = _pair(spallation_angle_deg, "spallation_angle_deg", 10.0, 80.0, "degrees")
    li_filled_fraction = check_fraction(li_filled_fraction, "li_filled_fraction")
    n_pores = check_int(n_pores, "n_pores", 0, 100)
    pore_radius_um = _pair(pore_radius_um, "pore_radius_um", 0.1, 0.25e3 * thickness_mm, "µm")
    seed = check_int(seed, "seed", 0, 2**63 - 1)

    radius, h = diameter_mm / 2, thickness_mm
    rng_t, rng_s, rng_b, rng_p, rng_f = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5))

    def aperture(rng):
        lo, hi = (a * 1e-3 for a in aperture_um)
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    cracks: list[dict] = []
    for _ in range(n_transverse):
        r = 0.8 * radius * math.sqrt(rng_t.uniform())
        phi = rng_t.uniform(0.0, 2 * math.pi)
        psi = rng_t.uniform(0.0, math.pi)
        length = rng_t.uniform(*crack_length_mm)
        a = aperture(rng_t)
        centre = np.array([r * math.cos(phi), r * math.sin(phi)])
        u = np.array([math.cos(psi), math.sin(psi)])
        s0, s1 = _clip_chord(centre, u, -length / 2, length / 2, radius - a)
        cracks.append(_transverse("transverse", centre + s0 * u, centre + s1 * u, a))

    for _ in range(n_spallation):
        cracks.append(_spallation(rng_s, radius, h, electrode_diameter_mm / 2, spallation_angle_deg, aperture(rng_s)))

    children = []
    for parent_index, parent in enumerate(cracks):
        if rng_b.uniform() >= branching:
            continue
        length = rng_b.uniform(0.3, 0.7) * rng_b.uniform(*crack_length_mm)
        a = aperture(rng_b)
        options = []
        if parent["kind"] == "spallation":
            cx, cy, _ = parent["apex_axis_mm"]
            mid = math.radians(parent["azimuth_deg"])
            start = np.array([cx, cy]) + parent["_rim_radius"] * np.array([math.cos(mid), math.sin(mid)])
            turn = rng_b.uniform(-_SPALL_BRANCH_DEG, _SPALL_BRANCH_DEG)
            options = [(start, math.degrees(mid) + turn), (start, math.degrees(mid) - turn)]
        else:
            ends = [np.asarray(e[:2]) for e in parent["endpoints_mm"]]
            turn = rng_b.uniform(*_DEFLECT_DEG) * rng_b.choice((-1.0, 1.0))
            order = rng_b.permutation(2)
            for k in order:
                out = ends[k] - ends[1 - k]
                base = math.degrees(math.atan2(out[1], out[0]))
                options += [(ends[k], base + turn), (ends[k], base - turn)]
        for start, angle in options:
            u = np.array([math.cos(math.radians(angle)), math.sin(math.radians(angle))])
            if np.hypot(*start) > radius - a:                          # keep the tip inside the clipping disc
                start = start * (radius - a) / np.hypot(*start)
            s0, s1 = _clip_chord(start, u, 0.0, length, radius - a)
            if s1 - s0 >= _MIN_CRACK_MM:
                child = _transverse("branch", start + s0 * u, start + s1 * u, a)
                child["_parent_index"] = parent_index
                children.append(child)
                break
    cracks += children

    n_filled = int(round(li_filled_fraction * len(cracks)))
    filled = set(rng_f.permutation(len(cracks))[:n_filled].tolist())
    for i, crack in enumerate(cracks):
        crack["label"] = f"crack_{i}"
        crack["filled"] = LITHIUM if i in filled else VOID
    for crack in cracks:
        parent = crack.pop("_parent_index", None)
        crack["parent"] = cracks[parent]["label"] if parent is not None else None

    pores = []
    for _ in range(n_pores):
        pr = 1e-3 * float(math.exp(rng_p.uniform(*(math.log(x) for x in pore_radius_um))))
        rr = (radius - pr) * math.sqrt(rng_p.uniform())
        phi = rng_p.uniform(0.0, 2 * math.pi)
        z = rng_p.uniform(-h / 2 + pr, h / 2 - pr)
        pores.append({"center_mm": [rr * math.cos(phi), rr * math.sin(phi), z], "radius_mm": pr})

    # ------------------------------------------------------------------------------------------ parts
    parts: list[Part] = []
    z_li = h / 2 + lithium_thickness_mm / 2
    if pouch_size_mm is not None:
        wall = pouch_thickness_mm / 2
        z_wall = h / 2 + lithium_thickness_mm + wall / 2
        for sign in (-1.0, 1.0):
            parts.append(place(Box((*pouch_size_mm, wall)), LAMINATE, "pouch", at=(0.0, 0.0, sign * z_wall)))
    parts.append(place(Cylinder(radius, h), PELLET, "pellet"))
    for pore in pores:
        r = pore["radius_mm"]
        parts.append(place(Ellipsoid((r, r, r)), VOID, "pore", at=pore["center_mm"]))
    for crack in cracks:
        parts += crack.pop("_parts_fn")(crack["filled"], crack["label"], h)
    for sign in (-1.0, 1.0):
        parts.append(place(Cylinder(electrode_diameter_mm / 2, lithium_thickness_mm), LITHIUM, "electrode",
                           at=(0.0, 0.0, sign * z_li)))
    for crack in cracks:
        crack.pop("_rim_radius", None)

    params = dict(diameter_mm=diameter_mm, thickness_mm=thickness_mm, electrode_diameter_mm=electrode_diameter_mm,
                  lithium_thickness_mm=lithium_thickness_mm, pouch_size_mm=pouch_size_mm,
                  pouch_thickness_mm=pouch_thickness_mm if pouch_size_mm is not None else 0.0,
                  n_transverse=n_transverse, n_spallation=n_spallation, branching=branching,
                  aperture_um=aperture_um, crack_length_mm=crack_length_mm,
                  spallation_angle_deg=spallation_angle_deg, li_filled_fraction=li_filled_fraction,
                  n_pores=n_pores, pore_radius_um=pore_radius_um, seed=seed,
                  n_branches=len(children), cracks=cracks, pores=pores)
    return Phantom.build("ssb_pellet", parts, params)


# ---------------------------------------------------------------------------------------------- helpers
def _pair(value, name: str, lo: float, hi: float, unit: str, ordered: bool = True) -> tuple[float, float]:
    """Two finite numbers within [lo, hi]; (min, max) unless ``ordered`` is False."""
    try:
        a, b = (float(x) for x in value)
    except (TypeError, ValueError):
        a = b = math.nan
    ok = all(math.isfinite(x) and lo <= x <= hi for x in (a, b)) and (a <= b or not ordered)
    if not ok:
        what = "(min, max) with min ≤ max" if ordered else "two numbers"
        raise ValueError(f"{name}={value!r} is not allowed: give {what}, each from {lo:g} to {hi:g} {unit}")
    return a, b


def _clip_chord(p: np.ndarray, u: np.ndarray, s0: float, s1: float, r: float) -> tuple[float, float]:
    """[s0, s1] clipped to where p + s·u (unit u, 2-D) lies in the disc of radius r about the origin."""
    b = float(p @ u)
    disc = b * b - float(p @ p) + r * r
    if disc <= 0:
        return 0.0, 0.0
    root = math.sqrt(disc)
    lo, hi = max(s0, -b - root), min(s1, -b + root)
    return (lo, hi) if hi > lo else (0.0, 0.0)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def _canonical(n: np.ndarray) -> np.ndarray:
    """Sign convention for crack normals: n_z > 0, or n_y > 0 in-plane, or n_x > 0."""
    for c in (n[2], n[1], n[0]):
        if abs(c) > 1e-12:
            return n if c > 0 else -n
    return n


def _floats(v) -> list[float]:
    return [float(x) + 0.0 for x in v]          # + 0.0: no negative zeros


def _transverse(kind: str, a: np.ndarray, b: np.ndarray, aperture: float) -> dict:
    """A through-thickness crack from tip a to tip b (x, y mm): a thin hexagonal prism, pointed at both tips."""
    length = float(np.linalg.norm(b - a))
    u = (b - a) / length
    n = np.array([-u[1], u[0]])
    half = aperture / 2
    taper = _TIP_TAPER * length
    outline = (a, a + taper * u + half * n, b - taper * u + half * n, b, b - taper * u - half * n,
               a + taper * u - half * n)

    def parts_fn(material: str, label: str, h: float) -> list[Part]:
        return [place(Prism(tuple(tuple(float(c) for c in p) for p in outline), h), material, label)]

    return {"kind": kind, "center_mm": _floats([*(a + b) / 2, 0.0]),
            "normal": _floats(_canonical(np.array([n[0], n[1], 0.0]))), "aperture_mm": aperture,
            "length_mm": length, "endpoints_mm": [_floats([*a, 0.0]), _floats([*b, 0.0])], "_parts_fn": parts_fn}


def _spallation(rng, radius: float, h: float, r_electrode: float, angle_deg: tuple[float, float],
                aperture: float) -> dict:
    """A conical pothole crack under one electrode's rim, from planar facets tangent to the cone."""
    side = 1.0 if rng.uniform() < 0.5 else -1.0               # +1: under the top (+z) electrode
    beta = math.radians(rng.uniform(*angle_deg))
    psi = rng.uniform(0.0, 2 * math.pi)                       # where on the electrode rim
    arc = math.radians(rng.uniform(*_ARC_DEG))
    mid = rng.uniform(0.0, 2 * math.pi)                       # arc middle, about the pothole axis
    r_top = rng.uniform(0.3, 0.8) * h
    r_bottom = r_top * rng.uniform(0.15, 0.4)
    r_bottom = max(r_bottom, r_top - 0.6 * h / math.tan(beta))
    m = max(2, math.ceil(math.degrees(arc) / _MAX_FACET_DEG))
    step = arc / m
    stretch = 1.0 / math.cos(step / 2)                        # facet mid-lines tangent to the cone
    rim = r_top * stretch
    room = radius - aperture - rim                            # keep the whole pothole inside the pellet
    if room <= 0:                                             # a tiny pellet: shrink the pothole
        shrink = 0.9 * (radius - aperture) / rim
        rim, r_top, r_bottom = rim * shrink, r_top * shrink, r_bottom * shrink
        room = radius - aperture - rim
    rho = min(max(r_electrode + rng.uniform(-0.5, 0.5) * r_top, 0.0), room)
    axis = rho * np.array([math.cos(psi), math.sin(psi)])
    depth = (r_top - r_bottom) * math.tan(beta)
    z_top, z_bottom = side * h / 2, side * (h / 2 - depth)

    def point(r: float, phi: float, z: float) -> np.ndarray:
        return np.array([axis[0] + r * math.cos(phi), axis[1] + r * math.sin(phi), z])

    facets = []
    for j in range(m):
        p0, p1 = mid - arc / 2 + j * step, mid - arc / 2 + (j + 1) * step
        quad = [point(r_top * stretch, p0, z_top), point(r_top * stretch, p1, z_top),
                point(r_bottom * stretch, p1, z_bottom), point(r_bottom * stretch, p0, z_bottom)]
        facets.append(quad)

    def frame(quad):
        origin = np.mean(quad, axis=0)
        ex = _unit(quad[1] - quad[0])
        down = (quad[2] + quad[3]) / 2 - (quad[0] + quad[1]) / 2
        ez = _canonical(_unit(np.cross(ex, down)))
        ey = np.cross(ez, ex)
        return origin, np.stack([ex, ey, ez], axis=1)

    frames = [frame(q) for q in facets]
    normal_mid = _canonical(_unit(np.array([-side * math.sin(beta) * math.cos(mid),
                                            -side * math.sin(beta) * math.sin(mid), math.cos(beta)])))
    areas = [0.5 * (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) * np.linalg.norm(
        (q[2] + q[3]) / 2 - (q[0] + q[1]) / 2) for q in facets]
    centroids = [_trapezoid_centroid(q) for q in facets]
    centre = np.average(centroids, axis=0, weights=areas)

    def parts_fn(material: str, label: str, h: float) -> list[Part]:
        out = []
        for quad, (origin, rot) in zip(facets, frames, strict=True):
            local = [tuple(float(c) for c in (p - origin) @ rot[:, :2]) for p in quad]
            shape = Prism(tuple(local), aperture)
            for sign in (1.0, -1.0):                           # clip to the pellet faces: ±z ≤ h/2
                nw = np.array([0.0, 0.0, sign])
                shape = shape.cut(rot.T @ nw, h / 2 - float(nw @ origin))
            out.append(place(shape, material, label, at=tuple(origin), rotate_deg=_euler_xyz_deg(rot)))
        return out

    return {"kind": "spallation", "center_mm": _floats(centre), "normal": _floats(normal_mid),
            "aperture_mm": aperture, "length_mm": float(rim * 2 * math.sin(step / 2) * m),
            "apex_axis_mm": _floats([*axis, z_top]), "surface_radius_mm": float(r_top),
            "depth_mm": float(depth), "inclination_deg": math.degrees(beta), "arc_deg": math.degrees(arc),
            "azimuth_deg": math.degrees(mid) % 360.0, "side": "top" if side > 0 else "bottom",
            "facet_normals": [_floats(rot[:, 2]) for _, rot in frames], "_rim_radius": float(rim),
            "_parts_fn": parts_fn}


def _trapezoid_centroid(q: Sequence[np.ndarray]) -> np.ndarray:
    """Area centroid of a planar convex quadrilateral (two triangles)."""
    t1, t2 = (q[0], q[1], q[2]), (q[0], q[2], q[3])
    a1 = np.linalg.norm(np.cross(t1[1] - t1[0], t1[2] - t1[0]))
    a2 = np.linalg.norm(np.cross(t2[1] - t2[0], t2[2] - t2[0]))
    return (a1 * np.mean(t1, axis=0) + a2 * np.mean(t2, axis=0)) / (a1 + a2)


def _euler_xyz_deg(rot: np.ndarray) -> tuple[float, float, float]:
    """(about x, then y, then z) degrees with rot = R_z · R_y · R_x, as :func:`place` composes them."""
    sy = -float(rot[2, 0])
    if abs(sy) < 1 - 1e-12:
        ry = math.asin(sy)
        rx = math.atan2(rot[2, 1], rot[2, 2])
        rz = math.atan2(rot[1, 0], rot[0, 0])
    else:                                                     # gimbal lock: put everything in rx
        ry = math.copysign(math.pi / 2, sy)
        rz = 0.0
        rx = math.atan2(-rot[1, 2], rot[1, 1])
    return math.degrees(rx), math.degrees(ry), math.degrees(rz)

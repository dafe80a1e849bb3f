"""Li-ion pouch cell: a stacked NMC811 | graphite cell sealed in a laminate pouch, lying flat in the xy plane (mm).

Layout (sample frame, centred on the origin; x = electrode width, y = electrode length, z = stacking direction,
which is the rotation axis, so the electrode sheets lie in the plane a laminography scan sees best):

- ``n_units`` repeat units stacked bottom to top along +z, each
  ``[Al | cathode | separator | anode | Cu | anode | separator | cathode]``, closed on top by one more Al foil
  so that every cathode coating sits on a current collector (the two outermost cathodes are single-sided, every
  cathode faces an anode through a separator). Stack height ``n_units · unit + al_foil_mm``, with
  ``unit = al_foil_mm + 2·cathode_mm + 2·separator_mm + 2·anode_mm + cu_foil_mm`` (0.372 mm by default).
- Lateral sizes: cathode coating and Al foil ``width_mm × length_mm``; anode coating and Cu foil larger by
  ``overhang_mm`` on every edge; separators larger than the anode by ``separator_overhang_mm`` on every edge.
- Tabs: every Al foil continues at −y, every Cu foil at +y, as a strip ``tab_width_mm`` wide (centred in x) of
  the foil's thickness, to ``tab_length_mm`` beyond the separator edge. The tab bundle is idealised as flat,
  parallel foil strips (no gathering, weld or lead tab, no tab sealant film).
- Pouch: the stack touches the top and bottom laminate sheets (vacuum-sealed); laterally it is surrounded by a
  free margin ``gap_mm`` filled with **liquid electrolyte** ("electrolyte", excess electrolyte wetting the stack;
  chosen over "separator" because that space holds no membrane), then a laminate wall. Everything inside the
  pouch that no layer covers (the overhang margins beside the cathodes and foils, the gap) is electrolyte; that
  fill has no label. A sealed flange, two laminate sheets (``2·laminate_mm`` thick) ``seal_mm`` wide, runs round
  the pouch at mid-height (``seal_mm=0`` leaves it out). Total thickness
  ``2·laminate_mm + n_units·unit + al_foil_mm``.
- Optional microstructure (``microstructure=True``): in a region of interest ``roi_mm × roi_mm`` laterally and the
  full coating thickness in z, at the centre of the topmost cathode coating, ``n_particles`` resolved NMC811
  spheres ("nmc811", label ``particle``), radius 3–14 µm from a log-normal law (median 5.5 µm, σ = 0.4,
  truncated by redrawing), **non-overlapping** (random sequential addition, largest first) and wholly inside the
  ROI; a ``cracked_fraction`` of them split by a ``crack_width_mm`` slab through the particle at a random
  orientation and offset (``crack_material``, label ``particle_crack``, confined to the particle); and ``n_pores``
  gas pores ("void", label ``pore``, radius 1.5–5 µm) that overlap neither particles nor each other. The matrix
  around them stays the homogenised ``nmc811_cathode`` coating, so the ROI blends into the layer (its mean
  density rises by about fill × (4.78 − 3.50) g/cm³, a few per cent), instead of showing a box-shaped step that
  a carbon-binder-only matrix would create.

Materials: ``aluminium``, ``copper``, ``nmc811_cathode``, ``graphite_anode``, ``separator``, ``electrolyte``,
``pouch_laminate`` (+ ``nmc811`` with the microstructure). Labels: ``al_cc``, ``cu_cc``, ``cathode``, ``anode``,
``separator``, ``tab``, ``laminate``, ``particle``, ``particle_crack``, ``pore``.

Cost: every layer is its own part and a ray through the cell crosses all of them, about ``8·n_units + 3`` parts
at the centre (27 for the default 3 units) plus the particles on its way. Exact path lengths cost O(k²) per ray
for k parts crossed and :meth:`Phantom.path_lengths` switches to a voxel projection above ``max_hits`` (64), so
exact rays suit up to about 7 units; large stacks (tens of units) are meant for voxel-based simulation
(:meth:`Phantom.voxelize` / :meth:`Phantom.attenuation`), with voxels thinner than the thinnest foil.
"""

from __future__ import annotations

import math

import numpy as np

from lamino.phantoms.params import check_choice, check_fraction, check_int, check_length
from lamino.phantoms.scene import Phantom, place
from lamino.phantoms.shapes import Box, Ellipsoid

PARTICLE_RADIUS_MM = (0.003, 0.014)
"""Range of the NMC secondary-particle radii (mm)."""
PARTICLE_MEDIAN_RADIUS_MM = 0.0055
PARTICLE_LOG_SIGMA = 0.4
PORE_RADIUS_MM = (0.0015, 0.005)
CRACK_MATERIALS = ("electrolyte", "void")


def unit_layers(al_foil_mm: float, cathode_mm: float, separator_mm: float, anode_mm: float,
                cu_foil_mm: float) -> list[tuple[str, str, float]]:
    """The repeat unit bottom to top as (label, material, thickness mm)."""
    return [("al_cc", "aluminium", al_foil_mm), ("cathode", "nmc811_cathode", cathode_mm),
            ("separator", "separator", separator_mm), ("anode", "graphite_anode", anode_mm),
            ("cu_cc", "copper", cu_foil_mm), ("anode", "graphite_anode", anode_mm),
            ("separator", "separator", separator_mm), ("cathode", "nmc811_cathode", cathode_mm)]


def pouch_cell(n_units: int = 3, width_mm: float = 20.0, length_mm: float = 30.0, al_foil_mm: float = 0.016,
               cathode_mm: float = 0.075, separator_mm: float = 0.012, anode_mm: float = 0.085,
               cu_foil_mm: float = 0.012, overhang_mm: float = 0.5, separator_overhang_mm: float = 0.5,
               laminate_mm: float = 0.115, gap_mm: float = 0.5, seal_mm: float = 2.0, tab_width_mm: float = 5.0,
               tab_length_mm: float = 5.0, microstructure: bool = False, roi_mm: float = 0.3,
               n_particles: int = 150, cracked_fraction: float = 0.2, crack_width_mm: float = 0.001,
               crack_material: str = "electrolyte", n_pores: int = 20, seed: int = 0) -> Phantom:
    """A stacked Li-ion pouch cell (NMC811 cathodes, graphite anodes) lying flat in the xy plane; see the module
    docstring for the layout. Lengths in mm; thickness defaults are typical of commercial cells (Al 16 µm,
    cathode coating 75 µm per side, separator 12 µm, anode coating 85 µm per side, Cu 12 µm, laminate 115 µm).
    ``seed`` draws the microstructure (unused without it; ``None`` means 0, so the phantom is always
    reproducible). Few units by default: see "Cost" in the module docstring before stacking many.
    """
    check_int(n_units, "n_units", 1, 200)
    width_mm = check_length(width_mm, "width_mm", 1.0, 500.0)
    length_mm = check_length(length_mm, "length_mm", 1.0, 500.0)
    al = check_length(al_foil_mm, "al_foil_mm", 1e-3, 0.1)
    cat = check_length(cathode_mm, "cathode_mm", 5e-3, 0.5)
    sep = check_length(separator_mm, "separator_mm", 2e-3, 0.1)
    an = check_length(anode_mm, "anode_mm", 5e-3, 0.5)
    cu = check_length(cu_foil_mm, "cu_foil_mm", 1e-3, 0.1)
    oh = check_length(overhang_mm, "overhang_mm", 0.0, 10.0)
    soh = check_length(separator_overhang_mm, "separator_overhang_mm", 0.0, 10.0)
    lam = check_length(laminate_mm, "laminate_mm", 0.01, 1.0)
    gap = check_length(gap_mm, "gap_mm", 0.0, 20.0)
    seal = check_length(seal_mm, "seal_mm", 0.0, 50.0)
    tab_w = check_length(tab_width_mm, "tab_width_mm", 0.1, width_mm)
    tab_len = check_length(tab_length_mm, "tab_length_mm", 0.1, 200.0)
    if tab_len <= gap + lam + seal:
        raise ValueError(f"tab_length_mm={tab_length_mm!r} is not allowed: the tabs must leave the pouch, give more "
                         f"than gap_mm + laminate_mm + seal_mm = {gap + lam + seal:g} mm")
    if not isinstance(microstructure, bool | np.bool_):
        raise ValueError(f"microstructure={microstructure!r} is not allowed: give True or False")
    microstructure = bool(microstructure)
    roi = check_length(roi_mm, "roi_mm", 0.03, min(width_mm, length_mm))
    check_int(n_particles, "n_particles", 0, 200)
    cracked = check_fraction(cracked_fraction, "cracked_fraction")
    crack_w = check_length(crack_width_mm, "crack_width_mm", 1e-5, 2e-3)
    check_choice(crack_material, "crack_material", CRACK_MATERIALS)
    check_int(n_pores, "n_pores", 0, 100)
    seed = 0 if seed is None else check_int(seed, "seed", 0, 2**63 - 1)
    if microstructure and cat < 2 * PARTICLE_RADIUS_MM[1]:
        raise ValueError(f"cathode_mm={cathode_mm!r} is not allowed with microstructure=True: give at least "
                         f"{2 * PARTICLE_RADIUS_MM[1]:g} mm so that the largest particles fit")

    layers = unit_layers(al, cat, sep, an, cu)
    unit = math.fsum(t for _, _, t in layers)
    stack = n_units * unit + al
    half = {"al_cc": (width_mm / 2, length_mm / 2), "cathode": (width_mm / 2, length_mm / 2),
            "anode": (width_mm / 2 + oh, length_mm / 2 + oh), "cu_cc": (width_mm / 2 + oh, length_mm / 2 + oh),
            "separator": (width_mm / 2 + oh + soh, length_mm / 2 + oh + soh)}
    sx, sy = half["separator"]                       # stack footprint (half sizes)
    ix, iy = sx + gap, sy + gap                      # pouch interior
    ex, ey = ix + lam, iy + lam                      # pouch outside

    parts = []
    if seal > 0:                                     # sealed flange round the pouch at mid-height
        for s in (-1.0, 1.0):
            parts.append(place(Box((seal, 2 * (ey + seal), 2 * lam)), "pouch_laminate", "laminate",
                               at=(s * (ex + seal / 2), 0.0, 0.0)))
            parts.append(place(Box((2 * ex, seal, 2 * lam)), "pouch_laminate", "laminate",
                               at=(0.0, s * (ey + seal / 2), 0.0)))
    parts.append(place(Box((2 * ex, 2 * ey, stack + 2 * lam)), "pouch_laminate", "laminate"))
    parts.append(place(Box((2 * ix, 2 * iy, stack)), "electrolyte"))

    foils = []                                       # (label, material, z centre, thickness) of every foil
    z = -stack / 2
    for label, material, t in layers * n_units + layers[:1]:
        hx, hy = half[label]
        parts.append(place(Box((2 * hx, 2 * hy, t)), material, label, at=(0.0, 0.0, z + t / 2)))
        if label in ("al_cc", "cu_cc"):
            foils.append((label, material, z + t / 2, t))
        z += t
    top_cathode = (stack / 2 - al - cat, stack / 2 - al)

    y_end = sy + tab_len                             # tab tips, measured from the centre
    for label, material, zc, t in foils:
        start = half[label][1]
        sign = -1.0 if label == "al_cc" else 1.0
        parts.append(place(Box((tab_w, y_end - start, t)), material, "tab",
                           at=(0.0, sign * (start + y_end) / 2, zc)))

    if microstructure:
        parts += _microstructure(roi, top_cathode, n_particles, cracked, crack_w, crack_material, n_pores, seed)
    params = dict(n_units=n_units, width_mm=width_mm, length_mm=length_mm, al_foil_mm=al, cathode_mm=cat,
                  separator_mm=sep, anode_mm=an, cu_foil_mm=cu, overhang_mm=oh, separator_overhang_mm=soh,
                  laminate_mm=lam, gap_mm=gap, seal_mm=seal, tab_width_mm=tab_w, tab_length_mm=tab_len,
                  microstructure=microstructure, roi_mm=roi, n_particles=n_particles,
                  cracked_fraction=cracked, crack_width_mm=crack_w, crack_material=crack_material, n_pores=n_pores,
                  seed=seed)
    return Phantom.build("pouch_cell", parts, params)


def _microstructure(roi: float, z_range: tuple[float, float], n_particles: int, cracked: float, crack_w: float,
                    crack_material: str, n_pores: int, seed: int) -> list:
    """Particles, cracks and pores in the box roi × roi × z_range centred laterally on the origin."""
    rng = np.random.default_rng(seed)
    lo = np.array([-roi / 2, -roi / 2, z_range[0]])
    hi = np.array([roi / 2, roi / 2, z_range[1]])
    radii = _truncated_lognormal(rng, n_particles)
    centres = _pack(rng, radii, lo, hi, np.zeros((0, 3)), np.zeros(0), "n_particles", roi)
    pore_r = np.sort(rng.uniform(*PORE_RADIUS_MM, n_pores))[::-1]
    pores = _pack(rng, pore_r, lo, hi, centres, radii, "n_pores", roi)
    parts = [place(Ellipsoid((r, r, r)), "nmc811", "particle", at=c) for c, r in zip(centres, radii, strict=True)]
    n_cracked = int(round(cracked * n_particles))
    for i in np.sort(rng.choice(n_particles, size=n_cracked, replace=False)):
        r = float(radii[i])
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        s = rng.uniform(-0.3, 0.3) * r                    # crack plane offset from the particle centre
        shape = Ellipsoid((r, r, r)).cut(normal, s + crack_w / 2).cut(-normal, -(s - crack_w / 2))
        parts.append(place(shape, crack_material, "particle_crack", at=centres[i]))
    parts += [place(Ellipsoid((r, r, r)), "void", "pore", at=c) for c, r in zip(pores, pore_r, strict=True)]
    return parts


def _truncated_lognormal(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` particle radii (mm), log-normal truncated to PARTICLE_RADIUS_MM by redrawing, largest first."""
    out = np.zeros(0)
    while len(out) < n:
        r = rng.lognormal(math.log(PARTICLE_MEDIAN_RADIUS_MM), PARTICLE_LOG_SIGMA, 2 * n)
        out = np.concatenate([out, r[(r >= PARTICLE_RADIUS_MM[0]) & (r <= PARTICLE_RADIUS_MM[1])]])
    return np.sort(out[:n])[::-1]


def _pack(rng: np.random.Generator, radii: np.ndarray, lo: np.ndarray, hi: np.ndarray, other_c: np.ndarray,
          other_r: np.ndarray, name: str, roi: float, tries: int = 64, batch: int = 256) -> np.ndarray:
    """Random sequential addition: centres of non-overlapping balls ``radii`` wholly inside [lo, hi], avoiding the
    balls (other_c, other_r) too."""
    c_all, r_all = list(other_c), list(other_r)
    out = []
    for r in radii:
        for _ in range(tries):
            cand = rng.uniform(lo + r, hi - r, size=(batch, 3))
            if c_all:
                dist = np.linalg.norm(cand[:, None, :] - np.asarray(c_all)[None], axis=-1)
                ok = np.all(dist >= r + np.asarray(r_all)[None], axis=1)
            else:
                ok = np.ones(batch, bool)
            if ok.any():
                c = cand[np.argmax(ok)]
                break
        else:
            raise ValueError(f"{name}={len(radii)} is not allowed with roi_mm={roi:g}: only {len(out)} fit without "
                             "overlap, give fewer or a larger roi_mm")
        out.append(c)
        c_all.append(c)
        r_all.append(r)
    return np.asarray(out).reshape(-1, 3)

"""Pouch-cell phantom: stack dimensions, materials, overhangs, exact path lengths and the particle microstructure."""

import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms.pouch_cell import PARTICLE_RADIUS_MM, pouch_cell

UNIT = 0.016 + 2 * 0.075 + 2 * 0.012 + 2 * 0.085 + 0.012            # default repeat unit, mm


def _total(n_units, laminate=0.115, al=0.016, unit=UNIT):
    """2 laminate sheets + n repeat units + the closing Al foil."""
    return 2 * laminate + n_units * unit + al


def _ray_along_z(x=0.0, y=0.0):
    """One parallel ray along +z through (x, y)."""
    return Geometry.from_vectors(np.array([[0, 0, 1, x, y, 0, 1, 0, 0, 0, 1, 0]], float), det_shape=(1, 1),
                                 beam="parallel")


def _column(ph, x, y, dz=0.004, d_lat=0.1):
    """Voxelised column (nz, 1, 1) through (x, y), spanning exactly the phantom's thickness."""
    (_, _, z0), (_, _, z1) = ph.bounds
    nz = int(round((z1 - z0) / dz))
    grid = VolumeGrid((nz, 1, 1), ((z1 - z0) / nz, d_lat, d_lat), center=((z0 + z1) / 2, y, x))
    return ph.voxelize(grid, supersample=2)


@pytest.fixture(scope="module")
def cell():
    return pouch_cell()


@pytest.fixture(scope="module")
def micro():
    return pouch_cell(microstructure=True, seed=3)


def test_default_cell_bounds_and_materials(cell):
    lo, hi = cell.bounds
    assert hi[2] - lo[2] == pytest.approx(_total(3), abs=1e-9)
    assert lo[2] == pytest.approx(-hi[2], abs=1e-12)                   # centred on z = 0
    # x: electrode 20 + 2 overhangs + 2 separator overhangs + 2 gaps + 2 laminate walls + 2 seals
    assert hi[0] - lo[0] == pytest.approx(20 + 2 * (0.5 + 0.5 + 0.5 + 0.115 + 2.0), abs=1e-9)
    # y: tabs reach 5 mm beyond the separator edge (30/2 + 0.5 + 0.5 + 5)
    assert hi[1] == pytest.approx(21.0, abs=1e-9) and lo[1] == pytest.approx(-21.0, abs=1e-9)
    assert set(cell.materials) == {"aluminium", "copper", "nmc811_cathode", "graphite_anode", "separator",
                                   "electrolyte", "pouch_laminate"}
    assert set(cell.label_names) == {"al_cc", "cu_cc", "cathode", "anode", "separator", "tab", "laminate"}
    per_label = {lab: sum(p.label == lab for p in cell.parts) for lab in cell.label_names}
    assert per_label["al_cc"] == 4 and per_label["cu_cc"] == 3 and per_label["cathode"] == 6
    assert per_label["anode"] == 6 and per_label["separator"] == 6 and per_label["tab"] == 7
    mats = {}
    for p in cell.parts:
        mats.setdefault(p.label, set()).add(p.material)
    assert mats == {"al_cc": {"aluminium"}, "cu_cc": {"copper"}, "cathode": {"nmc811_cathode"},
                    "anode": {"graphite_anode"}, "separator": {"separator"}, "tab": {"aluminium", "copper"},
                    "laminate": {"pouch_laminate"}, None: {"electrolyte"}}


@pytest.mark.parametrize("n_units, laminate, cathode", [(1, 0.115, 0.075), (2, 0.2, 0.06)])
def test_thickness_follows_parameters(n_units, laminate, cathode):
    ph = pouch_cell(n_units=n_units, laminate_mm=laminate, cathode_mm=cathode)
    lo, hi = ph.bounds
    unit = UNIT + 2 * (cathode - 0.075)
    assert hi[2] - lo[2] == pytest.approx(_total(n_units, laminate, unit=unit), abs=1e-9)


def test_copper_profile_has_one_peak_per_unit(cell):
    vox = _column(cell, 0.0, 0.0, d_lat=0.5)
    cu = vox.fractions["copper"][:, 0, 0]
    peaks = np.sum(np.diff((cu > 0.5).astype(int)) == 1) + int(cu[0] > 0.5)
    assert peaks == 3
    assert cu.mean() == pytest.approx(0.012 * 3 / _total(3), rel=0.1)
    al = vox.fractions["aluminium"][:, 0, 0]
    assert al.mean() == pytest.approx(0.016 * 4 / _total(3), rel=0.1)
    lam = vox.fractions["pouch_laminate"][:, 0, 0]
    assert lam[0] == 1.0 and lam[-1] == 1.0 and lam.mean() == pytest.approx(0.23 / _total(3), rel=0.1)
    # order from the bottom: laminate, Al, cathode, separator, anode, Cu
    first = [int(np.argmax(vox.fractions[m][:, 0, 0] > 0.5)) for m in
             ("pouch_laminate", "aluminium", "nmc811_cathode", "separator", "graphite_anode", "copper")]
    assert first == sorted(first) and len(set(first)) == 6


def test_anode_overhangs_cathode_and_separator_overhangs_anode(cell):
    inside = _column(cell, 9.75, 0.0).fractions                           # within the cathode (half width 10)
    assert inside["nmc811_cathode"].max() > 0.9
    overhang = _column(cell, 10.25, 0.0).fractions                         # cathode edge 10 < x < anode edge 10.5
    assert overhang["nmc811_cathode"].max() == 0.0 and overhang["aluminium"].max() == 0.0
    assert overhang["graphite_anode"].max() > 0.9 and overhang["copper"].max() > 0.9
    beyond = _column(cell, 10.75, 0.0).fractions                           # anode edge < x < separator edge 11
    assert beyond["graphite_anode"].max() == 0.0 and beyond["separator"].max() > 0.9
    margin = _column(cell, 11.25, 0.0).fractions                           # electrolyte gap inside the wall
    assert margin["separator"].max() == 0.0 and margin["electrolyte"].max() == 1.0
    # the same along y: cathode half length 15
    assert _column(cell, 0.0, 15.25).fractions["nmc811_cathode"].max() == 0.0
    assert _column(cell, 0.0, 15.25).fractions["graphite_anode"].max() > 0.9


def test_tabs_leave_the_pouch(cell):
    al_side = _column(cell, 0.0, -20.0).fractions                          # outside the seal, Al end
    assert al_side["aluminium"].sum() > 0 and al_side["copper"].max() == 0.0
    cu_side = _column(cell, 0.0, 20.0).fractions
    assert cu_side["copper"].sum() > 0 and cu_side["aluminium"].max() == 0.0
    assert _column(cell, 4.0, 20.0).fractions["copper"].max() == 0.0       # tabs are 5 mm wide


def test_exact_path_lengths_along_the_stack_axis(cell):
    pl = cell.path_lengths(_ray_along_z())
    assert pl["copper"][0, 0, 0] == pytest.approx(3 * 0.012, abs=1e-6)
    assert pl["aluminium"][0, 0, 0] == pytest.approx(4 * 0.016, abs=1e-6)
    assert pl["nmc811_cathode"][0, 0, 0] == pytest.approx(6 * 0.075, abs=1e-6)
    assert pl["graphite_anode"][0, 0, 0] == pytest.approx(6 * 0.085, abs=1e-6)
    assert pl["separator"][0, 0, 0] == pytest.approx(6 * 0.012, abs=1e-6)
    assert pl["pouch_laminate"][0, 0, 0] == pytest.approx(2 * 0.115, abs=1e-6)
    assert pl["electrolyte"][0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    # in the anode overhang: no cathode, no Al, electrolyte in their place
    pl = cell.path_lengths(_ray_along_z(10.25, 0.0))
    assert pl["nmc811_cathode"][0, 0, 0] == 0.0 and pl["aluminium"][0, 0, 0] == 0.0
    assert pl["electrolyte"][0, 0, 0] == pytest.approx(6 * 0.075 + 4 * 0.016, abs=1e-6)


def test_microstructure_particles(micro):
    parts = [p for p in micro.parts if p.label == "particle"]
    assert len(parts) == 150 and all(p.material == "nmc811" for p in parts)
    r = np.array([p.shape.semi_axes[0] for p in parts])
    assert r.min() >= PARTICLE_RADIUS_MM[0] and r.max() <= PARTICLE_RADIUS_MM[1] == 0.014
    c = np.array([p.translation for p in parts])
    dist = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c))
    assert np.all(dist >= (r[:, None] + r[None]) * (1 - 1e-12))          # non-overlapping
    z_top = _total(3) / 2 - 0.115 - 0.016                                  # top of the topmost cathode
    assert np.all(c[:, 2] - r >= z_top - 0.075 - 1e-12) and np.all(c[:, 2] + r <= z_top + 1e-12)
    assert np.all(np.abs(c[:, :2]) + r[:, None] <= 0.15 + 1e-12)
    cracks = [p for p in micro.parts if p.label == "particle_crack"]
    assert len(cracks) == 30 and all(p.material == "electrolyte" for p in cracks)
    pores = [p for p in micro.parts if p.label == "pore"]
    assert len(pores) == 20 and all(p.material == "void" for p in pores)
    assert "nmc811" in micro.materials


def test_microstructure_voxelised_roi(micro):
    z_top = _total(3) / 2 - 0.115 - 0.016
    grid = VolumeGrid((19, 75, 75), (0.075 / 19, 0.004, 0.004), center=(z_top - 0.0375, 0.0, 0.0))
    vox = micro.voxelize(grid, supersample=2)
    r = np.array([p.shape.semi_axes[0] for p in micro.parts if p.label == "particle"])
    expected = np.sum(4 / 3 * np.pi * r**3) / (0.3 * 0.3 * 0.075)
    nmc = vox.fractions["nmc811"].mean() + vox.fractions["electrolyte"].mean()   # cracks cut particles
    assert nmc == pytest.approx(expected, rel=0.1)
    assert vox.labels["particle"].any() and vox.label_fractions["particle_crack"].sum() > 0
    assert vox.labels["pore"].any()
    assert vox.fractions["aluminium"].max() == 0.0 and vox.fractions["separator"].max() == 0.0


def test_exact_ray_through_a_particle(micro):
    parts = [p for p in micro.parts if p.label in ("particle", "particle_crack")]
    cracked = {p.translation for p in parts if p.label == "particle_crack"}
    balls = [(np.array(p.translation), p.shape.semi_axes[0]) for p in parts if p.label == "particle"]
    def alone(i):                                                           # uncracked, its column meets no other
        c = balls[i][0]
        return tuple(c) not in cracked and all(j == i or np.hypot(*(b[0][:2] - c[:2])) >= b[1]
                                               for j, b in enumerate(balls))

    c, r = balls[next(i for i in range(len(balls)) if alone(i))]
    pl = micro.path_lengths(_ray_along_z(c[0], c[1]))
    assert pl["nmc811"][0, 0, 0] == pytest.approx(2 * r, abs=1e-5)


def test_microstructure_is_reproducible_and_seeded():
    def centres(seed):
        ph = pouch_cell(microstructure=True, n_particles=40, n_pores=5, seed=seed)
        return np.array([p.translation for p in ph.parts if p.label in ("particle", "pore")])

    np.testing.assert_array_equal(centres(1), centres(1))
    assert not np.allclose(centres(1), centres(2))
    assert pouch_cell(microstructure=False, seed=5).parts == pouch_cell(seed=6).parts


@pytest.mark.parametrize("kwargs, name", [
    ({"n_units": 0}, "n_units"), ({"n_units": 2.0}, "n_units"), ({"width_mm": -1}, "width_mm"),
    ({"cathode_mm": 0.0}, "cathode_mm"), ({"al_foil_mm": float("nan")}, "al_foil_mm"),
    ({"overhang_mm": -0.1}, "overhang_mm"), ({"laminate_mm": "thick"}, "laminate_mm"),
    ({"tab_width_mm": 25.0}, "tab_width_mm"), ({"tab_length_mm": 2.0}, "tab_length_mm"),
    ({"microstructure": 1}, "microstructure"), ({"roi_mm": 0.0}, "roi_mm"), ({"n_particles": 201}, "n_particles"),
    ({"cracked_fraction": 1.5}, "cracked_fraction"), ({"crack_material": "air"}, "crack_material"),
    ({"seed": -1}, "seed"), ({"microstructure": True, "cathode_mm": 0.02}, "cathode_mm"),
    ({"microstructure": True, "roi_mm": 0.04, "n_particles": 200}, "n_particles"),
])
def test_bad_parameters_are_rejected(kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        pouch_cell(**kwargs)
    assert "\n" not in str(err.value)

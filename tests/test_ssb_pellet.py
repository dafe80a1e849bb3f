"""ssb_pellet: a Li6PS5Cl pellet between lithium electrodes in a pouch, with a seeded, labelled crack network."""

import math

import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms.ssb_pellet import ssb_pellet

H, T_LI, D, D_LI, POUCH_WALLS = 0.5, 0.05, 10.0, 8.0, 0.2          # documented defaults (mm)


@pytest.fixture(scope="module")
def default():
    return ssb_pellet()


def _ray_z(points_xy):
    """Parallel rays along +z through the given (x, y) points, one view each."""
    vec = np.array([[0, 0, 1, x, y, 0, 1, 0, 0, 0, 1, 0] for x, y in points_xy], float)
    return Geometry.from_vectors(vec, det_shape=(1, 1), beam="parallel")


def _clear_point(ph, pad=0.05):
    """An (x, y) near the centre whose +z ray misses every crack and pore (their bounding boxes, padded)."""
    boxes = [p.world_bounds() for p in ph.parts if p.label and (p.label == "pore" or p.label.startswith("crack_"))]
    for r in np.arange(0.0, 3.0, 0.1):
        for phi in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            x, y = r * np.cos(phi), r * np.sin(phi)
            if all(not (lo[0] - pad <= x <= hi[0] + pad and lo[1] - pad <= y <= hi[1] + pad) for lo, hi in boxes):
                return x, y
    raise AssertionError("no clear ray found")


def test_default_builds_with_documented_materials_labels_and_bounds(default):
    ph = default
    assert ph.name == "ssb_pellet"
    assert set(ph.materials) == {"li6ps5cl_pellet", "lithium", "pouch_laminate"}
    labels = set(ph.label_names)
    assert {"pellet", "electrode", "pore", "pouch"} <= labels
    assert {f"crack_{i}" for i in range(len(ph.params["cracks"]))} == {x for x in labels if x.startswith("crack")}
    mats = {lab: {p.material for p in ph.parts if p.label == lab} for lab in ("pellet", "electrode", "pouch", "pore")}
    assert mats == {"pellet": {"li6ps5cl_pellet"}, "electrode": {"lithium"}, "pouch": {"pouch_laminate"},
                    "pore": {"void"}}
    zt = H / 2 + T_LI + POUCH_WALLS / 2
    np.testing.assert_allclose(ph.bounds, ((-75.0, -45.0, -zt), (75.0, 45.0, zt)), atol=1e-12)
    small = ssb_pellet(pouch_size_mm=(40.0, 30.0), pouch_thickness_mm=0.3, thickness_mm=1.0)
    zt = 0.5 + T_LI + 0.15
    np.testing.assert_allclose(small.bounds, ((-20.0, -15.0, -zt), (20.0, 15.0, zt)), atol=1e-12)
    bare = ssb_pellet(pouch_size_mm=None)
    assert "pouch" not in bare.label_names and "pouch_laminate" not in bare.materials
    np.testing.assert_allclose(bare.bounds, ((-5.0, -5.0, -H / 2 - T_LI), (5.0, 5.0, H / 2 + T_LI)), atol=1e-12)


def test_voxelised_pellet_and_electrode_dimensions(default):
    grid = VolumeGrid((70, 250, 250), voxel_size=(0.01, 0.05, 0.05))     # pellet region only: z ±0.35, xy ±6.25
    vox = default.voxelize(grid, supersample=1)
    pellet, electrode = vox.labels["pellet"], vox.labels["electrode"]
    dx, dz = 0.05, 0.01
    assert abs(np.any(pellet, axis=(0, 1)).sum() * dx - D) <= dx          # x extent
    assert abs(np.any(pellet, axis=(0, 2)).sum() * dx - D) <= dx          # y extent
    assert abs(pellet.sum(axis=0).max() * dz - H) <= dz                   # thickness (cracks and pores only remove)
    assert abs(np.any(electrode, axis=(0, 1)).sum() * dx - D_LI) <= dx
    top = electrode[grid.shape[0] // 2:]
    assert abs(top.sum(axis=0).max() * dz - T_LI) <= dz
    # materials where they belong: lithium only outside the pellet slab when no crack is filled
    z = grid.axis(0)
    assert vox.fractions["lithium"][np.abs(z) < H / 2 - dz].max() == 0.0
    assert vox.fractions["li6ps5cl_pellet"][np.abs(z) > H / 2 + dz].max() == 0.0


def test_exact_path_lengths_along_the_axis(default):
    x, y = _clear_point(default)
    lengths = default.path_lengths(_ray_z([(x, y)]))
    got = {m: float(v.ravel()[0]) for m, v in lengths.items()}
    assert got["li6ps5cl_pellet"] == pytest.approx(H, abs=1e-6)
    assert got["lithium"] == pytest.approx(2 * T_LI, abs=1e-6)
    assert got["pouch_laminate"] == pytest.approx(POUCH_WALLS, abs=1e-6)


def test_crack_list_counts_kinds_and_orientations():
    ph = ssb_pellet(n_transverse=5, n_spallation=3, branching=0.5, seed=3, n_pores=0)
    cracks = ph.params["cracks"]
    kinds = [c["kind"] for c in cracks]
    n_branch = kinds.count("branch")
    assert n_branch == ph.params["n_branches"]
    assert len(cracks) == 5 + 3 + n_branch
    assert kinds.count("transverse") == 5 and kinds.count("spallation") == 3
    assert [c["label"] for c in cracks] == [f"crack_{i}" for i in range(len(cracks))]
    for c in cracks:
        n = np.asarray(c["normal"])
        assert n.shape == (3,) and np.linalg.norm(n) == pytest.approx(1.0, abs=1e-12)
        assert c["filled"] == "void"
        if c["kind"] == "spallation":
            assert 0.3 < abs(n[2]) < 0.95
            assert 30.0 <= c["inclination_deg"] <= 60.0
            assert abs(n[2]) == pytest.approx(math.cos(math.radians(c["inclination_deg"])), abs=1e-9)
            facets = [p.matrix[:, 2] for p in ph.parts if p.label == c["label"]]   # facet planes = reported ones
            np.testing.assert_allclose(facets, c["facet_normals"], atol=1e-9)
            for fn in c["facet_normals"]:
                assert abs(fn[2]) == pytest.approx(abs(n[2]), abs=1e-9)
        else:
            assert abs(n[2]) < 0.2
            a, b = (np.asarray(e) for e in c["endpoints_mm"])
            assert abs(np.dot(b - a, n)) < 1e-9 and np.linalg.norm(b - a) == pytest.approx(c["length_mm"])
    assert ssb_pellet(branching=0.0).params["n_branches"] == 0
    full = ssb_pellet(branching=1.0, seed=5).params["cracks"]
    by_label = {c["label"]: c for c in full}
    children = [c for c in full if c["kind"] == "branch"]
    assert len(children) >= 6
    for child in children:
        parent = by_label[child["parent"]]
        assert parent["kind"] in ("transverse", "spallation")
        if parent["kind"] == "transverse":                   # a branch starts at one of its parent's tips
            start = np.asarray(child["endpoints_mm"][0])
            assert min(np.linalg.norm(start - np.asarray(e)) for e in parent["endpoints_mm"]) < 1e-9


def test_cracks_lie_inside_the_pellet():
    ph = ssb_pellet(n_transverse=8, n_spallation=4, branching=1.0, seed=7, n_pores=0)
    rng = np.random.default_rng(0)
    for part in ph.parts:
        if not part.label.startswith("crack_"):
            continue
        lo, hi = part.shape.bounds_local()
        q = rng.uniform(lo, hi, size=(4000, 3))
        q = q[np.asarray(part.shape.contains(q))]
        assert len(q) > 0
        p = q @ part.matrix.T + np.asarray(part.translation)
        assert np.hypot(p[:, 0], p[:, 1]).max() <= D / 2 + 1e-9
        assert np.abs(p[:, 2]).max() <= H / 2 + 1e-9


def test_apertures_within_range():
    for rng_um in ((1.0, 5.0), (0.5, 50.0), (20.0, 20.0)):
        cracks = ssb_pellet(aperture_um=rng_um, branching=0.7, n_pores=0).params["cracks"]
        ap = np.array([c["aperture_mm"] for c in cracks]) * 1e3
        assert np.all(ap >= rng_um[0] - 1e-9) and np.all(ap <= rng_um[1] + 1e-9)
    wide = np.array([c["aperture_mm"] for c in ssb_pellet(n_transverse=40, aperture_um=(0.5, 50.0)).params["cracks"]])
    assert wide.min() < 5e-3 and wide.max() > 5e-3                         # spread over the range, log-uniform


def test_reproducible_for_a_seed_and_different_for_another():
    a, b = ssb_pellet(seed=11), ssb_pellet(seed=11)
    assert a.params["cracks"] == b.params["cracks"] and a.params["pores"] == b.params["pores"]
    assert a.parts == b.parts
    assert ssb_pellet(seed=12).params["cracks"] != a.params["cracks"]
    # independent streams: the pore count does not move the cracks
    assert ssb_pellet(seed=11, n_pores=3).params["cracks"] == a.params["cracks"]
    pores = a.params["pores"]
    assert len(pores) == 40 and all(2e-3 <= p["radius_mm"] <= 15e-3 for p in pores)
    assert all(np.hypot(*p["center_mm"][:2]) + p["radius_mm"] <= D / 2 and abs(p["center_mm"][2]) + p["radius_mm"]
               <= H / 2 for p in pores)


def test_lithium_filled_cracks():
    ph = ssb_pellet(li_filled_fraction=1.0, n_pores=0, aperture_um=(20.0, 50.0), n_transverse=3, n_spallation=1)
    cracks = ph.params["cracks"]
    assert all(c["filled"] == "lithium" for c in cracks)
    assert {p.material for p in ph.parts if p.label.startswith("crack_")} == {"lithium"}
    half = ssb_pellet(li_filled_fraction=0.5, n_transverse=6, n_spallation=2, branching=0.0).params["cracks"]
    assert sum(c["filled"] == "lithium" for c in half) == 4
    assert {c["filled"] for c in ssb_pellet().params["cracks"]} == {"void"}
    # a ray along z through a transverse crack's mid-line crosses lithium over the whole pellet thickness
    tr = [c for c in cracks if c["kind"] == "transverse"]
    lengths = ph.path_lengths(_ray_z([c["center_mm"][:2] for c in tr]))
    for i, c in enumerate(tr):
        in_electrode = np.hypot(*c["center_mm"][:2]) < D_LI / 2
        assert float(lengths["lithium"][i, 0, 0]) == pytest.approx(H + 2 * T_LI * in_electrode, abs=1e-6)
        assert float(lengths["li6ps5cl_pellet"][i, 0, 0]) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"thickness_mm": -0.5}, "thickness_mm"),
    ({"diameter_mm": 0.0}, "diameter_mm"),
    ({"lithium_thickness_mm": -0.05}, "lithium_thickness_mm"),
    ({"electrode_diameter_mm": 12.0}, "electrode_diameter_mm"),
    ({"pouch_size_mm": (8.0, 90.0)}, "pouch_size_mm"),
    ({"n_transverse": -1}, "n_transverse"),
    ({"n_spallation": 2.5}, "n_spallation"),
    ({"branching": 1.5}, "branching"),
    ({"aperture_um": (50.0, 0.5)}, "aperture_um"),
    ({"aperture_um": (0.5,)}, "aperture_um"),
    ({"crack_length_mm": (3.0, 1.0)}, "crack_length_mm"),
    ({"spallation_angle_deg": (30.0, 95.0)}, "spallation_angle_deg"),
    ({"li_filled_fraction": 2.0}, "li_filled_fraction"),
    ({"n_pores": 101}, "n_pores"),
    ({"pore_radius_um": (15.0, 2.0)}, "pore_radius_um"),
    ({"seed": -1}, "seed"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name}="):
        ssb_pellet(**kwargs)

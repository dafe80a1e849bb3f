"""Phantom shapes and scenes: exact ray intervals, voxel fractions and the painter's rule vs closed forms."""

import math

import numpy as np
import pytest

from lamino import phantoms
from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms import Box, Cylinder, Ellipsoid, Phantom, Prism, place
from lamino.projector import Projector


def _chords(shape, o, d):
    t0, t1 = shape.intervals(np.asarray(o, float), np.asarray(d, float))
    return np.maximum(t1[0] - t0[0], 0) * np.linalg.norm(np.asarray(d, float), axis=-1)


def test_box_chords_match_the_slab_formula():
    box = Box((4.0, 6.0, 8.0))
    o = np.array([[0, 0, 0], [1, 1, -20], [10, 0, 0], [0, 0, 0]], float)
    d = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0]], float)
    np.testing.assert_allclose(_chords(box, o, d), [4.0, 8.0, 0.0, 4.0 * math.sqrt(2)], atol=1e-12)


def test_ball_cylinder_and_prism_chords():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 4.9, 50)                                  # impact parameters
    o = np.stack([np.zeros_like(b), -30 + 0 * b, b], -1)
    np.testing.assert_allclose(_chords(Ellipsoid((5.0, 5.0, 5.0)), o, [0, 1, 0]), 2 * np.sqrt(25 - b**2), rtol=1e-9)
    # ellipsoid: scaling x by 2 doubles chords along x
    ox = np.stack([-30 + 0 * b, np.zeros_like(b), b], -1)
    np.testing.assert_allclose(_chords(Ellipsoid((10.0, 5.0, 5.0)), ox, [1, 0, 0]), 4 * np.sqrt(25 - b**2),
                               rtol=1e-9)
    # cylinder along z: chord in a plane perpendicular to the axis, and along the axis
    cyl = Cylinder(5.0, 3.0)
    oc = np.stack([np.full_like(b, -30.0), b, np.zeros_like(b)], -1)
    np.testing.assert_allclose(_chords(cyl, oc, [1, 0, 0]), 2 * np.sqrt(25 - b**2), rtol=1e-9)
    assert _chords(cyl, [[1.0, 1.0, -9.0]], [[0, 0, 1]])[0] == pytest.approx(3.0)
    # oblique ray through the cylinder's flat faces: length h / cos(angle)
    assert _chords(cyl, [[0.0, 0.0, 0.0]], [[math.sin(0.3), 0, math.cos(0.3)]])[0] == pytest.approx(3 / math.cos(0.3))
    # triangular prism: right triangle legs 2 and 2, height 1
    tri = Prism(((0, 0), (2, 0), (0, 2)), 1.0)
    assert _chords(tri, [[0.5, -5, 0.0]], [[0, 1, 0]])[0] == pytest.approx(1.5)
    assert _chords(tri, [[-5, -5, 0.0]], [[1, 1, 0]])[0] == pytest.approx(math.sqrt(2))   # the diagonal
    assert _chords(tri, [[3.0, -5, 0.0]], [[0, 1, 0]])[0] == 0.0


def test_cuts_clip_a_shape():
    half_ball = Ellipsoid((5.0, 5.0, 5.0)).cut((0, 0, 1), 0.0)      # keep z ≤ 0
    assert _chords(half_ball, [[0, 0, -20.0]], [[0, 0, 1]])[0] == pytest.approx(5.0)
    assert bool(half_ball.contains(np.array([0, 0, -1.0]))) and not bool(half_ball.contains(np.array([0, 0, 1.0])))


@pytest.mark.parametrize("shape, volume", [
    (Ellipsoid((3.0, 2.0, 2.5)), 4 / 3 * math.pi * 3 * 2 * 2.5),
    (Cylinder(2.5, 4.0), math.pi * 2.5**2 * 4.0),
    (Box((3.3, 4.1, 2.7)), 3.3 * 4.1 * 2.7),
    (Prism(((0, 0), (4, 0), (0, 3)), 2.0), 0.5 * 4 * 3 * 2.0),
])
def test_voxel_fractions_match_analytic_volumes(shape, volume):
    ph = Phantom.build("one", [place(shape, "aluminium", "part", at=(0.13, -0.21, 0.07), rotate_deg=(10, 20, 30))])
    grid = VolumeGrid((48, 48, 48), 0.2)
    vox = ph.voxelize(grid, supersample=4)
    measured = vox.fractions["aluminium"].sum() * 0.2**3
    assert measured == pytest.approx(volume, rel=0.005)
    assert vox.labels["part"].sum() * 0.2**3 == pytest.approx(volume, rel=0.05)


def _void_in_box():
    return Phantom.build("holey", [place(Box((8.0, 8.0, 8.0)), "aluminium", "block"),
                                   place(Ellipsoid((2.0, 2.0, 2.0)), "void", "pore", at=(1.0, 0.0, 0.0)),
                                   place(Ellipsoid((1.0, 1.0, 1.0)), "copper", "inclusion", at=(-2.0, 0.0, 0.0))])


def test_painters_rule_in_voxels():
    ph = _void_in_box()
    vox = ph.voxelize(VolumeGrid((40, 40, 40), 0.25), supersample=4)
    assert vox.fractions["aluminium"].sum() * 0.25**3 == pytest.approx(512 - 4 / 3 * math.pi * 9, rel=0.005)
    assert vox.fractions["copper"].sum() * 0.25**3 == pytest.approx(4 / 3 * math.pi, rel=0.01)
    assert set(vox.fractions) == {"aluminium", "copper"}              # void is not a material


def test_painters_rule_in_exact_path_lengths():
    ph = _void_in_box()
    g = Geometry.parallel(0.0, 1, (1, 5), (1.0, 0.5))                # one detector row through z = 0
    lengths = ph.path_lengths(g)
    x = (np.arange(5) - 2) * 0.5                                     # ray columns (u = x at view 0)
    # rays run along y through the box (8 mm), the void ball centred at x = 1 and the copper ball at x = −2
    void = 2 * np.sqrt(np.maximum(4 - (x - 1) ** 2, 0))
    copper = 2 * np.sqrt(np.maximum(1 - (x + 2) ** 2, 0))
    np.testing.assert_allclose(lengths["aluminium"][0, 0], 8 - void - copper, atol=1e-4)
    np.testing.assert_allclose(lengths["copper"][0, 0], copper, atol=1e-4)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_exact_path_lengths_agree_with_voxel_projection(beam):
    ph = Phantom.build("pair", [place(Cylinder(3.0, 2.0), "aluminium", "disc", rotate_deg=(0, 0, 0)),
                                place(Ellipsoid((1.5, 1.0, 1.0)), "copper", "bead", at=(1.0, 0.5, 0.2))])
    if beam == "parallel":
        g = Geometry.parallel(30.0, 3, (24, 32), 0.25)
    else:
        g = Geometry.cone(30.0, 3, sod=60.0, sdd=120.0, det_shape=(24, 32), det_spacing=0.5)
    exact = ph.path_lengths(g)
    errors = []
    for n, vs in ((20, 0.4), (40, 0.2)):
        grid = VolumeGrid((n // 2, n, n), vs)
        vox = ph.voxelize(grid, supersample=2)
        P = Projector(g, grid)
        errors.append(sum(float(np.abs(np.asarray(P.forward(vox.fractions[m])) - exact[m]).mean())
                          for m in exact))
    assert errors[1] < 0.7 * errors[0]
    assert errors[1] < 0.02 * max(float(exact[m].max()) for m in exact)


def test_siemens_star_dimensions_materials_and_labels():
    ph = phantoms.get("siemens_star", n_spokes=12, radius_mm=1.0, thickness_mm=0.02, substrate_thickness_mm=0.1)
    assert set(ph.materials) == {"gold", "silicon"}
    (x0, y0, z0), (x1, y1, z1) = ph.bounds
    assert (x1 - x0) == pytest.approx(2.4) and z1 == pytest.approx(0.02) and z0 == pytest.approx(-0.1)
    grid = VolumeGrid((12, 64, 64), (0.01, 0.04, 0.04), center=(0.01, 0.0, 0.0))
    vox = ph.voxelize(grid, supersample=2)
    gold = vox.fractions["gold"]
    # half of the 1 mm disc (spokes fill half the angles; sectors are polygons of 8 chords each)
    sector = 0.5 * 12 * 8 * np.sin(np.pi / 12 / 8)        # polygon area of the spokes / r²
    assert gold.sum() * 0.01 * 0.04 * 0.04 == pytest.approx(sector * 0.02, rel=0.02)
    zs = np.nonzero(gold.sum(axis=(1, 2)))[0]
    assert (zs.max() - zs.min() + 1) * 0.01 == pytest.approx(0.02)
    assert vox.labels["spoke"].any() and vox.labels["substrate"].any()
    # the listed spoke regions are where the gold is: sample the mid-radius circle
    spokes = np.asarray(ph.params["spokes_deg"])
    assert spokes.shape == (12, 2) and np.allclose(spokes[:, 1] - spokes[:, 0], 15.0)
    angles = np.radians(np.arange(0.5, 360, 1.0))
    pts = np.stack([0.5 * np.cos(angles), 0.5 * np.sin(angles), np.full_like(angles, 0.01)], -1)
    in_gold = np.zeros(len(angles), bool)
    for part in ph.parts[1:]:
        in_gold |= np.asarray(part.shape.contains(part.to_local(pts)))
    listed = np.any((np.degrees(angles)[:, None] > spokes[:, 0]) & (np.degrees(angles)[:, None] < spokes[:, 1]), 1)
    assert np.array_equal(in_gold, listed)
    upright = phantoms.get("siemens_star", n_spokes=12, radius_mm=1.0, plane="xz")
    (_, _, uz0), (_, _, uz1) = upright.bounds
    assert uz1 - uz0 == pytest.approx(2.4)                    # the star now spans the axis direction


def test_registry_and_bad_parameters():
    assert "siemens_star" in phantoms.names()
    assert phantoms.parameters("siemens_star")["n_spokes"] == 36
    with pytest.raises(ValueError, match="known phantoms are"):
        phantoms.get("unicorn")
    with pytest.raises(ValueError, match="n_spokes"):
        phantoms.get("siemens_star", n_spokes=2)
    with pytest.raises(ValueError, match="radius_mm"):
        phantoms.get("siemens_star", radius_mm=-1)
    with pytest.raises(ValueError, match="metal"):
        phantoms.get("siemens_star", metal="cheese")
    with pytest.raises(ValueError, match="not allowed for phantom"):
        phantoms.get("siemens_star", colour="red")
    with pytest.raises(ValueError, match="unknown material"):
        Phantom.build("x", [place(Box((1, 1, 1)), "unobtainium")])
    with pytest.raises(ValueError, match="convex"):
        Prism(((0, 0), (2, 0), (1, 0.2), (2, 2), (0, 2)), 1.0)
    with pytest.raises(ValueError, match="size"):
        Box((1.0, 0.0, 1.0))


def test_meshes_and_stl_export(tmp_path):
    import trimesh

    ph = Phantom.build("parts", [place(Box((4.0, 2.0, 1.0)), "aluminium", "plate", at=(1.0, 0.0, 0.0),
                                       rotate_deg=(0, 0, 30)),
                                 place(Cylinder(1.0, 2.0), "copper", "rod", at=(0.0, 0.0, 1.5)),
                                 place(Ellipsoid((1.0, 1.0, 1.0)).cut((0, 0, 1), 0.0), "copper", "dome"),
                                 place(Prism(((0, 0), (2, 0), (0, 2)), 1.0), "void", "notch")])
    meshes = ph.to_meshes()
    volumes = [m.volume for _, _, m in meshes]
    assert volumes[0] == pytest.approx(8.0, rel=1e-9)
    assert volumes[1] == pytest.approx(math.pi * 2.0, rel=0.01)
    assert volumes[2] == pytest.approx(2 / 3 * math.pi, rel=0.03)        # hemisphere from the cut
    assert volumes[3] == pytest.approx(2.0, rel=1e-9)
    lo, hi = meshes[0][2].bounds
    assert (lo + hi) / 2 == pytest.approx([1.0, 0.0, 0.0])               # placed where the part is
    paths = ph.export_stl(str(tmp_path / "stl"))
    assert sorted(p.split("/")[-1] for p in paths) == ["aluminium.stl", "copper.stl", "void.stl"]
    assert trimesh.load(paths[0]).volume == pytest.approx(8.0, rel=1e-6)


def test_many_crossings_fall_back_to_a_fine_voxel_projection():
    layers = [place(Box((6.0, 6.0, 0.25)), "aluminium" if i % 2 else "copper", "layer", at=(0, 0, -1.5 + 0.25 * i))
              for i in range(12)]
    ph = Phantom.build("stack", layers)
    g = Geometry.parallel(60.0, 2, (8, 8), 0.5)
    exact = ph.path_lengths(g)
    with pytest.warns(UserWarning, match="max_hits"):
        approx = ph.path_lengths(g, max_hits=4)
    centre = (slice(None), slice(2, 6), slice(2, 6))
    for m in exact:
        np.testing.assert_allclose(approx[m][centre], exact[m][centre], rtol=0.05, atol=0.02)
    # six 0.25 mm layers of each metal crossed at 60° tilt: 1.5 / sin(60°) mm through the middle
    assert exact["copper"][0, 4, 4] == pytest.approx(1.5 / math.sin(math.radians(60)), rel=1e-5)


def test_from_mesh_phantom_voxels_and_exact_paths(tmp_path):
    import trimesh

    path = tmp_path / "part.stl"
    trimesh.creation.box(extents=(0.4, 0.6, 0.2)).export(str(path))        # in cm
    ph = phantoms.from_mesh(str(path), material="aluminium", units="cm")
    lo, hi = ph.bounds
    assert np.subtract(hi, lo) == pytest.approx([4.0, 6.0, 2.0])
    vox = ph.voxelize(VolumeGrid((12, 32, 24), 0.25, center=(0.01, 0.02, 0.03)), supersample=2)
    assert vox.fractions["aluminium"].sum() * 0.25**3 == pytest.approx(48.0, rel=0.01)
    g = Geometry.parallel(0.0, 1, (1, 1), 1.0)                              # one ray along +y through the origin
    assert ph.path_lengths(g)["aluminium"][0, 0, 0] == pytest.approx(6.0, rel=1e-5)
    with pytest.raises(ValueError, match="watertight"):
        open_box = trimesh.creation.box(extents=(1, 1, 1))
        open_box.update_faces(np.arange(len(open_box.faces)) != 0)
        phantoms.from_mesh(open_box)


def _sampled_chord(shape, o, d, n=200001, span=20.0):
    t = np.linspace(-span, span, n)
    pts = np.asarray(o)[None] + t[:, None] * np.asarray(d)[None]
    return shape.contains(pts).sum() * (t[1] - t[0]) * np.linalg.norm(d)


@pytest.mark.parametrize("radii", [(3.0, 1.0), (1.0, 3.0), (2.5, 0.0)])
def test_frustum_chords_and_volume(radii):
    from lamino.phantoms import Frustum

    f = Frustum(radii[0], radii[1], 4.0)
    r_mid = sum(radii) / 2
    assert _chords(f, [[0.0, -20, 0.0]], [[0, 1, 0]])[0] == pytest.approx(2 * r_mid)     # through the axis at z=0
    assert _chords(f, [[0.0, 0.0, -20.0]], [[0, 0, 1]])[0] == pytest.approx(4.0)         # along the axis
    rng = np.random.default_rng(1)
    for _ in range(20):                                                                   # oblique rays
        o, d = rng.uniform(-2, 2, 3), rng.normal(size=3)
        assert _chords(f, [o], [d])[0] == pytest.approx(_sampled_chord(f, o, d), abs=2e-3)
    ph = Phantom.build("cone", [place(f, "aluminium", "cone", rotate_deg=(30, 0, 0))])
    vox = ph.voxelize(VolumeGrid((48, 48, 48), 0.2), supersample=4)
    volume = math.pi * 4.0 * (radii[0] ** 2 + radii[0] * radii[1] + radii[1] ** 2) / 3
    assert vox.fractions["aluminium"].sum() * 0.2**3 == pytest.approx(volume, rel=0.01)
    assert ph.to_meshes()[0][2].volume == pytest.approx(volume, rel=0.01)


def _brute_force_path_lengths(ph, g):
    """Reference: every slot of every part along every ray (float64; meshes by their own tracer), the elementary
    segments between all sorted interval ends owned by the latest covering slot."""
    vec = np.asarray(g.vectors())
    pix = g.pixel_positions().reshape(g.n_views, -1, 3)
    if g.beam == "cone":
        o, d = np.broadcast_to(vec[:, None, 0:3], pix.shape), pix - vec[:, None, 0:3]
    else:
        o, d = pix, np.broadcast_to(vec[:, None, 0:3], pix.shape)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    t0s, t1s, mats = [], [], []
    for part in ph.parts:
        a, b = part.shape.intervals(part.to_local(o), d @ part.matrix)
        t0s += list(np.asarray(a, float))
        t1s += list(np.asarray(b, float))
        mats += [part.material] * len(a)
    t0, t1 = np.array(t0s), np.array(t1s)
    empty = t1 <= t0
    t0, t1 = np.where(empty, 1e300, t0), np.where(empty, 1e300, t1)
    ends = np.sort(np.concatenate([t0, t1]), axis=0)
    mid, seg = (ends[1:] + ends[:-1]) / 2, np.where(ends[1:] < 1e299, ends[1:] - ends[:-1], 0.0)
    cover = (t0[:, None] <= mid[None]) & (mid[None] < t1[:, None])
    owner = np.max(np.where(cover, np.arange(len(t0))[:, None, None], -1), axis=0)
    out = {}
    for m in ph.materials:
        mine = np.array([mm == m for mm in mats] + [False])
        out[m] = (np.sum(np.where(mine[owner], seg, 0.0), axis=0) * np.linalg.norm(d, axis=1)).reshape(
            g.n_views, *g.det_shape)
    return out


def _mixed_scene(n_beads: int = 12, seed: int = 3) -> Phantom:
    rng = np.random.default_rng(seed)
    parts = [place(Box((5.0, 4.0, 2.0)), "aluminium", "block", rotate_deg=(10, 20, 30)),
             place(Cylinder(1.5, 3.0), "copper", "rod", at=(0.5, -0.5, 0.0), rotate_deg=(70, 0, 15)),
             place(phantoms.Frustum(1.2, 0.3, 2.0), "void", "hole", at=(-1.0, 0.5, 0.3), rotate_deg=(0, 40, 0)),
             place(Prism(((0, 0), (2, 0), (1.5, 1.5), (0, 1)), 1.0), "copper", "wedge", at=(-1, -1, 0.5),
                   rotate_deg=(25, 5, 60))]
    parts += [place(Ellipsoid(tuple(rng.uniform(0.2, 0.6, 3))), "aluminium" if i % 3 else "void", "bead",
                    at=tuple(rng.uniform(-2.5, 2.5, 3)), rotate_deg=tuple(rng.uniform(0, 90, 3)))
              for i in range(n_beads)]
    return Phantom.build("mixed", parts)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_tiled_exact_path_lengths_match_a_brute_force_reference(beam):
    ph = _mixed_scene()
    if beam == "parallel":                    # a detector that is no whole number of tiles
        g = Geometry.parallel(35.0, 3, (19, 27), 0.3)
    else:
        g = Geometry.cone(20.0, 3, sod=30.0, sdd=60.0, det_shape=(21, 17), det_spacing=0.7)
    got, ref = ph.path_lengths(g), _brute_force_path_lengths(ph, g)
    for m in ref:
        np.testing.assert_allclose(got[m], ref[m], atol=1e-3)
        assert np.abs(got[m] - ref[m]).mean() < 1e-5
    assert max(float(r.max()) for r in ref.values()) > 3.0


def test_tiled_exact_path_lengths_many_candidates_and_many_crossings():
    # 40 beads over a few tiles: more candidate parts per tile than are compacted by selects
    beads = _mixed_scene(n_beads=40, seed=5)
    g = Geometry.parallel(10.0, 2, (6, 10), 0.6)
    got, ref = beads.path_lengths(g), _brute_force_path_lengths(beads, g)
    for m in ref:
        np.testing.assert_allclose(got[m], ref[m], atol=1e-3)
    # 20 overlapping slabs crossed by every ray: more crossings than the bit-mask painter's rule handles
    slabs = Phantom.build("slabs", [place(Box((4.0, 4.0, 0.5)), ("aluminium", "copper", "void")[i % 3], "slab",
                                          at=(0.0, 0.0, 0.1 * i - 1.0)) for i in range(20)])
    g = Geometry.parallel(60.0, 2, (5, 5), 0.3)
    got, ref = slabs.path_lengths(g), _brute_force_path_lengths(slabs, g)
    for m in ref:
        np.testing.assert_allclose(got[m], ref[m], atol=1e-4)


def test_tiled_exact_path_lengths_with_a_mesh_between_convex_parts(tmp_path):
    import trimesh

    from lamino.phantoms.mesh import MeshShape
    from lamino.phantoms.scene import Part

    mesh = MeshShape(trimesh.creation.box(extents=(2.0, 3.0, 1.5)))
    ph = Phantom.build("sandwich", [place(Box((4.0, 4.0, 4.0)), "aluminium", "block"),
                                    Part(mesh, "copper", "mesh", translation=(0.5, 0.0, 0.0)),
                                    place(Ellipsoid((0.8, 0.8, 0.8)), "void", "pore", at=(1.0, 0.3, 0.2))])
    g = Geometry.cone(25.0, 2, sod=20.0, sdd=40.0, det_shape=(12, 9), det_spacing=0.9)
    got, ref = ph.path_lengths(g, progress=True), _brute_force_path_lengths(ph, g)
    for m in ref:
        np.testing.assert_allclose(got[m], ref[m], atol=1e-3)
    assert got["copper"].max() > 1.0


def test_sorting_network_sorts_every_zero_one_sequence():
    import itertools

    from lamino.phantoms.paint import _batcher_pairs

    for n in range(1, 11):                    # 0–1 principle: a network that sorts all 0–1 inputs sorts anything
        for bits in itertools.product((0, 1), repeat=n):
            seq = list(bits)
            for a, b in _batcher_pairs(n):
                if seq[a] > seq[b]:
                    seq[a], seq[b] = seq[b], seq[a]
            assert seq == sorted(bits)


def test_siemens_star_labels_its_spoke_regions():
    from lamino import phantoms

    ph = phantoms.get("siemens_star", n_spokes=16, thickness_mm=0.1, label_sectors=8)
    vox = ph.voxelize(VolumeGrid((4, 96, 96), 0.05))
    sectors = [vox.label_fractions[f"spoke:{k}"] for k in range(8)]
    np.testing.assert_allclose(sum(s.sum() for s in sectors), vox.label_fractions["spoke"].sum(), rtol=1e-6)
    np.testing.assert_allclose(vox.label_fractions["spoke"].sum(), vox.fractions["gold"].sum(), rtol=1e-6)
    for k in range(8):                                      # each region's voxels lie in its 45° sector
        _, ys, xs = np.nonzero(vox.labels[f"spoke:{k}"])
        angle = np.degrees(np.arctan2(ys - 47.5, xs - 47.5)) % 360
        assert len(angle) > 0 and np.all((angle >= 45 * k - 1) & (angle <= 45 * (k + 1) + 1))
    with pytest.raises(ValueError, match="label_sectors"):
        phantoms.get("siemens_star", n_spokes=8, label_sectors=9)

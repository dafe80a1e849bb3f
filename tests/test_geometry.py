import json
import math
import warnings

import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid


def test_parallel_vectors_follow_design_convention():
    a = 30.0
    g = Geometry.parallel(tilt_deg=a, n_views=4, det_shape=(8, 10), det_spacing=(0.2, 0.5))
    vec = g.vectors()
    assert vec.shape == (4, 12)
    s, c = math.sin(math.radians(a)), math.cos(math.radians(a))
    # view 0: ray = R_x(-α)·ŷ, u = du·x̂, v = dv·R_x(-α)·ẑ
    np.testing.assert_allclose(vec[0, 0:3], [0, c, -s], atol=1e-12)
    np.testing.assert_allclose(vec[0, 6:9], [0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(vec[0, 9:12], [0, 0.2 * s, 0.2 * c], atol=1e-12)
    # view 90°: the sample turned by +90° about its z axis, so lab x̂ is sample −ŷ
    np.testing.assert_allclose(vec[1, 6:9], [0, -0.5, 0], atol=1e-12)
    assert g.lamino_angle_deg == pytest.approx(60.0)
    assert g.n_views == 4 and g.det_shape == (8, 10)
    np.testing.assert_allclose(g.angles_deg, [0, 90, 180, 270])


def test_rotation_axis_is_tilted_towards_the_source():
    # the sample z axis is the rotation axis: in the lab it is R_x(α) ẑ = (0, −sin α, cos α)
    g = Geometry.parallel(tilt_deg=20, n_views=3, det_shape=(4, 4))
    vec = g.vectors()
    # the axis is fixed under rotation: its components along the ray and along v are the same in every view
    for row in vec:
        ray, v = row[0:3], row[9:12]
        assert ray[2] == pytest.approx(-math.sin(math.radians(20)))
        assert v[2] == pytest.approx(math.cos(math.radians(20)))


def test_cone_source_and_detector_distances_and_magnification():
    g = Geometry.cone(tilt_deg=30, n_views=5, sod=295.0, sdd=967.3, det_shape=(20, 30), det_spacing=0.254)
    vec = g.vectors()
    np.testing.assert_allclose(np.linalg.norm(vec[:, 0:3], axis=1), 295.0)
    np.testing.assert_allclose(np.linalg.norm(vec[:, 3:6], axis=1), 967.3 - 295.0)
    assert g.magnification == pytest.approx(967.3 / 295.0)
    # a point 1 mm along +x lands SDD/SOD mm along u (view 0)
    rc = g.project_points([[0, 0, 0], [1, 0, 0]])
    assert rc[0, 1, 1] - rc[0, 0, 1] == pytest.approx(967.3 / 295.0 / 0.254, rel=1e-9)


@pytest.mark.parametrize("tilt", [0.0, 30.0])
def test_orientation_of_features(tilt):
    g = Geometry.parallel(tilt_deg=tilt, n_views=4, det_shape=(64, 64), det_spacing=1.0)
    centre = g.project_points([[0, 0, 0]])[:, 0]
    x = g.project_points([[5, 0, 0]])[:, 0] - centre
    y = g.project_points([[0, 5, 0]])[:, 0] - centre
    z = g.project_points([[0, 0, 5]])[:, 0] - centre
    a = math.radians(tilt)
    # view 0: +x → larger column; +z → larger row (cos α); +y → rows up by sin α (towards the source tilt)
    np.testing.assert_allclose(x[0], [0, 5], atol=1e-9)
    np.testing.assert_allclose(z[0], [5 * math.cos(a), 0], atol=1e-9)
    np.testing.assert_allclose(y[0], [5 * math.sin(a), 0], atol=1e-9)
    # view 90°: the sample's +y has turned to lab −x → smaller column; +x turned to lab +y
    np.testing.assert_allclose(y[1], [0, -5], atol=1e-9)
    np.testing.assert_allclose(x[1], [5 * math.sin(a), 0], atol=1e-9)


def test_misalignments_move_the_projection():
    base = Geometry.parallel(0, 2, (32, 32), 0.5)
    p0 = base.project_points([[0, 0, 0]])[0, 0]
    cor = base.replace(cor_offset=1.0).project_points([[0, 0, 0]])[0, 0]
    np.testing.assert_allclose(cor - p0, [0, 2.0], atol=1e-9)          # 1 mm at the object = 2 pixels
    off = base.replace(det_offset=(0.5, -1.0)).project_points([[0, 0, 0]])[0, 0]
    np.testing.assert_allclose(off - p0, [-1.0, 2.0], atol=1e-9)        # detector moved up and left
    roll = base.replace(det_roll_deg=90).project_points([[1, 0, 0]])[0, 0]
    assert abs(roll[0] - p0[0]) == pytest.approx(2.0) and roll[1] == pytest.approx(p0[1])


def test_round_trip_hash_and_json():
    g = Geometry.cone(25, 7, sod=100, sdd=300, det_shape=(16, 24), det_spacing=(0.2, 0.3), cor_offset=0.1,
                      det_offset=(0.2, -0.1), det_roll_deg=0.5)
    d = json.loads(json.dumps(g.to_dict()))
    g2 = Geometry.from_dict(d)
    assert g2 == g and hash(g2) == hash(g)
    np.testing.assert_allclose(g2.vectors(), g.vectors())
    gv = Geometry.from_vectors(g.vectors(), g.det_shape, beam="cone")
    assert Geometry.from_dict(json.loads(json.dumps(gv.to_dict()))) == gv
    np.testing.assert_allclose(gv.vectors(), g.vectors())
    with pytest.raises(AttributeError):
        g.tilt_deg = 3.0


def test_to_cil_parameters():
    g = Geometry.parallel(30, 3, (10, 20), (0.1, 0.2), cor_offset=0.05)
    d = g.to_cil()
    np.testing.assert_allclose(d["create"]["rotation_axis_direction"], [0, -0.5, math.cos(math.radians(30))])
    assert d["create"]["rotation_axis_position"] == [0.05, 0.0, 0.0]
    assert d["panel"] == {"num_pixels": [20, 10], "pixel_size": [0.2, 0.1]}
    assert len(d["angles"]["angles"]) == 3


def _cil_vectors(d: dict) -> np.ndarray:
    """ASTRA vectors from CIL AcquisitionGeometry arguments, by CIL's documented convention (its ASTRA plug-in,
    ``convert_geometry_to_astra_vec_3D``): origin at the rotation axis; the smallest rotation that takes the axis
    to +z (Rodrigues); then, for angle θ, source (or ray), detector centre and pixel steps turned by −θ about z."""
    c = d["create"]
    axis = np.asarray(c["rotation_axis_direction"], float)
    axis /= np.linalg.norm(axis)
    k = np.array([[0, 0, -axis[0]], [0, 0, -axis[1]], [axis[0], axis[1], 0]])
    to_z = np.eye(3) + k + k @ k / (1 + axis[2])
    origin = np.asarray(c["rotation_axis_position"], float)
    du, dv = d["panel"]["pixel_size"]
    first = (to_z @ (np.asarray(c["source_position"]) - origin) if d["beam"] == "cone"
             else to_z @ np.asarray(c["ray_direction"], float))
    parts = [first, to_z @ (np.asarray(c["detector_position"]) - origin),
             to_z @ np.asarray(c["detector_direction_x"]) * du, to_z @ np.asarray(c["detector_direction_y"]) * dv]
    out = []
    for theta in np.radians(d["angles"]["angles"]):
        rz = np.array([[np.cos(-theta), -np.sin(-theta), 0], [np.sin(-theta), np.cos(-theta), 0], [0, 0, 1]])
        out.append(np.concatenate([rz @ p for p in parts]))
    return np.asarray(out)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_to_cil_gives_the_same_views_by_cils_convention(beam):
    kw = dict(cor_offset=0.7, det_offset=(0.3, -0.4), det_roll_deg=4.0, angles_deg=[0.0, 20.0, 95.0, 250.0])
    g = (Geometry.cone(35.0, sod=90.0, sdd=200.0, det_shape=(10, 20), det_spacing=(0.3, 0.2), **kw) if beam == "cone"
         else Geometry.parallel(35.0, det_shape=(10, 20), det_spacing=(0.3, 0.2), **kw))
    np.testing.assert_allclose(_cil_vectors(g.to_cil()), g.vectors(), atol=1e-12)


def test_grid_axes_and_fit():
    grid = VolumeGrid((4, 6, 8), (0.5, 1.0, 2.0), center=(1.0, 0.0, -1.0))
    np.testing.assert_allclose(grid.axis(2), (np.arange(8) - 3.5) * 2.0 - 1.0)
    np.testing.assert_allclose(grid.axis(0), (np.arange(4) - 1.5) * 0.5 + 1.0)
    g = Geometry.parallel(30, 90, (100, 200), 0.1)
    fit = VolumeGrid.fit(g)
    assert g.truncation(fit) == 0.0
    assert fit.voxel_size == (0.1, 0.1, 0.1) and fit.shape[1] == fit.shape[2] >= 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VolumeGrid.fit(g, sample_size=(1.0, 5.0, 5.0))          # fits: no warning
    with pytest.warns(UserWarning, match="truncated"):
        VolumeGrid.fit(g, sample_size=(1.0, 30.0, 30.0))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: Geometry.parallel(tilt_deg=90, n_views=3), "tilt_deg"),
        (lambda: Geometry.parallel(tilt_deg=-1, n_views=3), "tilt_deg"),
        (lambda: Geometry.parallel(tilt_deg=float("nan"), n_views=3), "tilt_deg"),
        (lambda: Geometry.parallel(n_views=0), "n_views"),
        (lambda: Geometry.parallel(n_views=2.5), "n_views"),
        (lambda: Geometry.parallel(n_views=3, det_spacing=0), "det_spacing"),
        (lambda: Geometry.parallel(n_views=3, det_spacing=(0.1, -1)), "det_spacing"),
        (lambda: Geometry.parallel(n_views=3, det_shape=(0, 4)), "det_shape"),
        (lambda: Geometry.parallel(n_views=3, det_shape=(4,)), "det_shape"),
        (lambda: Geometry.parallel(angles_deg=[0, float("inf")]), "angles_deg"),
        (lambda: Geometry.parallel(angles_deg=np.zeros((2, 2))), "angles_deg"),
        (lambda: Geometry.parallel(n_views=3, cor_offset=float("nan")), "cor_offset"),
        (lambda: Geometry.cone(n_views=3, sod=100, sdd=100), "sdd"),
        (lambda: Geometry.cone(n_views=3, sod=-5, sdd=100), "sod"),
        (lambda: Geometry.from_vectors(np.zeros((3, 9)), (4, 4)), "vectors"),
        (lambda: Geometry.from_vectors(np.ones((3, 12)), (4, 4), beam="fan"), "beam"),
        (lambda: VolumeGrid((4, 4)), "shape"),
        (lambda: VolumeGrid((4, 4, 0)), "shape"),
        (lambda: VolumeGrid((4, 4, 4), voxel_size=0), "voxel_size"),
        (lambda: VolumeGrid((4, 4, 4), center=(0, 0)), "center"),
    ],
)
def test_bad_input_names_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_field_of_view_is_the_region_every_view_sees():
    from lamino.geometry import Geometry, VolumeGrid

    g = Geometry.parallel(tilt_deg=0, n_views=36, det_shape=(10, 20), det_spacing=1.0)
    fov = g.field_of_view(VolumeGrid((12, 30, 30), 1.0))
    # CT: rows cover |z| ≤ 5 − margin 1 − 0.5 → 8 central slices; columns a disc of radius ≈ 9
    assert list(fov.sum(axis=(1, 2)) > 0) == [False] * 2 + [True] * 8 + [False] * 2
    assert fov[5].sum() == pytest.approx(np.pi * 9**2, rel=0.03)
    cl = Geometry.parallel(tilt_deg=30, n_views=36, det_shape=(10, 20), det_spacing=1.0).field_of_view(
        VolumeGrid((12, 30, 30), 1.0))
    assert cl.sum() < fov.sum()                          # a tilted axis sweeps slices over more rows


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_field_of_view_matches_project_points(beam):
    from lamino.geometry import Geometry, VolumeGrid

    grid = VolumeGrid((10, 24, 28), 0.9, center=(0.3, -0.2, 0.5))
    misaligned = dict(cor_offset=0.6, det_offset=(0.8, -0.7), det_roll_deg=2.5)
    if beam == "parallel":
        g = Geometry.parallel(tilt_deg=35, n_views=17, det_shape=(12, 30), det_spacing=(0.8, 1.1), **misaligned)
    else:
        g = Geometry.cone(tilt_deg=25, n_views=19, det_shape=(14, 26), det_spacing=2.0, sod=40.0, sdd=90.0,
                          **misaligned)
    z, y, x = (grid.axis(k) for k in range(3))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    rc = g.project_points(np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1))
    rows, cols = g.det_shape
    inside = ((rc[..., 0] >= 0.5) & (rc[..., 0] <= rows - 1.5) & (rc[..., 1] >= 0.5) & (rc[..., 1] <= cols - 1.5))
    expected = np.all(inside, axis=0).reshape(grid.shape)
    fov = g.field_of_view(grid, margin=1.0)
    assert 0 < fov.sum() < fov.size
    np.testing.assert_array_equal(fov, expected)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_projection_matrices_project_like_the_detector_frame(beam):
    """The per-view 3 × 4 matrices (measured fraction, field of view) against project_points, with a rolled,
    offset detector and a shifted axis: the same fractional pixel indices."""
    from lamino.geometry import frame

    kw = dict(det_shape=(20, 30), det_spacing=0.3, cor_offset=0.4, det_offset=(0.2, -0.5), det_roll_deg=3.0)
    g = (Geometry.cone(30.0, 7, sod=100.0, sdd=250.0, **kw) if beam == "cone" else Geometry.parallel(30.0, 7, **kw))
    points = np.random.default_rng(1).normal(size=(50, 3))
    expected = frame.project_points(points, g.vectors(), g.beam, g.det_shape)            # (views, points, (row, col))
    m = frame.projection_matrices(g.vectors(), g.beam, g.det_shape)
    num = np.einsum("nij,pj->nip", m, np.concatenate([points, np.ones((50, 1))], axis=1))
    np.testing.assert_allclose(num[:, 1] / num[:, 2], expected[..., 0], atol=1e-9)
    np.testing.assert_allclose(num[:, 0] / num[:, 2], expected[..., 1], atol=1e-9)
    assert np.all(num[:, 2] > 0)                         # every point in front of the source

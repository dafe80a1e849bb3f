"""Projector checks against analytic line integrals, CL geometry facts and linear-algebra identities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    ball_fractions,
    ellipsoid_chords,
    ellipsoid_fractions,
    gaussian_projections,
    voxel_driven_backproject,
)

import lamino.recon.analytic as analytic
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon import fbp

MU = 0.05  # 1/mm


def _geometry(beam, tilt, n_views=5, det=48, spacing=1.0, **kw):
    if beam == "parallel":
        return Geometry.parallel(tilt, n_views, (det, det), spacing, **kw)
    return Geometry.cone(tilt, n_views, sod=150.0, sdd=300.0, det_shape=(det, det), det_spacing=2 * spacing, **kw)


def _interior_error(geometry, grid, semi_axes, center=(0.0, 0.0, 0.0)):
    vol = MU * ellipsoid_fractions(grid, semi_axes, center)
    proj = np.asarray(Projector(geometry, grid).forward(vol))
    exact = MU * ellipsoid_chords(geometry, semi_axes, center)
    inside = exact > 0.7 * exact.max()            # interior of the shadow (away from the rim)
    return np.abs(proj[inside] - exact[inside]) / exact[inside]


@pytest.mark.parametrize("beam", ["parallel", "cone"])
@pytest.mark.parametrize("tilt", [0.0, 30.0, 60.0])
def test_ball_line_integrals_match_analytic(beam, tilt):
    grid = VolumeGrid((40, 40, 40), 1.0)
    err = _interior_error(_geometry(beam, tilt, n_views=7), grid, (14.0, 14.0, 14.0), center=(1.3, -0.7, 0.4))
    assert np.mean(err) < 0.005 and np.percentile(err, 95) < 0.01 and err.max() < 0.02


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_ellipsoid_line_integrals_match_analytic(beam):
    grid = VolumeGrid((40, 40, 40), 1.0)
    err = _interior_error(_geometry(beam, 35.0, n_views=6), grid, (16.0, 12.0, 9.0), center=(0.5, 1.0, -0.5))
    assert np.mean(err) < 0.006 and np.percentile(err, 95) < 0.012


def test_error_decreases_with_voxel_size():
    g = Geometry.parallel(30, 5, (64, 64), 0.5)
    coarse = _interior_error(g, VolumeGrid((16, 16, 16), 2.0), (10.0, 10.0, 10.0)).mean()
    fine = _interior_error(g, VolumeGrid((32, 32, 32), 1.0), (10.0, 10.0, 10.0)).mean()
    assert fine < 0.6 * coarse


@pytest.mark.parametrize("beam", ["parallel", "cone"])
@pytest.mark.parametrize("tilt", [0.0, 30.0])
def test_features_land_where_the_geometry_says(beam, tilt):
    grid = VolumeGrid((32, 32, 32), 1.0)
    g = _geometry(beam, tilt, n_views=4, det=64, spacing=1.0)
    P = Projector(g, grid)
    for point in ([8.0, 0.0, 0.0], [0.0, 8.0, 0.0], [0.0, 0.0, 8.0]):
        vol = ball_fractions(grid, 2.0, center=point)
        proj = np.asarray(P.forward(vol))
        expected = g.project_points([point])[:, 0]
        for view in (0, 1):                         # 0° and 90°
            w = proj[view]
            r, c = np.indices(w.shape)
            centroid = np.array([np.sum(w * r), np.sum(w * c)]) / np.sum(w)
            np.testing.assert_allclose(centroid, expected[view], atol=0.15)


def test_tilt_zero_is_slice_separable():
    grid = VolumeGrid((12, 24, 24), 1.0)
    g = Geometry.parallel(0.0, 6, (12, 32), 1.0)
    P = Projector(g, grid)
    rng = np.random.default_rng(0)
    vol = rng.random(grid.shape).astype(np.float32)
    full = np.asarray(P.forward(vol))
    for k in (0, 5, 11):
        only = np.zeros_like(vol)
        only[k] = vol[k]
        p = np.asarray(P.forward(only))
        np.testing.assert_allclose(p[:, k], full[:, k], rtol=1e-5, atol=1e-5)
        assert np.abs(np.delete(p, k, axis=1)).max() < 1e-6


def test_tilted_slice_projects_onto_a_band_of_rows():
    # a thin disc of radius R perpendicular to the axis covers 2 R sin(α) of detector height
    grid = VolumeGrid((8, 48, 48), 1.0)
    g = Geometry.parallel(30.0, 4, (64, 64), 1.0)
    vol = np.zeros(grid.shape, np.float32)
    vol[4] = ellipsoid_fractions(grid, (20.0, 20.0, 100.0))[4]
    proj = np.asarray(Projector(g, grid).forward(vol))
    rows = np.nonzero(proj[0].max(axis=1) > 1e-3)[0]
    assert rows.max() - rows.min() + 1 == pytest.approx(2 * 20 * 0.5 + 2, abs=2)


def test_cone_converges_to_parallel_as_sod_grows():
    grid = VolumeGrid((24, 24, 24), 1.0)
    vol = ellipsoid_fractions(grid, (9.0, 7.0, 5.0), center=(1.0, 0.0, 0.5))
    p = np.asarray(Projector(Geometry.parallel(30.0, 5, (32, 32), 1.0), grid).forward(vol))
    diffs = []
    for sod in (200.0, 2000.0, 20000.0):
        cone = Geometry.cone(30.0, 5, sod=sod, sdd=2 * sod, det_shape=(32, 32), det_spacing=2.0)
        diffs.append(np.abs(np.asarray(Projector(cone, grid).forward(vol)) - p).max() / p.max())
    assert diffs[0] > 0.02                      # a real cone beam differs
    assert diffs[1] < 0.3 * diffs[0] and diffs[2] < 0.01


def test_cone_magnification_of_a_ball():
    grid = VolumeGrid((40, 40, 40), 1.0)
    sod, sdd, radius, pixel = 60.0, 180.0, 15.0, 3.0
    g = Geometry.cone(0.0, 3, sod=sod, sdd=sdd, det_shape=(48, 48), det_spacing=pixel)
    proj = np.asarray(Projector(g, grid).forward(ball_fractions(grid, radius)))
    width_px = np.sum(proj[0].max(axis=0) > 0.02 * proj.max())
    expected = 2 * sdd * radius / np.sqrt(sod**2 - radius**2) / pixel    # tangent cone of the ball
    assert width_px == pytest.approx(expected, abs=2)


def _random_geometry(rng, beam):
    tilt = rng.uniform(0, 80)
    kw = dict(cor_offset=rng.uniform(-2, 2), det_offset=tuple(rng.uniform(-1, 1, 2)),
              det_roll_deg=rng.uniform(-5, 5), angles_deg=np.sort(rng.uniform(0, 360, 5)))
    if beam == "parallel":
        return Geometry.parallel(tilt, det_shape=(20, 28), det_spacing=(1.1, 0.9), **kw)
    return Geometry.cone(tilt, sod=90.0, sdd=170.0, det_shape=(20, 28), det_spacing=(1.7, 2.1), **kw)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
@pytest.mark.parametrize("seed", [0, 1])
def test_adjoint_is_exact_transpose(beam, seed):
    rng = np.random.default_rng(seed)
    g = _random_geometry(rng, beam)
    grid = VolumeGrid((10, 14, 12), (1.2, 0.9, 1.0), center=(0.3, -0.2, 0.1))
    P = Projector(g, grid)
    x = rng.random(grid.shape).astype(np.float32)
    y = rng.random(P.proj_shape).astype(np.float32)
    lhs = np.vdot(np.asarray(P.forward(x), np.float64), y)
    rhs = np.vdot(x, np.asarray(P.adjoint(y), np.float64))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_adjoint_for_an_arbitrary_trajectory():
    rng = np.random.default_rng(3)
    base = Geometry.parallel(20, 6, (16, 16), 1.0).vectors()
    wobble = base + np.concatenate([rng.normal(0, 0.05, (6, 3)), np.zeros((6, 9))], axis=1)
    g = Geometry.from_vectors(wobble, (16, 16), beam="parallel")
    grid = VolumeGrid((10, 10, 10), 1.0)
    P = Projector(g, grid)
    x = rng.random(grid.shape).astype(np.float32)
    y = rng.random(P.proj_shape).astype(np.float32)
    assert np.vdot(np.asarray(P.forward(x), np.float64), y) == pytest.approx(
        np.vdot(x, np.asarray(P.adjoint(y), np.float64)), rel=1e-5)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_backproject_agrees_with_adjoint_on_smooth_data(beam):
    grid = VolumeGrid((24, 24, 24), 1.0)
    g = _geometry(beam, 30.0, n_views=12, det=40, spacing=1.0)
    P = Projector(g, grid)
    z, y, x = np.meshgrid(*[grid.axis(i) for i in range(3)], indexing="ij")
    vol = np.exp(-(x**2 + y**2 + z**2) / (2 * 4.0**2)).astype(np.float32)
    smooth = np.asarray(P.forward(vol))
    bp, ad = np.asarray(P.backproject(smooth)), np.asarray(P.adjoint(smooth))
    centre = (slice(6, 18),) * 3
    bp, ad = bp[centre], ad[centre]
    # the backprojector's plane prefilter undoes its second interpolation's blur (the adjoint keeps it): near the
    # peak of a σ = 4 voxel blob that raises the value by about (1/6)/σ² ≈ 1 %
    assert bp.mean() == pytest.approx(ad.mean(), rel=0.01)
    # the ray-driven adjoint carries a ±4 % voxel-scale sampling ripple that the voxel-driven gather has not
    assert np.linalg.norm(bp - ad) < 0.03 * np.linalg.norm(ad)


def test_grad_with_respect_to_volume_matches_adjoint():
    grid = VolumeGrid((10, 12, 12), 1.0)
    g = Geometry.parallel(30, 4, (16, 16), 1.0)
    P = Projector(g, grid)
    y = np.random.default_rng(1).random(P.proj_shape).astype(np.float32)
    x = np.random.default_rng(2).random(grid.shape).astype(np.float32)
    grad = jax.grad(lambda v: jnp.sum(P.forward(v) * y))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(P.adjoint(y)), rtol=1e-4, atol=1e-4)
    jitted = jax.jit(jax.grad(lambda v: jnp.sum(P.forward(v) * y)))(jnp.asarray(x))   # also inside jit
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(grad), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_grad_with_respect_to_tilt_and_cor(beam):
    grid = VolumeGrid((20, 20, 20), 1.0)
    z, y, x = np.meshgrid(*[grid.axis(i) for i in range(3)], indexing="ij")
    vol = np.exp(-((x - 2) ** 2 + (y + 1) ** 2 + (z - 1) ** 2) / (2 * 3.5**2)).astype(np.float32)

    def loss(tilt, cor):
        if beam == "parallel":
            g = Geometry.parallel(tilt, 5, (28, 28), 1.0, cor_offset=cor)
        else:
            g = Geometry.cone(tilt, 5, sod=100.0, sdd=200.0, det_shape=(28, 28), det_spacing=2.0, cor_offset=cor)
        return jnp.sum(Projector(g, grid).forward(vol) ** 2)

    tilt0, cor0, h = 32.0, 0.37, 0.02
    g_tilt, g_cor = jax.grad(loss, argnums=(0, 1))(tilt0, cor0)
    fd_tilt = (loss(tilt0 + h, cor0) - loss(tilt0 - h, cor0)) / (2 * h)
    fd_cor = (loss(tilt0, cor0 + h) - loss(tilt0, cor0 - h)) / (2 * h)
    assert float(g_tilt) == pytest.approx(float(fd_tilt), rel=0.05)
    assert float(g_cor) == pytest.approx(float(fd_cor), rel=0.05)
    assert abs(float(g_tilt)) > 1.0 and abs(float(g_cor)) > 10.0


def test_traced_geometry_gives_the_same_projections():
    grid = VolumeGrid((12, 12, 12), 1.0)
    vol = ellipsoid_fractions(grid, (5.0, 4.0, 3.0), supersample=2)
    concrete = np.asarray(Projector(Geometry.parallel(40.0, 6, (16, 16), 1.0), grid).forward(vol))
    traced = jax.jit(lambda t: Projector(Geometry.parallel(t, 6, (16, 16), 1.0), grid).forward(vol))(40.0)
    np.testing.assert_allclose(np.asarray(traced), concrete, rtol=1e-5, atol=1e-5)


def test_output_is_float32_jax_array_and_accepts_numpy():
    grid = VolumeGrid((6, 6, 6), 1.0)
    P = Projector(Geometry.parallel(10, 3, (8, 8), 1.0), grid)
    out = P.forward(np.ones(grid.shape, np.float64))
    assert isinstance(out, jax.Array) and out.dtype == jnp.float32 and out.shape == (3, 8, 8)
    assert P.adjoint(np.ones(P.proj_shape)).dtype == jnp.float32


def test_bad_shapes_are_rejected():
    grid = VolumeGrid((6, 6, 6), 1.0)
    P = Projector(Geometry.parallel(10, 3, (8, 8), 1.0), grid)
    with pytest.raises(ValueError, match="volume with shape"):
        P.forward(np.ones((6, 6, 5)))
    with pytest.raises(ValueError, match="projections with shape"):
        P.adjoint(np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="projections with shape"):
        P.backproject(np.ones((3, 8, 9)))
    with pytest.raises(ValueError, match="geometry"):
        Projector("not a geometry", grid)
    with pytest.raises(ValueError, match="grid"):
        Projector(Geometry.parallel(10, 3, (8, 8), 1.0), (6, 6, 6))


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_batched_views_give_the_same_results(beam):
    # the GPU path computes several views side by side; it must equal the one-view-at-a-time CPU path
    grid = VolumeGrid((10, 12, 12), 1.0)
    g = _geometry(beam, 25.0, n_views=7, det=16, spacing=1.0)
    rng = np.random.default_rng(5)
    x = rng.random(grid.shape).astype(np.float32)
    y = rng.random((7, 16, 16)).astype(np.float32)
    one, three = Projector(g, grid, views_per_batch=1), Projector(g, grid, views_per_batch=3)
    for op, arg in (("forward", x), ("adjoint", y), ("backproject", y)):
        np.testing.assert_allclose(np.asarray(getattr(three, op)(arg)), np.asarray(getattr(one, op)(arg)),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="views_per_batch"):
        Projector(g, grid, views_per_batch=0)


def _mixed_stack_geometry(beam):
    """Views whose rays run mostly along z, y and x, in scrambled order (all three slice stacks)."""
    base = _geometry(beam, 60.0, n_views=4, det=16).vectors()           # steep: z-dominant rays
    flat = _geometry(beam, 10.0, n_views=8, det=16).vectors()           # shallow: x- or y-dominant rays
    vec = np.concatenate([flat[:3], base[:2], flat[3:6], base[2:], flat[6:]])
    return Geometry.from_vectors(vec, (16, 16), beam=beam)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_views_of_all_stacks_land_at_their_own_index(beam):
    from lamino.projector._plan import dominant_axes

    g = _mixed_stack_geometry(beam)
    grid = VolumeGrid((10, 12, 11), 1.0)
    assert set(dominant_axes(g.vectors(), grid, beam)) == {0, 1, 2}
    rng = np.random.default_rng(7)
    x = rng.random(grid.shape).astype(np.float32)
    y = rng.random((g.n_views, 16, 16)).astype(np.float32)
    P = Projector(g, grid)
    proj = np.asarray(P.forward(x))
    for i in (0, 3, 4, 9, g.n_views - 1):       # each view alone, as a one-view geometry
        one = Projector(Geometry.from_vectors(g.vectors()[i:i + 1], (16, 16), beam=beam), grid)
        np.testing.assert_allclose(proj[i], np.asarray(one.forward(x))[0], rtol=1e-5, atol=1e-6)
        yi = np.zeros_like(y)
        yi[i] = y[i]
        np.testing.assert_allclose(np.asarray(P.adjoint(yi)), np.asarray(one.adjoint(y[i:i + 1])), rtol=1e-4,
                                   atol=1e-5)
    assert np.vdot(proj.astype(np.float64), y) == pytest.approx(np.vdot(x, np.asarray(P.adjoint(y), np.float64)),
                                                                rel=1e-5)


def test_tilts_share_compilations():
    # the plan does not depend on the tilt: a tilt sweep compiles once per view count (parallel beam; a
    # second variant when no ray runs mostly along x), and FDK's backprojector too (cone beam)
    grid = VolumeGrid((8, 10, 10), 1.0)
    x = np.ones(grid.shape, np.float32)
    fns, compiled = [], []
    for tilt in (12.0, 33.0, 50.0, 61.0):
        P = Projector(_geometry("parallel", tilt, n_views=6, det=16), grid)
        P.backproject(P.forward(x))
        fns.append([s.fns for s in P._shards])
        compiled.append([f._cache_size() for s in P._shards for f in s.fns[::2]])   # one per device
    assert fns[0] == fns[1] and fns[2] == fns[3] and fns[1] != fns[2]
    assert compiled[0] == compiled[1] and compiled[2] == compiled[3]
    cone = [Projector(_geometry("cone", t, n_views=6, det=16), grid) for t in (12.0, 33.0)]
    assert cone[0]._shards[0].fns[2] is cone[1]._shards[0].fns[2]


def test_any_tilt_backprojection_plan_gives_the_exact_plan_result():
    from lamino.projector import backproject
    from lamino.projector._plan import make_plan

    grid = VolumeGrid((10, 12, 12), 1.0)
    g = _geometry("cone", 35.0, n_views=5, det=16)
    y = np.random.default_rng(2).random((5, 16, 16)).astype(np.float32)
    exact = make_plan(g, grid)
    wide = make_plan(g, grid, any_tilt=True)
    assert wide.stacks != exact.stacks
    np.testing.assert_allclose(np.asarray(Projector(g, grid).backproject(y)),
                               np.asarray(backproject(y, g.vectors(), exact, grid, g.det_shape)), rtol=1e-5,
                               atol=1e-6)


def test_changing_the_input_array_after_the_call_does_not_change_the_result():
    # CPU devices read a caller's numpy array in place; the Projector must be done with it before returning
    grid = VolumeGrid((24, 32, 32), 1.0)
    P = Projector(_geometry("parallel", 30.0, n_views=24, det=40), grid, devices=jax.devices()[:1])
    x = np.full(grid.shape, MU, np.float32)
    expected = np.asarray(P.forward(x.copy()))
    proj = P.forward(x)
    x[:] = 0.0
    np.testing.assert_allclose(np.asarray(proj), expected, rtol=1e-6)
    y = np.ones(P.proj_shape, np.float32)
    expected = np.asarray(P.adjoint(y.copy()))
    vol = P.adjoint(y)
    y[:] = 0.0
    np.testing.assert_allclose(np.asarray(vol), expected, rtol=1e-6)


def test_projector_is_a_linear_operator():
    g = Geometry.cone(30.0, 6, sod=80.0, sdd=150.0, det_shape=(14, 16), det_spacing=1.5, cor_offset=0.4)
    grid = VolumeGrid((8, 10, 9), 1.0)
    P = Projector(g, grid)
    assert P.shape == ((6, 14, 16), (8, 10, 9)) and P.T.shape == ((8, 10, 9), (6, 14, 16))
    assert P.T.T is P
    rng = np.random.default_rng(3)
    x = rng.random(grid.shape, dtype=np.float32)
    y = rng.random(P.proj_shape, dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(P @ x), np.asarray(P.forward(x)))
    np.testing.assert_array_equal(np.asarray(P.T @ y), np.asarray(P.adjoint(y)))
    lhs = float(np.vdot(np.asarray(P @ x, np.float64), y))
    rhs = float(np.vdot(x, np.asarray(P.T @ y, np.float64)))
    assert abs(lhs - rhs) <= 1e-5 * abs(lhs)          # the dot test: P.T is the exact adjoint


def test_adjoint_of_a_traced_geometry_is_exact():
    # without a fixed view grouping the adjoint is the transpose of the traced forward
    g = Geometry.parallel(20.0, 5, (12, 12), 1.0, det_roll_deg=1.0)
    grid = VolumeGrid((6, 8, 8), 1.0)
    rng = np.random.default_rng(4)
    x = rng.random(grid.shape, dtype=np.float32)
    y = rng.random((5, 12, 12), dtype=np.float32)

    def dot_gap(roll):
        P = Projector(g.replace(det_roll_deg=roll), grid)
        return jnp.vdot(P @ x, y) - jnp.vdot(x, P.T @ y)

    assert abs(float(jax.jit(dot_gap)(1.0))) <= 1e-5 * float(np.vdot(np.asarray(Projector(g, grid) @ x), y))
    with pytest.raises(ValueError, match="backproject"):
        jax.jit(lambda r: Projector(g.replace(det_roll_deg=r), grid).backproject(y))(1.0)


def test_plan_for_rejects_other_scans():
    g = Geometry.cone(30.0, 6, sod=80.0, sdd=150.0, det_shape=(14, 16), det_spacing=1.5)
    other = Geometry.cone(30.0, 7, sod=80.0, sdd=150.0, det_shape=(14, 16), det_spacing=1.5)
    with pytest.raises(ValueError, match="plan_for"):
        jax.jit(lambda t: Projector(g.replace(tilt_deg=t), VolumeGrid((8, 8, 8), 1.0), plan_for=[other]).forward(
            jnp.zeros((8, 8, 8))))(30.0)


@pytest.mark.parametrize("tilt", [30.0, 45.0])
def test_fbp_is_as_sharp_as_a_single_interpolation_backprojection(monkeypatch, tilt):
    """The shear-warp backprojection interpolates twice (detector → plane → slice); with its plane prefilter,
    small blobs at generic positions reconstruct as high as with one interpolation per voxel and view (within
    0.5 %; 2 % lower without the prefilter), and with no more noise (3 % less at 30°, 13 % less at 45°)."""
    n = 32
    grid = VolumeGrid((n, n, n), 1.0)
    g = Geometry.parallel(tilt, 120, (n, n), 1.0)
    centres = [(-5.5, 3.5, 2.5), (6.5, -4.5, -3.5), (2.5, 7.5, -6.5), (-7.5, -6.5, 7.5)]     # voxel centres
    blobs = sum(gaussian_projections(g, 2.0, center=c) for c in centres)
    noise = np.random.default_rng(0).normal(0.0, 1.0, blobs.shape).astype(np.float32)
    voxels = tuple(np.array([[round(c[2 - k] + n / 2 - 0.5) for c in centres] for k in range(3)]))
    ours = np.asarray(fbp(blobs, g, grid, extend=False))[voxels]
    ours_noise = np.asarray(fbp(noise, g, grid, extend=False))[8:24, 8:24, 8:24].std()
    monkeypatch.setattr(analytic, "backproject_measured",
                        lambda filtered, geometry, grid, weights, measured=True:
                        voxel_driven_backproject(np.asarray(filtered), geometry, grid))
    once = np.asarray(fbp(blobs, g, grid, extend=False))[voxels]
    once_noise = np.asarray(fbp(noise, g, grid, extend=False))[8:24, 8:24, 8:24].std()
    assert np.all(once > 0.6)                       # cos α × 1, less the blur of a 2-voxel blob
    assert np.mean(ours / once) == pytest.approx(1.0, abs=0.005)
    assert 0.8 * once_noise < ours_noise < once_noise

"""Gradients through the projector with respect to every geometry parameter (Geometry is a JAX pytree).

Each derivative from ``jax.grad`` through the public API is checked against a central finite difference of
the same loss with the parameter changed through ``Geometry.replace`` (float64 geometry, float32 projector).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamino import Geometry, Projector, VolumeGrid

GRID = VolumeGrid((10, 12, 12), 1.0)
DET = (14, 18)


def _blob() -> np.ndarray:
    """A smooth, off-centre, anisotropic Gaussian (μ in 1/mm): every parameter moves its projections."""
    z, y, x = np.meshgrid(*(GRID.axis(k) for k in range(3)), indexing="ij")
    return (0.2 * np.exp(-((x - 2.8) ** 2 / 8.0 + (y + 2.2) ** 2 / 6.0 + (z - 1.2) ** 2 / 5.0))).astype(np.float32)


def _ramps() -> np.ndarray:
    """Detector weights that rise along rows and columns, differently in each view: a loss that every shift,
    turn or zoom of the projections changes to first order."""
    r, c = np.meshgrid(np.arange(DET[0]), np.arange(DET[1]), indexing="ij")
    slopes = np.random.default_rng(0).uniform(0.05, 0.15, (5, 2))
    return ((1.0 + slopes[:, 0, None, None] * r) * (1.0 - slopes[:, 1, None, None] * (c - DET[1]))).astype(np.float32)


VOL = _blob()
WEIGHTS = _ramps()


def _geometry(beam: str) -> Geometry:
    kw = dict(det_shape=DET, cor_offset=0.3, det_offset=(0.4, -0.5), det_roll_deg=2.0)
    if beam == "cone":
        return Geometry.cone(25.0, 5, sod=60.0, sdd=110.0, det_spacing=(1.6, 1.5), **kw)
    return Geometry.parallel(25.0, 5, det_spacing=(0.9, 0.85), **kw)


def _loss(g: Geometry):
    return jnp.sum(Projector(g, GRID).forward(VOL) * WEIGHTS)


# (leaf, component or None, finite-difference step). The projector interpolates linearly, so the loss is
# piecewise smooth: steps of ~1/20 pixel keep the difference local, and the float32 loss (rounding ~1e-4 here)
# adds at most ~1e-4 / h to the difference quotient.
CASES = [("tilt_deg", None, 0.05), ("cor_offset", None, 0.05), ("det_roll_deg", None, 0.1),
         ("det_offset", 0, 0.05), ("det_offset", 1, 0.05), ("det_spacing", 0, 0.005), ("det_spacing", 1, 0.005),
         ("sod", None, 0.5), ("sdd", None, 0.5)]
# allowed relative difference of derivative and difference quotient: bilinear interpolation makes the loss
# piecewise smooth, and in parallel beam all rays of a view cross voxel edges together, so the local slope
# differs from the slope over ±h by up to ~6 % here (a wrong sign, factor or unit is off by ≥ 50 %)
REL = 0.08


def _close(auto: float, fd: float, h: float) -> bool:
    return abs(auto - fd) <= REL * abs(fd) + 2e-4 / h


def _changed(g: Geometry, name: str, index, delta: float) -> Geometry:
    value = getattr(g, name)
    if index is None:
        return g.replace(**{name: value + delta})
    pair = list(value)
    pair[index] += delta
    return g.replace(**{name: tuple(pair)})


def _central(f, g, name, index, h) -> float:
    return (float(f(_changed(g, name, index, h))) - float(f(_changed(g, name, index, -h)))) / (2 * h)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_grad_of_every_leaf_matches_finite_differences(beam):
    g = _geometry(beam)
    grads = jax.grad(_loss)(g)
    assert isinstance(grads, Geometry)          # the cotangent is a geometry of the same structure
    checked = 0
    for name, index, h in CASES:
        if getattr(g, name) is None:            # sod / sdd of a parallel beam
            continue
        auto = getattr(grads, name) if index is None else getattr(grads, name)[index]
        fd = _central(_loss, g, name, index, h)
        assert abs(fd) > 20 * 2e-4 / h, (name, fd)       # the parameter does change the loss
        assert _close(float(auto), fd, h), (name, index, float(auto), fd)
        checked += 1
    assert checked == (9 if beam == "cone" else 7)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_grad_with_respect_to_the_view_angles(beam):
    g = _geometry(beam)
    grads = np.asarray(jax.grad(_loss)(g).angles_deg)
    direction = np.sign(grads)          # turn every view the way that changes the loss most (no cancellation)
    h = 0.05
    plus = g.replace(angles_deg=np.asarray(g.angles_deg) + h * direction)
    minus = g.replace(angles_deg=np.asarray(g.angles_deg) - h * direction)
    fd = (float(_loss(plus)) - float(_loss(minus))) / (2 * h)
    auto = float(np.dot(grads, direction))
    assert _close(auto, fd, h), (auto, fd)


@pytest.mark.parametrize("beam", ["parallel", "cone"])
def test_grad_with_respect_to_from_vectors(beam):
    vec = np.asarray(_geometry(beam).vectors())

    def loss(v):
        return _loss(Geometry.from_vectors(v, DET, beam=beam))

    grad = np.asarray(jax.grad(loss)(jnp.asarray(vec)))
    assert grad.shape == vec.shape and np.all(np.isfinite(grad))
    rng = np.random.default_rng(1)
    direction = rng.normal(size=vec.shape)
    direction[:, 0:3] *= 0.0 if beam == "parallel" else 1.0       # keep the parallel rays' direction exact
    h = 0.02
    fd = (float(loss(vec + h * direction)) - float(loss(vec - h * direction))) / (2 * h)
    auto = float(np.sum(grad * direction))
    assert _close(auto, fd, h), (auto, fd)


def test_the_one_leaf_example_of_the_contract():
    # jax.grad(lambda r: loss(Projector(Geometry.cone(..., det_roll_deg=r), grid).forward(vol)))
    def loss(roll):
        g = Geometry.cone(25.0, 5, sod=60.0, sdd=110.0, det_shape=DET, det_spacing=1.5, det_roll_deg=roll)
        return jnp.sum(Projector(g, GRID).forward(VOL) * WEIGHTS)

    auto = float(jax.grad(loss)(2.0))
    fd = (float(loss(2.1)) - float(loss(1.9))) / 0.2
    assert abs(fd) > 0.05 and _close(auto, fd, 0.1)


def test_jit_of_grad_needs_a_plan_for_traced_cone_sources():
    g = _geometry("cone")
    with pytest.raises(ValueError, match="plan_for"):
        jax.jit(jax.grad(_loss))(g)

    def planned(geom):
        return jnp.sum(Projector(geom, GRID, plan_for=(g,)).forward(VOL) * WEIGHTS)

    jitted = jax.jit(jax.grad(planned))(g)
    eager = jax.grad(_loss)(g)
    for name in ("tilt_deg", "cor_offset", "sod", "det_roll_deg"):
        assert float(getattr(jitted, name)) == pytest.approx(float(getattr(eager, name)), rel=1e-3, abs=1e-4)


def test_jit_over_a_parallel_geometry_compiles_without_a_plan():
    g = _geometry("parallel")
    value = jax.jit(_loss)(g)
    assert float(value) == pytest.approx(float(_loss(g)), rel=1e-5)


def test_geometry_pytree_round_trip_keeps_a_hashable_equal_geometry():
    for beam in ("parallel", "cone"):
        g = _geometry(beam)
        leaves, tree = jax.tree.flatten(g)
        again = jax.tree.unflatten(tree, leaves)
        assert again == g and hash(again) == hash(g)
        doubled = jax.tree.map(lambda x: 2 * jnp.asarray(x), g)
        assert doubled.tilt_deg == pytest.approx(50.0) and doubled.det_shape == g.det_shape
    assert len(jax.tree.leaves(_geometry("cone"))) == 10   # spacing ×2, tilt, angles, sod, sdd, cor, offset ×2, roll

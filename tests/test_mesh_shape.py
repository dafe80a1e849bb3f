"""MeshShape and load_mesh (lamino/phantoms/mesh.py): exact chords, intervals, inside tests, loading. Units: mm."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
import trimesh

_PATH = pathlib.Path(__file__).resolve().parents[1] / "lamino" / "phantoms" / "mesh.py"
_spec = importlib.util.spec_from_file_location("_lamino_phantoms_mesh_under_test", _PATH)
mesh_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mesh_mod)
MeshShape, load_mesh = mesh_mod.MeshShape, mesh_mod.load_mesh

BOX_LO, BOX_HI = np.array([-1.0, -1.0, -1.0]), np.array([3.0, 5.0, 7.0])


def _box_mesh():
    """trimesh box with extents (4, 6, 8) mm shifted by (1, 2, 3): spans BOX_LO..BOX_HI."""
    return trimesh.creation.box(extents=(4, 6, 8)).apply_translation((1, 2, 3))


def _slab(o, d, lo, hi):
    """Full-line slab method: (tmin, tmax) of o + t·d inside the box, tmin > tmax when it misses."""
    o, d = np.broadcast_arrays(np.asarray(o, float), np.asarray(d, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        ta, tb = (lo - o) / d, (hi - o) / d
    inside = (o >= lo) & (o <= hi)
    tmin = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb)).max(axis=-1)
    tmax = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb)).min(axis=-1)
    return tmin, tmax


def _box_chord(o, d, lo=BOX_LO, hi=BOX_HI):
    tmin, tmax = _slab(o, d, lo, hi)
    return np.maximum(tmax - tmin, 0.0) * np.linalg.norm(np.broadcast_to(d, np.shape(o)), axis=-1)


def _signed_crossing_length(mesh, o, d):
    """Reference in float64: L = Σ_hits t·sign(d·n)·|d| over all triangle hits (Möller–Trumbore, closed mesh)."""
    tri = np.asarray(mesh.triangles, float)
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = np.cross(e1, e2)
    out = np.empty(len(o))
    for i, (oi, di) in enumerate(zip(o, d, strict=True)):
        p = np.cross(di, e2)
        det = np.einsum("ij,ij->i", e1, p)
        s = oi - a
        q = np.cross(s, e1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.einsum("ij,ij->i", s, p) / det
            v = (q @ di) / det
            t = np.einsum("ij,ij->i", e2, q) / det
        hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1)
        out[i] = np.sum(t[hit] * np.sign(n[hit] @ di)) * np.linalg.norm(di)
    return out


def _padded(o, d, n=4096):
    """Rays padded to n (zero directions: no intervals), so that box tests share one compiled trace."""
    pad = n - len(o)
    return np.concatenate([o, np.zeros((pad, 3))]), np.concatenate([d, np.zeros((pad, 3))])


@pytest.fixture(scope="module")
def box():
    return MeshShape(_box_mesh())


@pytest.fixture(scope="module")
def sphere():
    return MeshShape(trimesh.creation.icosphere(subdivisions=4, radius=5.0), max_crossings=4)


def test_box_chords_match_slab_method(box):
    assert box.n_intervals >= 1
    lo, hi = box.bounds_local()
    np.testing.assert_allclose(lo, BOX_LO)
    np.testing.assert_allclose(hi, BOX_HI)
    rng = np.random.default_rng(0)
    o = rng.uniform(-4, 9, size=(3000, 3))  # outside, inside (full-line semantics) and missing
    d = rng.normal(size=(3000, 3)) * rng.uniform(0.2, 5.0, size=(3000, 1))  # not unit length
    axis_o = np.array([[-10, 0, 0], [1, -10, 2], [0.5, 0.5, -10], [2, 2, 2], [-10, 6, 0], [-10, 0, 7.5]])
    axis_d = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0.5], [0, 0, -3], [1, 0, 0], [1, 0, 0]], float)
    o, d = np.concatenate([o, axis_o]), np.concatenate([d, axis_d])
    ref = _box_chord(o, d)
    assert (ref == 0).sum() > 100 and (ref > 0).sum() > 1000  # both hits and misses are exercised
    lengths = np.asarray(box.path_length(*_padded(o, d)))[: len(o)]
    np.testing.assert_allclose(lengths, ref, atol=1e-4)
    np.testing.assert_allclose(lengths[-6:], [4, 6, 8, 8, 0, 0], atol=1e-5)  # the axis-parallel lines
    t0, t1 = (np.asarray(x)[:, : len(o)] for x in box.intervals(*_padded(o, d)))
    assert t0.shape == (box.n_intervals, len(o))
    tmin, tmax = _slab(o, d, BOX_LO, BOX_HI)
    hit = ref > 1e-3
    np.testing.assert_allclose(t0[0, hit], tmin[hit], atol=1e-4)  # t in units of d (not mm)
    np.testing.assert_allclose(t1[0, hit], tmax[hit], atol=1e-4)
    assert np.all(t0[1:] == 0) and np.all(t1[1:] == 0)  # unused slots: t0 = t1 = 0
    assert np.all(t0[0, ~hit & (ref == 0)] == 0)


def test_rays_through_edges_and_vertices_are_counted_once(box):
    o = np.array([
        [-1, -1, 3],  # on the vertical edge x = y = -1, into the box along the xy diagonal
        [-1, -1, -1],  # corner, along the body diagonal
        [3, 5, 7],  # opposite corner, going in backwards
        [-5, 2, 3],  # along +x through the centre of face x = -1: the face's triangulation diagonal
        [-5, 0, 1 / 3],  # along +x through the point (y, z) = (0, 1/3) of that face diagonal
        [1, -1, -1],  # on the bottom edge of the face y = -1, into the box along (0, 1, 1)
    ])
    d = np.array([[1, 1, 0], [1, 1, 1], [-1, -1, -1], [1, 0, 0], [1, 0, 0], [0, 1, 1]], float)
    expected = [4 * np.sqrt(2), 4 * np.sqrt(3), 4 * np.sqrt(3), 4, 4, 6 * np.sqrt(2)]
    ys = np.linspace(-0.9, 4.9, 30)
    diagonals = np.concatenate([  # both diagonals of the face x = -1: one is the edge of its two triangles
        np.stack([np.full(30, -5.0), ys, -1 + (ys + 1) * 8 / 6], axis=1),
        np.stack([np.full(30, -5.0), ys, 7 - (ys + 1) * 8 / 6], axis=1),
    ])
    o = np.concatenate([o, diagonals])
    d = np.concatenate([d, np.tile([1.0, 0, 0], (60, 1))])
    expected = np.concatenate([expected, np.full(60, 4.0)])
    np.testing.assert_allclose(np.asarray(box.path_length(*_padded(o, d)))[: len(o)], expected, atol=1e-4)
    assert np.all(np.asarray(box.crossing_counts(*_padded(o, d)))[: len(o)] == 2)
    # a subdivided box: axis-parallel and diagonal rays through a lattice of shared vertices and edges
    fine = MeshShape(trimesh.creation.box(extents=(4, 6, 8)).subdivide().subdivide(), max_crossings=4)
    g = np.arange(-1.75, 1.76, 0.25)
    yy, zz = np.meshgrid(g, g * 1.5)
    lattice = np.stack([np.full(yy.size, -9.0), yy.ravel(), zz.ravel()], axis=1)
    for direction in ([1.0, 0, 0], [1.0, 0.5, 0], [1.0, 0.75, 1.0]):
        ref = _box_chord(lattice, np.asarray(direction), lo=np.array([-2, -3, -4]), hi=np.array([2, 3, 4]))
        np.testing.assert_allclose(np.asarray(fine.path_length(lattice, direction)), ref, atol=1e-4)


def test_sphere_chords(sphere):
    rng = np.random.default_rng(1)
    n = 2000
    d = rng.normal(size=(n, 3))
    d[0] = [0.0, 0.0, 1.0]
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    b = 5.0 * np.sqrt(rng.uniform(0, 0.81, n))  # impact parameter up to 0.9 r (tangent chords are ill-posed)
    b[0] = 0.0
    perp = np.cross(dn, rng.normal(size=(n, 3)))
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    o = b[:, None] * perp + rng.uniform(-20, 20, (n, 1)) * dn
    got = np.asarray(sphere.path_length(o, d))
    assert abs(got[0] - 10.0) < 0.005 * 10.0  # through the centre
    np.testing.assert_allclose(got, 2 * np.sqrt(25.0 - b**2), rtol=0.01)
    miss = np.asarray(sphere.path_length(o + 6.0 * perp, d))
    assert np.all(miss == 0)


def test_nonconvex_two_boxes_and_torus_vs_signed_crossings():
    two = trimesh.util.concatenate([trimesh.creation.box(extents=(2, 2, 2)),
                                    trimesh.creation.box(extents=(3, 2, 2)).apply_translation((5, 0, 0))])
    shape = MeshShape(two)
    assert shape.n_intervals >= 2
    t0, t1 = (np.asarray(x) for x in shape.intervals(np.array([-10.0, 0.2, -0.3]), np.array([2.0, 0.0, 0.0])))
    np.testing.assert_allclose(t0[:2], [4.5, 6.75], atol=1e-5)  # entries at x = -1 and x = 3.5
    np.testing.assert_allclose(t1[:2], [5.5, 8.25], atol=1e-5)  # exits at x = 1 and x = 6.5
    np.testing.assert_allclose((t1[:2] - t0[:2]) * 2.0, [2.0, 3.0], atol=1e-5)
    assert np.all(t0[2:] == 0) and np.all(t1[2:] == 0)
    torus = trimesh.creation.torus(major_radius=4.0, minor_radius=1.5, major_sections=48, minor_sections=16)
    ring = MeshShape(torus, max_crossings=8)
    rng = np.random.default_rng(2)
    o = rng.uniform([-7, -7, -2], [7, 7, 2], size=(300, 3))
    d = rng.normal(size=(300, 3)) * rng.uniform(0.5, 2.0, size=(300, 1))
    ref = _signed_crossing_length(torus, o, d)
    assert (ref > 0).sum() > 150
    np.testing.assert_allclose(np.asarray(ring.path_length(o, d)), ref, atol=1e-4)
    t0, t1 = ring.intervals(o, d)
    assert np.all(np.asarray(t1) >= np.asarray(t0))
    lengths = np.sort(np.asarray((t1 - t0) * np.linalg.norm(d, axis=1)), axis=0)
    assert (lengths[-2] > 0).sum() > 10  # some lines cross both sides of the ring: two intervals


def test_contains_matches_volume_fractions(box, sphere):
    rng = np.random.default_rng(3)
    p = rng.uniform(BOX_LO - 0.5, BOX_HI + 0.5, size=(100_000, 3))
    inside = np.asarray(box.contains(p))
    truth = np.all((p > BOX_LO) & (p < BOX_HI), axis=1)
    assert np.array_equal(inside, truth)  # no random point lies on the surface
    assert abs(inside.mean() * 315.0 - 192.0) < 0.01 * 192.0
    q = rng.uniform(-5.5, 5.5, size=(100_000, 3))
    r = np.linalg.norm(q, axis=1)
    inside = np.asarray(sphere.contains(q.reshape(200, 500, 3))).reshape(-1)
    far = np.abs(r - 5.0) > 0.05  # the polygon lies up to ~0.01 mm inside the sphere
    assert np.array_equal(inside[far], r[far] < 5.0)
    assert abs(inside.mean() * 11.0**3 - sphere.mesh.volume) < 0.01 * sphere.mesh.volume
    x, y, z = np.linspace(-2, 4, 13), np.linspace(-2, 6, 17), np.linspace(-2, 8, 21)
    grid = np.asarray(box.contains_grid(x, y, z))
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij")
    pts = np.stack([xx, yy, zz], axis=-1)
    assert grid.shape == (21, 17, 13)
    assert np.array_equal(grid, np.asarray(box.contains(pts)))
    off = ~np.any(np.isclose(pts, BOX_LO) | np.isclose(pts, BOX_HI), axis=-1)
    assert np.array_equal(grid[off], np.all((pts > BOX_LO) & (pts < BOX_HI), axis=-1)[off])


def test_broadcasting_jit_and_degenerate_directions(box):
    o = np.zeros((4, 5, 3)) + [1.0, 2.0, 3.0]
    d = np.array([[0.0, 0.0, 2.0]] * 4 + [[0.0, 0.0, 0.0]])  # (5, 3): the last direction is zero
    lengths = np.asarray(box.path_length(o, d))
    assert lengths.shape == (4, 5)
    np.testing.assert_allclose(lengths[:, :4], 8.0, atol=1e-5)
    assert np.all(lengths[:, 4] == 0)  # a zero direction has no intervals
    t0, t1 = box.intervals(o, d)
    assert t0.shape == t1.shape == (box.n_intervals, 4, 5)
    np.testing.assert_allclose(np.asarray(t1 - t0)[0, :, :4], 4.0, atol=1e-5)  # 8 mm of box at |d| = 2
    np.testing.assert_allclose(np.asarray(t0)[0, :, :4], -2.0, atol=1e-5)  # z = 3 - 2·2 = -1
    traced = jax.make_jaxpr(lambda a, b: (box.path_length(a, b), *box.intervals(a, b), box.contains(a)))(o, d)
    n = box.n_intervals  # traceable with abstract inputs, hence usable inside jax.jit
    assert [v.shape for v in traced.out_avals] == [(4, 5), (n, 4, 5), (n, 4, 5), (4, 5)]


def test_load_mesh_units_and_errors(tmp_path):
    part = tmp_path / "part.stl"
    trimesh.creation.box(extents=(1, 2, 3)).export(part)
    mesh = load_mesh(part, units="cm")
    np.testing.assert_allclose(mesh.extents, [10, 20, 30], rtol=1e-6)
    assert mesh.volume == pytest.approx(6000.0, rel=1e-6)
    np.testing.assert_allclose(load_mesh(str(part), units="m", scale=2.0).extents, [2, 4, 6], rtol=1e-6)
    np.testing.assert_allclose(load_mesh(part, units="in").extents, [25.4, 50.8, 76.2], rtol=1e-6)

    inverted = trimesh.creation.box(extents=(1, 2, 3))
    inverted.invert()
    fixed = load_mesh(inverted)
    assert inverted.volume < 0 < fixed.volume  # the input is not modified
    shape = MeshShape(inverted, max_crossings=4)
    assert shape.mesh.volume > 0
    assert np.array_equal(np.asarray(shape.contains(np.array([[0.0, 0, 0], [0.0, 0, 2.0]]))), [True, False])

    open_box = trimesh.creation.box(extents=(1, 2, 3))
    open_box.update_faces(np.arange(len(open_box.faces)) >= 2)
    leaky = tmp_path / "leaky_part.stl"
    open_box.export(leaky)
    with pytest.raises(ValueError, match=r"mesh '.*leaky_part\.stl' is not watertight.*fill_holes") as err:
        load_mesh(leaky)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not watertight"):
        MeshShape(open_box)
    with pytest.raises(ValueError, match="no_such_part.stl"):
        load_mesh(tmp_path / "no_such_part.stl")
    with pytest.raises(ValueError, match=r"units='furlong'.*'mm'.*'in'"):
        load_mesh(part, units="furlong")
    with pytest.raises(ValueError, match="scale"):
        load_mesh(part, scale=-1.0)
    with pytest.raises(ValueError, match="empty"):
        load_mesh(trimesh.Trimesh())


def test_10k_triangles_by_10k_rays():
    torus = trimesh.creation.torus(major_radius=4.0, minor_radius=1.0, major_sections=100, minor_sections=50)
    assert len(torus.faces) == 10_000
    shape = MeshShape(torus, max_crossings=8)
    u, v = np.meshgrid(np.linspace(-6, 6, 100), np.linspace(-6, 6, 100))
    o = np.stack([u.ravel(), np.full(10_000, -10.0), v.ravel()], axis=1)  # a 100 × 100 parallel projection
    d = np.array([0.3, 1.0, 0.1]) + np.zeros((10_000, 3))
    t0, t1 = shape.intervals(o, d)
    lengths = np.asarray(t1 - t0) * np.linalg.norm(d, axis=1)
    assert np.all(np.isfinite(lengths)) and np.all(lengths >= 0) and np.all(lengths.sum(axis=0) < 10.0)
    assert (lengths[1] > 0).sum() > 100  # lines through both sides of the ring
    lengths = lengths.sum(axis=0)
    np.testing.assert_allclose(lengths[:50], _signed_crossing_length(torus, o[:50], d[:50]), atol=1e-4)

"""Splatted mesh path lengths (L-buffer) against closed forms and an independent ray–triangle intersection."""

import numpy as np
import pytest
import trimesh

from lamino.geometry import Geometry
from lamino.phantoms import Box, Phantom, from_mesh, place
from lamino.phantoms.mesh_projection import mesh_path_lengths

CONE = Geometry.cone(tilt_deg=30.0, n_views=3, det_shape=(40, 48), det_spacing=0.4, sod=100.0, sdd=300.0)
PARALLEL = Geometry.parallel(tilt_deg=20.0, n_views=3, det_shape=(40, 48), det_spacing=0.25, cor_offset=0.3,
                             det_roll_deg=2.0)


@pytest.mark.parametrize("geometry", [CONE, PARALLEL], ids=["cone", "parallel"])
def test_box_mesh_matches_the_analytic_box(geometry):
    size = (6.0, 4.0, 3.0)
    mesh = trimesh.creation.box(size)
    mesh.apply_translation((0.3, -0.2, 0.1))
    analytic = Phantom.build("box", [place(Box(size), "aluminium", at=(0.3, -0.2, 0.1))]).path_lengths(geometry)
    splat = mesh_path_lengths(mesh.vertices, mesh.faces, geometry)
    np.testing.assert_allclose(splat, analytic["aluminium"], atol=2e-5 * 7.5)


def _chords_by_intersection(vertices, faces, geometry) -> np.ndarray:
    """Path lengths (views, rows, cols) through a closed mesh, found independently of lamino's tracers: every
    pixel ray against every triangle (Möller & Trumbore, J. Graph. Tools 2, 21, 1997), the hit distances sorted
    and paired (enter, exit)."""
    tri = np.asarray(vertices, float)[np.asarray(faces)]                    # (F, 3, 3)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    vec = np.asarray(geometry.vectors())
    pix = geometry.pixel_positions().reshape(len(vec), -1, 3)                # (V, P, 3)
    if geometry.beam == "cone":
        origin = np.broadcast_to(vec[:, None, 0:3], pix.shape)
        direction = pix - origin
    else:
        origin, direction = pix, np.broadcast_to(vec[:, None, 0:3], pix.shape)
    out = np.zeros(pix.shape[:2])
    for v in range(len(vec)):
        o, d = origin[v][:, None], direction[v][:, None]                      # (P, 1, 3)
        p = np.cross(d, e2[None])
        det = np.sum(e1[None] * p, -1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = o - tri[None, :, 0]
            a = np.sum(s * p, -1) / det
            q = np.cross(s, e1[None])
            b = np.sum(d * q, -1) / det
            t = np.sum(e2[None] * q, -1) / det
        hit = (np.abs(det) > 1e-12) & (a >= 0) & (b >= 0) & (a + b <= 1)
        t = np.where(hit, t, np.inf)
        t.sort(axis=1)
        n_hits = hit.sum(1)
        assert np.all(n_hits % 2 == 0)                                         # every ray leaves what it enters
        with np.errstate(invalid="ignore"):                                    # inf − inf of rays with no hit
            pairs = np.where(np.isfinite(t[:, 1::2]), t[:, 1::2] - t[:, 0::2], 0.0)
        out[v] = pairs.sum(1) * np.linalg.norm(direction[v], axis=-1)
    return out.reshape(len(vec), *geometry.det_shape)


@pytest.mark.parametrize("geometry", [CONE, PARALLEL], ids=["cone", "parallel"])
def test_sphere_mesh_matches_ray_triangle_intersection(geometry):
    mesh = trimesh.creation.icosphere(3, 5.0)
    mesh.apply_translation((0.3, -0.2, 0.1))
    reference = _chords_by_intersection(mesh.vertices, mesh.faces, geometry)
    assert reference.max() > 9.5
    splat = mesh_path_lengths(mesh.vertices, mesh.faces, geometry)
    np.testing.assert_allclose(splat, reference, atol=3e-5 * 10)
    traced = from_mesh(mesh, material="aluminium").path_lengths(geometry)["aluminium"]
    np.testing.assert_allclose(traced, reference, atol=3e-5 * 10)


def test_pixels_exactly_on_shared_edges_count_once():
    # odd detector, 0.5 mm pixels: the cube's edges and the diagonals of its faces run through pixel centres
    g = Geometry.parallel(tilt_deg=0.0, n_views=2, det_shape=(21, 21), det_spacing=0.5, angles_deg=(0.0, 90.0))
    mesh = trimesh.creation.box((4.0, 4.0, 4.0))
    lengths = mesh_path_lengths(mesh.vertices, mesh.faces, g)
    assert set(np.unique(np.round(lengths, 4))) <= {0.0, 4.0}         # never one face without its partner
    assert np.sum(lengths[0] > 2) in (8 * 8, 9 * 8, 9 * 9)             # the 4 mm square, its edges once


def test_large_triangles_and_a_source_inside_the_mesh():
    mesh = trimesh.creation.box((300.0, 300.0, 300.0))                 # a few huge triangles
    g = Geometry.parallel(tilt_deg=10.0, n_views=1, det_shape=(8, 8), det_spacing=1.0)
    lengths = mesh_path_lengths(mesh.vertices, mesh.faces, g)
    np.testing.assert_allclose(lengths, 300.0 / np.cos(np.radians(10.0)), rtol=1e-5)
    with pytest.raises(ValueError, match="sod"):
        mesh_path_lengths(mesh.vertices, mesh.faces, CONE)


def test_a_mesh_phantom_traces_by_splatting_with_its_placement():
    mesh = trimesh.creation.icosphere(2, 3.0)
    ph = from_mesh(mesh, material="aluminium")
    g = Geometry.cone(tilt_deg=20.0, n_views=2, det_shape=(24, 24), det_spacing=0.5, sod=80.0, sdd=160.0)
    lengths = ph.path_lengths(g)["aluminium"]
    np.testing.assert_allclose(lengths, mesh_path_lengths(mesh.vertices, mesh.faces, g), atol=1e-6)
    assert lengths.max() == pytest.approx(6.0, rel=0.02)

"""Splatted mesh path lengths (L-buffer) against closed forms and the exact per-ray mesh tracer."""

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


@pytest.mark.parametrize("geometry", [CONE, PARALLEL], ids=["cone", "parallel"])
def test_sphere_mesh_matches_the_per_ray_tracer(geometry):
    mesh = trimesh.creation.icosphere(3, 5.0)
    mesh.apply_translation((0.3, -0.2, 0.1))
    traced = from_mesh(mesh, material="aluminium").path_lengths(geometry)["aluminium"]
    splat = mesh_path_lengths(mesh.vertices, mesh.faces, geometry)
    assert traced.max() > 9.5
    np.testing.assert_allclose(splat, traced, atol=3e-5 * 10)


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

"""LEGO phantom: dimensions of the 2 × 4 brick (part 3001), voxel volumes vs hand-computed volumes, exact chords,
variants, the seeded baseplate assembly and parameter validation."""

import math

import numpy as np
import pytest
from scipy import ndimage

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms.lego import lego

# hand-written dimensions (mm), deliberately not imported from the module under test
STUD_VOLUME = math.pi * 2.4**2 * 1.7                       # Ø4.8 × 1.7
TUBE_AREA = math.pi * (3.255**2 - 2.4**2)                  # annulus Ø6.51 / Ø4.8
PIN_AREA = math.pi * 1.5**2                                # Ø3.0
# a grid slightly off the brick's planes, so no sub-sample lies exactly on a face
GRID = VolumeGrid((58, 84, 164), 0.2, center=(0.013, 0.011, 0.007))


def piece_volumes(nx, ny, height):
    """(walls and top, underside tubes or pins, studs) volumes in mm³ of an nx × ny piece of body height mm."""
    cavity_h = height - 1.0
    shell = (8 * nx - 0.2) * (8 * ny - 0.2) * height - (8 * nx - 0.2 - 2.4) * (8 * ny - 0.2 - 2.4) * cavity_h
    if nx >= 2 and ny >= 2:
        under = (nx - 1) * (ny - 1) * TUBE_AREA * cavity_h
    else:
        under = (max(nx, ny) - 1) * PIN_AREA * cavity_h
    return shell, under, nx * ny * STUD_VOLUME


def voxel_volumes(vox, voxel_volume):
    return {name: float(f.sum()) * voxel_volume for name, f in vox.label_fractions.items()}


@pytest.fixture(scope="module")
def brick_voxels():
    return lego().voxelize(GRID, supersample=2)


def test_default_brick_bounds_are_the_3001_dimensions():
    (x0, y0, z0), (x1, y1, z1) = lego().bounds
    assert (x1 - x0, y1 - y0, z1 - z0) == pytest.approx((31.8, 15.8, 9.6 + 1.7), abs=1e-9)
    assert (x0 + x1, y0 + y1, z0 + z1) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert lego().label_names == ["body", "stud", "tube"]
    assert set(lego().materials) == {"abs"}


def test_brick_voxel_volume_matches_the_hand_computed_volume(brick_voxels):
    shell, tubes, studs = piece_volumes(4, 2, 9.6)
    # 31.8·15.8·9.6 − 29.4·13.4·8.6 + 3 tube annuli · 8.6 + 8 studs
    assert shell + tubes + studs == pytest.approx(1435.368 + 391.894 + 246.100, abs=0.01)
    v = 0.2**3
    assert float(brick_voxels.fractions["abs"].sum()) * v == pytest.approx(shell + tubes + studs, rel=0.015)
    by_label = voxel_volumes(brick_voxels, v)
    assert by_label["body"] == pytest.approx(shell, rel=0.015)
    assert by_label["tube"] == pytest.approx(tubes, rel=0.03)
    assert by_label["stud"] == pytest.approx(studs, rel=0.03)


def test_brick_has_eight_studs_and_a_hollow_underside(brick_voxels):
    abs_ = brick_voxels.fractions["abs"] >= 0.5
    z = GRID.axis(0)
    z_base = -11.3 / 2
    top_layer = abs_[z > z_base + 9.6 + 0.15]                  # above the body: the 1.7 mm stud layer only
    _, n_studs = ndimage.label(top_layer)
    assert n_studs == 8

    def at(x, y, zz):
        return bool(abs_[np.argmin(abs(z - zz)), np.argmin(abs(GRID.axis(1) - y)), np.argmin(abs(GRID.axis(2) - x))])

    mid = z_base + 8.6 / 2                                     # half way up the cavity
    assert not at(4.0, 4.0, mid)                               # cavity between the tubes and the walls
    assert not at(0.0, 0.0, mid)                               # inside the middle tube
    assert at(0.0, (3.255 + 2.4) / 2, mid)                     # the middle tube's wall
    assert at(15.9 - 0.6, 0.0, mid) and at(0.0, -7.9 + 0.6, mid)   # side walls
    assert at(4.0, 4.0, z_base + 9.6 - 0.5)                    # the 1 mm top
    assert not at(0.0, 0.0, z_base + 9.6 + 0.85)               # between studs
    assert at(4.0, 4.0, z_base + 9.6 + 0.85)                   # studs centred at (±4, ±12; ±4) on the 8 mm grid
    assert at(12.0 + 2.2, -4.0, z_base + 9.6 + 0.85) and not at(12.0 + 2.6, -4.0, z_base + 9.6 + 0.85)


def test_exact_path_length_through_walls_and_tube():
    geometry = Geometry.parallel(0, 1, (1, 1), 1.0)            # one ray along +y through the origin
    # brick, z = 0 is 5.65 mm above the base, inside the 8.6 mm cavity: two 1.2 mm walls + tube Ø6.51 − Ø4.8
    chord = lego().path_lengths(geometry)["abs"][0, 0, 0]
    assert chord == pytest.approx(2 * 1.2 + (6.51 - 4.8), abs=1e-4)
    # plate, z = 0 is 2.45 mm above the base, inside the 1 mm top (2.2 … 3.2): the full 15.8 mm width
    chord = lego(kind="plate").path_lengths(geometry)["abs"][0, 0, 0]
    assert chord == pytest.approx(15.8, abs=1e-4)


@pytest.mark.parametrize("nx, ny, kind, n_tubes", [(1, 1, "brick", 0), (2, 2, "plate", 1), (1, 3, "brick", 2),
                                                    (6, 2, "plate", 5)])
def test_variants(nx, ny, kind, n_tubes):
    ph = lego(studs_x=nx, studs_y=ny, kind=kind)
    height = 9.6 if kind == "brick" else 3.2
    (x0, y0, z0), (x1, y1, z1) = ph.bounds
    assert (x1 - x0, y1 - y0, z1 - z0) == pytest.approx((8 * nx - 0.2, 8 * ny - 0.2, height + 1.7), abs=1e-9)
    assert z0 == pytest.approx(-(height + 1.7) / 2)
    assert sum(p.label == "stud" for p in ph.parts) == nx * ny
    assert sum(p.label == "tube" for p in ph.parts) == n_tubes
    grid = VolumeGrid((int((height + 2.5) / 0.2), 40 * ny + 4, 40 * nx + 4), 0.2, center=(0.013, 0.011, 0.007))
    expected = sum(piece_volumes(nx, ny, height))
    assert float(ph.voxelize(grid, 2).fractions["abs"].sum()) * 0.2**3 == pytest.approx(expected, rel=0.015)


def test_plate_height():
    (_, _, z0), (_, _, z1) = lego(kind="plate").bounds
    assert z1 - z0 == pytest.approx(3.2 + 1.7)


def _bodies(ph):
    return [(p.shape.size, p.translation) for p in ph.parts if p.label == "body"]


def test_baseplate_assembly_is_flat_seeded_and_non_overlapping():
    ph = lego(assembly="baseplate")
    (x0, y0, z0), (x1, y1, z1) = ph.bounds
    assert (x1 - x0, y1 - y0) == pytest.approx((63.8, 63.8))                  # 8 × 8 studs
    assert (x0 + x1, y0 + y1, z0 + z1) == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)
    assert z1 - z0 < 0.25 * (x1 - x0)                                       # flat: 3.2 + ≤ 9.6 + 1.7 vs 63.8
    assert "baseplate" in ph.label_names
    bodies = _bodies(ph)
    assert len(bodies) == 4
    for size, at in bodies:                                                 # pieces sit on the plate
        assert at[2] - size[2] / 2 == pytest.approx(z0 + 3.2)
    for i, (si, ai) in enumerate(bodies):                                   # footprints do not overlap
        for sj, aj in bodies[:i]:
            assert any(abs(ai[d] - aj[d]) >= (si[d] + sj[d]) / 2 - 1e-9 for d in (0, 1))
    assert lego(assembly="baseplate").parts == ph.parts                     # same seed, same assembly
    assert _bodies(lego(assembly="baseplate", seed=1)) != bodies
    assert lego(assembly="baseplate", baseplate_studs=4, n_bricks=16, seed=3).bounds[1][0] == pytest.approx(15.9)


def test_baseplate_assembly_volume_keeps_the_studs_under_the_bricks():
    # seed 1 on a 4 × 4 baseplate: a 2 × 4 brick (tubes), a 1 × 2 plate (pin) and a 1 × 1 brick
    ph = lego(assembly="baseplate", baseplate_studs=4, n_bricks=3, seed=1)
    (_, _, z0), (_, _, z1) = ph.bounds
    grid = VolumeGrid((int((z1 - z0) / 0.2) + 4, 164, 164), 0.2, center=(0.013, 0.011, 0.007))
    vox = ph.voxelize(grid, supersample=2)
    shell, under, studs = piece_volumes(4, 4, 3.2)
    expected = {"baseplate": shell, "tube": under, "stud": studs, "body": 0.0}
    for size, _ in _bodies(ph):
        nx, ny, height = round((size[0] + 0.2) / 8), round((size[1] + 0.2) / 8), size[2]
        p_shell, p_under, p_studs = piece_volumes(nx, ny, height)
        expected["body"] += p_shell
        expected["tube"] += p_under
        expected["stud"] += p_studs
    by_label = voxel_volumes(vox, 0.2**3)
    for label, volume in expected.items():
        assert by_label[label] == pytest.approx(volume, rel=0.03), label
    assert float(vox.fractions["abs"].sum()) * 0.2**3 == pytest.approx(sum(expected.values()), rel=0.015)


@pytest.mark.parametrize("kwargs, name", [
    (dict(studs_x=0), "studs_x"), (dict(studs_y=2.0), "studs_y"), (dict(kind="tower"), "kind"),
    (dict(assembly="heap"), "assembly"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(seed="0"), "seed"), (dict(n_bricks=-1), "n_bricks"), (dict(baseplate_studs=0), "baseplate_studs"),
    (dict(baseplate_studs=2, n_bricks=5), "n_bricks"), (dict(studs_x=True), "studs_x"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        lego(**kwargs)

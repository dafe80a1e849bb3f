"""Crack segmentation and detection (lamino.studies.metrics.cracks) on a synthetic cracked pellet."""

import math

import numpy as np
import pytest
from scipy import ndimage

from lamino.studies.metrics.cracks import (
    ORIENTATION_EDGES_DEG,
    CrackScores,
    crack_detection,
    dice,
    inclination_deg,
    orientation_class,
    otsu_threshold,
    precision,
    recall,
    score_cracks,
    segment_cracks,
)

SHAPE = (24, 48, 48)
S2 = math.sqrt(0.5)


def _scene():
    """Matrix μ = 1 (1/mm) in a box; three void cracks (vertical, flat, 45° oblique) and one void pore."""
    k, j, i = np.indices(SHAPE)
    region = (k >= 2) & (k < 22) & (j >= 2) & (j < 46) & (i >= 2) & (i < 46)
    masks = {
        "crack_0": region & (i >= 12) & (i < 14) & (j >= 8) & (j < 40),                     # x-normal slab
        "crack_1": region & (k >= 11) & (k < 13) & (i >= 26) & (i < 42) & (j >= 8) & (j < 24),  # z-normal slab
        "crack_2": region & (abs(k - j + 20) <= 1) & (i >= 26) & (i < 42) & (j >= 28) & (j < 40),
    }
    cracks = [{"label": "crack_0", "normal": (1.0, 0.0, 0.0)},
              {"label": "crack_1", "normal": (0.0, 0.0, 1.0)},
              {"label": "crack_2", "normal": (0.0, -S2, S2)}]
    pore = (k - 5) ** 2 + (j - 40) ** 2 + (i - 36) ** 2 <= 2.5**2
    truth = region.astype(np.float64)
    for m in [*masks.values(), pore]:
        truth[m] = 0.0
    return truth, region, masks, cracks, pore


@pytest.fixture(scope="module")
def scene():
    return _scene()


def _union(masks):
    return np.logical_or.reduce(list(masks.values()))


def test_scene_is_disjoint(scene):
    _, region, masks, _, pore = scene
    sizes = [int(m.sum()) for m in masks.values()]
    assert sizes == [2 * 32 * 20, 2 * 16 * 16, 3 * 12 * 16]    # slabs; 3-voxel diagonal band over 12 rows
    assert int(_union(masks).sum()) == sum(sizes)
    assert not (pore & _union(masks)).any() and (pore & region).sum() == pore.sum() == 81


# ------------------------------------------------------------------------------------------------ otsu
def test_otsu_two_deltas_gives_middle_of_gap():
    values = np.r_[np.zeros(30), np.ones(70)]
    assert otsu_threshold(values) == pytest.approx(0.5, abs=1e-12)
    assert otsu_threshold(np.full(5, 0.7)) == 0.7


def test_otsu_bimodal_mixture_lies_between_modes():
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.2, 0.05, 3000), rng.normal(1.0, 0.08, 7000)]
    t = otsu_threshold(values)
    assert 0.45 < t < 0.7                       # between the modes, near their midpoint 0.6
    low = values < t
    assert abs(low.sum() - 3000) < 10


# ------------------------------------------------------------------------------------------------ scores
def test_dice_precision_recall_counts_and_empty_cases():
    t = np.zeros(10, bool)
    t[:4] = True
    p = np.zeros(10, bool)
    p[2:8] = True                               # tp 2, |P| 6, |T| 4
    assert dice(p, t) == pytest.approx(0.4)
    assert precision(p, t) == pytest.approx(1 / 3)
    assert recall(p, t) == pytest.approx(0.5)
    mask = np.zeros(10, bool)
    mask[:5] = True                             # inside: tp 2, |P| 3, |T| 4
    assert (dice(p, t, mask), precision(p, t, mask), recall(p, t, mask)) == pytest.approx((4 / 7, 2 / 3, 0.5))
    empty = np.zeros(10, bool)
    assert dice(empty, empty) == 1.0 and precision(empty, empty) == 1.0 and recall(empty, empty) == 1.0
    assert precision(empty, t) == 0.0 and recall(empty, t) == 0.0 and dice(empty, t) == 0.0
    assert recall(p, empty) == 1.0 and precision(p, empty) == 0.0


@pytest.mark.parametrize("normal, incl, cls", [
    ((1, 0, 0), 90.0, "vertical"), ((0, 0, 1), 0.0, "flat"), ((0, 0, -2), 0.0, "flat"),
    ((0, S2, S2), 45.0, "oblique"), ((math.sin(math.radians(60)), 0, 0.5), 60.0, "oblique"),
    ((math.sin(math.radians(61)), 0, math.cos(math.radians(61))), 61.0, "vertical"),
    ((0, math.sin(math.radians(30)), math.cos(math.radians(30))), 30.0, "oblique"),
    ((0, math.sin(math.radians(29)), math.cos(math.radians(29))), 29.0, "flat"),
])
def test_orientation_class_by_plane_inclination(normal, incl, cls):
    assert ORIENTATION_EDGES_DEG == (30.0, 60.0)
    assert inclination_deg(normal) == pytest.approx(incl, abs=1e-9)
    assert orientation_class(normal) == cls


def test_orientation_class_rejects_zero_normal():
    with pytest.raises(ValueError, match="normal"):
        orientation_class((0, 0, 0))


# ------------------------------------------------------------------------------------------------ segmentation
def test_perfect_recon_scores_exactly_one_and_methods_agree(scene):
    truth, region, masks, cracks, pore = scene
    rel = segment_cracks(truth, region)
    otsu = segment_cracks(truth, region, method="otsu")
    np.testing.assert_array_equal(rel, otsu)
    np.testing.assert_array_equal(rel, _union(masks) | pore)
    out = score_cracks(truth, masks, cracks, region, exclude=pore)
    assert out == {"crack_dice": 1.0, "crack_precision": 1.0, "crack_recall": 1.0, "crack_detection_rate": 1.0,
                   "crack_detection_vertical": 1.0, "crack_detection_oblique": 1.0, "crack_detection_flat": 1.0}
    # without excluding the pore its 81 voxels are false positives
    n = int(_union(masks).sum())
    out = score_cracks(truth, masks, cracks, region)
    assert out["crack_precision"] == pytest.approx(n / (n + 81), rel=1e-12)
    assert out["crack_dice"] == pytest.approx(2 * n / (2 * n + 81), rel=1e-12)


def test_relative_threshold_uses_fraction_of_matrix_mu(scene):
    truth, region, masks, _, _ = scene
    recon = truth.copy()
    recon[masks["crack_0"]] = 0.45                # lithium-like: below 0.5·μ_matrix, above 0.4·μ_matrix
    assert segment_cracks(recon, region)[masks["crack_0"]].all()
    assert not segment_cracks(recon, region, fraction=0.4)[masks["crack_0"]].any()
    assert segment_cracks(recon, region, fraction=0.4, matrix_mu=2.0)[masks["crack_0"]].all()   # 0.45 < 0.8
    assert not segment_cracks(recon, region)[~region].any()


def test_erased_crack_is_not_detected_and_scores_follow(scene):
    truth, region, masks, cracks, pore = scene
    recon = truth.copy()
    recon[masks["crack_1"]] = 1.0                 # the flat crack vanishes (as in the missing cone)
    n_all, n_flat = int(_union(masks).sum()), int(masks["crack_1"].sum())
    out = score_cracks(recon, masks, cracks, region, exclude=pore)
    kept = n_all - n_flat
    assert out["crack_precision"] == 1.0
    assert out["crack_recall"] == pytest.approx(kept / n_all, rel=1e-12)
    assert out["crack_dice"] == pytest.approx(2 * kept / (kept + n_all), rel=1e-12)
    assert out["crack_detection_rate"] == pytest.approx(2 / 3)
    assert (out["crack_detection_vertical"], out["crack_detection_oblique"], out["crack_detection_flat"]) == (
        1.0, 1.0, 0.0)


def test_detection_overlap_with_and_without_dilation(scene):
    _, _, masks, cracks, _ = scene
    pred = np.roll(masks["crack_0"], 1, axis=2)   # the 2-voxel slab shifted by one voxel along x
    res = crack_detection(pred, masks, cracks[:1], dilate=0)
    assert res.per_crack == (("crack_0", "vertical", True, 0.5),)
    res = crack_detection(pred, masks, cracks[:1], dilate=0, min_overlap=0.6)
    assert res.per_crack[0][2] is False and res.detection_rate == 0.0
    res = crack_detection(pred, masks, cracks[:1], dilate=1, min_overlap=0.99)
    assert res.per_crack[0][3] == 1.0 and res.detection_rate == 1.0
    far = np.roll(masks["crack_0"], 4, axis=2)    # 3 voxels from the slab's nearest face: out of reach of dilate=2
    assert crack_detection(far, masks, cracks[:1], dilate=2).per_crack[0][3] == 0.0
    assert crack_detection(far, masks, cracks[:1], dilate=3).per_crack[0][3] == 0.5


def test_subvoxel_crack_is_reported_apart_and_not_rated(scene):
    _, _, masks, cracks, _ = scene
    masks = dict(masks, crack_3=np.zeros(SHAPE, bool))
    cracks = [*cracks, {"label": "crack_3", "normal": (0.0, 0.0, 1.0)}]
    res = crack_detection(masks["crack_0"], masks, cracks)
    assert isinstance(res, CrackScores)
    assert res.n_detectable == 3 and res.undetectable == ("crack_3",)
    assert res.detection_rate == pytest.approx(1 / 3)
    assert res.rate_by_orientation == {"vertical": 1.0, "oblique": 0.0, "flat": 0.0}
    only_vertical = crack_detection(masks["crack_0"], masks, cracks[:1])
    assert math.isnan(only_vertical.rate_by_orientation["flat"])
    assert math.isnan(crack_detection(masks["crack_0"], masks, []).detection_rate)


def test_blur_along_z_hides_the_flat_crack_first(scene):
    """Anisotropic blur along z (the CL missing cone's main effect) erases the flat crack, not the vertical one."""
    truth, region, masks, cracks, pore = scene
    rng = np.random.default_rng(0)
    recon = ndimage.gaussian_filter(truth, (2.5, 0.5, 0.5)) + rng.normal(0, 0.02, SHAPE)
    out = score_cracks(recon, masks, cracks, region, exclude=pore)
    assert (out["crack_detection_vertical"], out["crack_detection_oblique"], out["crack_detection_flat"]) == (
        1.0, 0.0, 0.0)
    assert out["crack_detection_rate"] == pytest.approx(1 / 3)
    n_vertical, n_all = int(masks["crack_0"].sum()), int(_union(masks).sum())
    assert n_vertical / n_all <= out["crack_recall"] < 0.62     # the vertical crack, plus a little of the others
    assert out["crack_precision"] > 0.9
    assert 0.65 < out["crack_dice"] < 0.75


def test_mild_blur_and_noise_both_methods_find_every_crack(scene):
    truth, region, masks, cracks, pore = scene
    rng = np.random.default_rng(1)
    recon = ndimage.gaussian_filter(truth, 0.5) + rng.normal(0, 0.03, SHAPE)
    rel = score_cracks(recon, masks, cracks, region, exclude=pore)
    ots = score_cracks(recon, masks, cracks, region, exclude=pore, method="otsu")
    for out in (rel, ots):
        assert out["crack_detection_rate"] == 1.0
        assert out["crack_dice"] > 0.8
    assert rel["crack_dice"] == pytest.approx(ots["crack_dice"], abs=0.05)
    recon = ndimage.gaussian_filter(truth, 0.8) + rng.normal(0, 0.1, SHAPE)     # noisier: some voxels flip
    out = score_cracks(recon, masks, cracks, region, exclude=pore)
    assert out["crack_detection_rate"] == 1.0
    assert 0.85 < out["crack_dice"] < 0.97


@pytest.mark.parametrize("call, match", [
    (lambda t, r, m, c: segment_cracks(t, r, method="kmeans"), "method"),
    (lambda t, r, m, c: segment_cracks(t, r, fraction=1.5), "fraction"),
    (lambda t, r, m, c: segment_cracks(t, r, matrix_mu=0), "matrix_mu"),
    (lambda t, r, m, c: segment_cracks(t, np.zeros(SHAPE, bool)), "region"),
    (lambda t, r, m, c: crack_detection(r, m, c, dilate=-1), "dilate"),
    (lambda t, r, m, c: crack_detection(r, m, c, min_overlap=2), "min_overlap"),
    (lambda t, r, m, c: crack_detection(r, {}, c), "crack_0"),
    (lambda t, r, m, c: score_cracks(t, m, c, r, dilation=1), "dilation"),
    (lambda t, r, m, c: dice(r, r[:-1]), "truth shape"),
])
def test_bad_input_raises_value_error(scene, call, match):
    truth, region, masks, cracks, _ = scene
    with pytest.raises(ValueError, match=match):
        call(truth, region, masks, cracks)

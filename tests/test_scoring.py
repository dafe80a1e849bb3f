"""Study scoring: which metrics apply, the scoring region, perfect reconstructions, cached geometry metrics."""

import math
import warnings

import numpy as np
import pytest

from lamino import phantoms
from lamino.geometry import Geometry, VolumeGrid
from lamino.simulate import Scanner
from lamino.studies.scoring import METRIC_RANGES, METRICS, ScoringInput, applicable, dense_trajectory, score


@pytest.fixture(scope="module")
def star():
    ph = phantoms.get("siemens_star", n_spokes=8, radius_mm=0.3, thickness_mm=0.05, substrate_thickness_mm=0.05,
                      arc_points=2, label_sectors=4)
    grid = VolumeGrid((8, 24, 24), 0.03)
    vox = ph.voxelize(grid)
    truth = ph.attenuation(grid, 30.0, voxels=vox)
    geometry = Geometry.parallel(tilt_deg=30, n_views=12, det_shape=(16, 32), det_spacing=0.03)
    scanner = Scanner.preset("esrf_id19", energy_kev=30.0, exposure_s=0.001)
    return ph, grid, vox, truth, geometry, scanner


def test_applicable_metrics_follow_the_phantom():
    star_names = applicable(phantoms.get("siemens_star"))
    assert "star_limit_lp_mm" in star_names and "crack_dice" not in star_names
    pellet = applicable(phantoms.get("ssb_pellet"))
    assert "crack_detection_vertical" in pellet and "star_isotropy" not in pellet
    assert set(pellet) | set(star_names) == set(METRICS)
    assert set(METRIC_RANGES) <= set(METRICS)                # ranges (spec constraints) name real metrics


def test_perfect_reconstruction_scores_perfectly(star):
    ph, grid, vox, truth, geometry, scanner = star
    m = score(ScoringInput(truth, truth, grid, vox, ph, geometry, scanner))
    assert m["rmse"] == 0 and m["nrmse"] == 0 and math.isinf(m["psnr"]) and m["ssim"] == pytest.approx(1.0)
    assert m["star_isotropy"] == pytest.approx(1.0, abs=1e-6)
    assert m["scan_time_s"] == pytest.approx(12 * (0.001 + scanner.readout_s))
    assert m["missing_cone_fraction"] == pytest.approx(1 - math.cos(math.radians(30)), abs=0.01)
    # dose is linear in the view count (computed once per view)
    m24 = score(ScoringInput(truth, truth, grid, vox, ph, geometry.replace(angles_deg=tuple(range(0, 360, 15))),
                             scanner), ("dose_mgy",))
    assert m24["dose_mgy"] == pytest.approx(2 * m["dose_mgy"], rel=1e-9)


def test_star_metrics_of_a_star_standing_in_the_xz_plane_follow_the_gaussian_mtf():
    """score()'s xz branch: a star standing in the xz plane (plane="xz", on a grid off-centre in y and z, so the
    turn of the volume and of its grid must agree), its reconstruction the truth blurred by
    a Gaussian of σ = 0.03 mm within that plane (z and x, not y). Contrast(f) is the MTF exp(−2π²σ²f²), so the
    20 % limit is f = √(ln 5 / (2π²σ²)) = 9.52 lp/mm (within 15 %, as for the xy star in
    test_metrics_resolution) and the blur is isotropic in the star's plane (isotropy > 0.9)."""
    from scipy import ndimage

    ph = phantoms.get("siemens_star", n_spokes=8, radius_mm=0.3, thickness_mm=0.05, substrate_thickness_mm=0.05,
                      arc_points=16, label_sectors=4, plane="xz")
    grid = VolumeGrid((36, 16, 36), 0.02, center=(0.02, -0.1, 0.0))  # off-centre in y and z: y ∈ [−0.26, 0.06]
    vox = ph.voxelize(grid)
    truth = ph.attenuation(grid, 30.0, voxels=vox)
    y = grid.axis(1)
    assert truth[:, y < 0].max() > 10 * truth[:, y > 0].max()      # the gold lies at y < 0 (R_x(90°) takes +z to −y)
    sigma = 0.03
    recon = ndimage.gaussian_filter(truth, (sigma / 0.02, 0, sigma / 0.02))
    geometry = Geometry.parallel(tilt_deg=0, n_views=12, det_shape=(40, 40), det_spacing=0.02)
    scanner = Scanner.preset("esrf_id19", energy_kev=30.0, exposure_s=0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # no "Siemens-star metrics are NaN"
        m = score(ScoringInput(recon, truth, grid, vox, ph, geometry, scanner), ("star_limit_lp_mm", "star_isotropy"))
    predicted = math.sqrt(math.log(5) / (2 * math.pi**2 * sigma**2))
    assert predicted == pytest.approx(9.52, abs=0.01)
    assert m["star_limit_lp_mm"] == pytest.approx(predicted, rel=0.15)
    assert 0.9 < m["star_isotropy"] <= 1.0


def test_region_limits_image_metrics(star):
    ph, grid, vox, truth, geometry, scanner = star
    region = np.zeros(grid.shape, bool)
    region[:, 6:18, 6:18] = True
    recon = truth.copy()
    recon[~region] += 1.0                                # errors only where the region does not look
    inside = score(ScoringInput(recon, truth, grid, vox, ph, geometry, scanner, region=region), ("rmse", "ssim"))
    everywhere = score(ScoringInput(recon, truth, grid, vox, ph, geometry, scanner), ("rmse",))
    assert inside["rmse"] == 0.0
    assert everywhere["rmse"] == pytest.approx(math.sqrt(np.mean(~region)), rel=1e-5)
    with pytest.raises(ValueError, match="region is empty"):
        score(ScoringInput(recon, truth, grid, vox, ph, geometry, scanner, region=~np.ones_like(region)), ("rmse",))
    with pytest.raises(ValueError, match="metric 'sharpness' is not allowed"):
        score(ScoringInput(recon, truth, grid, vox, ph, geometry, scanner), ("sharpness",))


def test_dense_trajectory_keeps_range_and_tilt():
    g = Geometry.parallel(tilt_deg=25, n_views=8, det_shape=(4, 4), det_spacing=1.0)
    d = dense_trajectory(g)
    assert d.n_views == 360 and d.tilt_deg == 25
    assert d.angles_deg[0] == 0 and d.angles_deg[-1] == pytest.approx(359.0)
    la = Geometry.parallel(tilt_deg=0, n_views=5, det_shape=(4, 4), det_spacing=1.0, angles_deg=[-60, -30, 0, 30, 60])
    dl = dense_trajectory(la)
    assert dl.angles_deg[0] == -60 and dl.angles_deg[-1] == 60


def test_noise_cnr_and_edge_metrics_of_a_blurred_noisy_cube():
    """score() against analytic answers: a 3 mm aluminium cube blurred by a Gaussian of σ_b = 1 voxel (0.1 mm) plus
    white noise of σ_n = 5 % of μ. Noise = σ_n; CNR (cube against empty) = μ / σ_n; edge FWHM = 2.3548 σ_b in
    and through the plane; MTF50 = √(ln 2 / 2) / (π σ_b) (edge_response: within ~4 % for σ_b ≥ 1 voxel)."""
    from scipy import ndimage

    from lamino.phantoms import Box, Phantom, place

    ph = Phantom.build("cube", [place(Box((3.0, 3.0, 3.0)), "aluminium", label="cube")])
    grid = VolumeGrid((48, 48, 48), 0.1)
    vox = ph.voxelize(grid)
    truth = ph.attenuation(grid, 30.0, voxels=vox)
    mu = float(truth.max())
    sigma_b, sigma_n = 0.1, 0.05 * mu
    recon = (ndimage.gaussian_filter(truth.astype(np.float64), sigma_b / 0.1)
             + np.random.default_rng(0).normal(0.0, sigma_n, truth.shape)).astype(np.float32)
    geometry = Geometry.parallel(tilt_deg=30, n_views=12, det_shape=(16, 48), det_spacing=0.1)
    m = score(ScoringInput(recon, truth, grid, vox, ph, geometry, Scanner.preset("esrf_id19")),
              ("cnr", "noise_std", "in_plane_fwhm_mm", "through_plane_fwhm_mm", "mtf50_lp_mm"))
    assert m["noise_std"] == pytest.approx(sigma_n, rel=0.03)
    assert m["cnr"] == pytest.approx(mu / sigma_n, rel=0.03)
    assert m["in_plane_fwhm_mm"] == pytest.approx(2.3548 * sigma_b, rel=0.05)
    assert m["through_plane_fwhm_mm"] == pytest.approx(2.3548 * sigma_b, rel=0.05)
    assert m["mtf50_lp_mm"] == pytest.approx(math.sqrt(math.log(2) / 2) / (math.pi * sigma_b), rel=0.06)


def test_in_plane_edge_of_a_laminate_is_scored_at_its_stack_sides():
    """Layers thinner than the edge window (a pouch cell's) have no edge profile of their own; the in-plane FWHM
    is then that of the stack's sides: 2.3548 σ_b for a stack blurred in-plane by a Gaussian of σ_b = 1 voxel."""
    from scipy import ndimage

    from lamino.phantoms import Box, Phantom, place

    grid = VolumeGrid((16, 64, 64), 0.08)
    layers = [place(Box((3.5, 8.0, 0.16)), "copper", label=f"foil{i}", at=(0.0, 0.0, z))
              for i, z in enumerate((-0.5, -0.18, 0.14, 0.46))]
    ph = Phantom.build("laminate", layers)
    vox = ph.voxelize(grid)
    truth = ph.attenuation(grid, 30.0, voxels=vox)
    recon = ndimage.gaussian_filter(truth.astype(np.float64), (0.0, 1.0, 1.0)).astype(np.float32)
    geometry = Geometry.parallel(tilt_deg=30, n_views=12, det_shape=(16, 64), det_spacing=0.08)
    m = score(ScoringInput(recon, truth, grid, vox, ph, geometry, Scanner.preset("esrf_id19")), ("in_plane_fwhm_mm",))
    assert m["in_plane_fwhm_mm"] == pytest.approx(2.3548 * 0.08, rel=0.06)


def test_score_runs_the_crack_metrics_of_a_pellet():
    """score() on a small pellet with wide cracks: a reconstruction that is empty exactly in the crack voxels
    (label fraction ≥ 1/4) and the pellet's μ elsewhere finds every crack (Dice, precision, recall and detection
    rate 1); one with the cracks filled by the pellet's μ finds none (all 0)."""
    ph = phantoms.get("ssb_pellet", diameter_mm=2.0, electrode_diameter_mm=1.6, n_transverse=3, n_spallation=1,
                      aperture_um=(30.0, 50.0), crack_length_mm=(0.6, 1.0), n_pores=0, seed=1)
    grid = VolumeGrid((40, 110, 110), 0.02)
    vox = ph.voxelize(grid)
    truth = ph.attenuation(grid, 30.0, voxels=vox)
    crack = np.zeros(grid.shape, bool)
    for c in ph.params["cracks"]:
        crack |= vox.label_fractions[c["label"]] >= 0.25
    assert crack.sum() > 100
    geometry = Geometry.parallel(tilt_deg=30, n_views=12, det_shape=(16, 32), det_spacing=0.1)
    names = ("crack_dice", "crack_precision", "crack_recall", "crack_detection_rate")
    found = np.where(crack, 0.0, truth).astype(np.float32)
    filled = np.where(crack, float(np.median(truth[vox.labels["pellet"]])), truth).astype(np.float32)
    scanner = Scanner.preset("esrf_id19")
    assert score(ScoringInput(found, truth, grid, vox, ph, geometry, scanner), names) == dict.fromkeys(names, 1.0)
    assert score(ScoringInput(filled, truth, grid, vox, ph, geometry, scanner), names) == dict.fromkeys(names, 0.0)

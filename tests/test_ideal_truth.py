"""The ideal-scan truth (lamino.studies.metrics.ideal) and the ``*_ideal`` fidelity metrics.

The independent check is a noise-free, 360-view parallel CL-FBP of a small phantom from exact (analytic) line
integrals, so no inverse crime: it must match the ideal truth far better than the raw truth, and better than the
ideal truth of the wrong cone (90° − α).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lamino.geometry import Geometry, VolumeGrid
from lamino.phantoms import Ellipsoid, Phantom, place
from lamino.phantoms.shapes import Box, Cylinder
from lamino.recon.fbp import fbp
from lamino.studies import scoring
from lamino.studies.metrics import image
from lamino.studies.metrics.ideal import ideal_filter, ideal_truth, measured_energy_fraction

GRID = VolumeGrid((32, 48, 48), 0.1)


def parallel(tilt: float, n_views: int = 360) -> Geometry:
    return Geometry.parallel(tilt_deg=tilt, n_views=n_views, det_shape=(64, 80), det_spacing=0.1)


def coords(grid: VolumeGrid = GRID):
    return np.meshgrid(*[grid.axis(d) for d in range(3)], indexing="ij")      # z, y, x (mm)


def test_in_plane_pattern_is_kept():
    """A pattern along x (2.5 cycles/mm) under Gaussian envelopes: all its Fourier energy is near the k_x axis,
    outside every cone about z, so the ideal truth is the truth. A cone about x instead would remove it."""
    z, y, x = coords()
    envelope = np.exp(-(x**2) / (2 * 0.6**2) - y**2 / (2 * 0.8**2) - z**2 / (2 * 0.4**2))
    vol = (np.cos(2 * np.pi * 2.5 * x) * envelope).astype(np.float32)
    for tilt in (30.0, 60.0):
        ideal = ideal_truth(vol, GRID, parallel(tilt))
        err = float(np.max(np.abs(ideal - vol)))
        print(f"tilt {tilt}: max |ideal − truth| = {err:.2e} (peak 1)")
        assert err < 1e-3


def test_layer_stack_is_all_in_the_cone():
    """Layers varying only along z (continued sideways): every Fourier component but the mean lies on the k_z
    axis, inside the cone; what is left is the constant cos α × sum / n_pad (the DC convention)."""
    z, _, _ = coords()
    profile = 0.3 + 0.2 * np.sin(2 * np.pi * z / 0.8) + 0.1 * (z > 0.5)
    vol = np.broadcast_to(profile, GRID.shape).astype(np.float32)
    tilt = 30.0
    ideal = ideal_truth(vol, GRID, parallel(tilt))
    nz_pad = ideal_filter(GRID, parallel(tilt)).shape[0]
    expected = math.cos(math.radians(tilt)) * vol[:, 0, 0].sum() / nz_pad
    print(f"layer stack: ideal {ideal.mean():.5f} ± {ideal.std():.1e}, expected {expected:.5f}; raw range "
          f"{vol.min():.3f}…{vol.max():.3f}")
    assert ideal.std() < 1e-5
    assert ideal.mean() == pytest.approx(expected, rel=1e-4)


def test_isotropic_blob_centre_is_cos_tilt():
    """design.md: an isotropic object's centre is cos α × truth in a CL reconstruction; so in the ideal truth."""
    grid = VolumeGrid((41, 41, 41), 0.1)                 # a voxel at the origin
    z, y, x = coords(grid)
    blob = np.exp(-(x**2 + y**2 + z**2) / (2 * 0.5**2)).astype(np.float32)
    for tilt in (0.0, 20.0, 45.0):
        centre = float(ideal_truth(blob, grid, parallel(tilt))[20, 20, 20])
        print(f"tilt {tilt}: centre {centre:.4f}, cos α {math.cos(math.radians(tilt)):.4f}")
        assert centre == pytest.approx(math.cos(math.radians(tilt)), rel=0.015)


def test_isotropic_noise_loses_the_cone_fraction():
    """Noise with a flat spectrum inside the ball |k| ≤ k_Nyquist: the measured share of its Fourier energy is
    the share of directions outside the double cone, cos α (missing 1 − cos α)."""
    grid = VolumeGrid((48, 48, 48), (0.05, 0.1, 0.1))       # anisotropic voxels: the cone is in physical k
    rng = np.random.default_rng(0)
    spec = np.fft.rfftn(rng.standard_normal(grid.shape))
    kz = np.fft.fftfreq(48, 0.05)[:, None, None]
    ky = np.fft.fftfreq(48, 0.1)[None, :, None]
    kx = np.fft.rfftfreq(48, 0.1)[None, None, :]
    spec *= np.sqrt(kz**2 + ky**2 + kx**2) <= 5.0              # the Nyquist of the coarse axes, 5 cycles/mm
    noise = np.fft.irfftn(spec, s=grid.shape, axes=(0, 1, 2))
    for tilt in (15.0, 30.0, 45.0):
        share = measured_energy_fraction(noise, grid, parallel(tilt))
        print(f"tilt {tilt}: measured share {share:.4f}, cos α {math.cos(math.radians(tilt)):.4f}")
        assert 1 - share == pytest.approx(1 - math.cos(math.radians(tilt)), rel=0.05)


@pytest.fixture(scope="module")
def plate():
    """A 3 mm disc 0.4 mm thick with a spherical pore, a vertical slot, a flat slit and a tilted ellipsoid; its
    truth μ (1/mm) from 4³ samples per voxel."""
    ph = Phantom.build("plate", [place(Cylinder(1.5, 0.4), "aluminium"),
                                 place(Ellipsoid((0.3, 0.3, 0.3)), "void", at=(0.5, 0.2, 0.0)),
                                 place(Box((0.15, 1.6, 0.3)), "void", at=(-0.6, 0.0, 0.0)),
                                 place(Box((1.2, 1.2, 0.08)), "void", at=(0.0, -0.5, 0.0), rotate_deg=(0, 0, 30)),
                                 place(Ellipsoid((0.4, 0.25, 0.9)), "aluminium", at=(0.3, -0.6, 0.5),
                                       rotate_deg=(30, 0, 0))])
    return ph, ph.voxelize(GRID, supersample=4).fractions["aluminium"] * 0.5


def test_many_view_cl_fbp_reconstructs_the_ideal_truth(plate):
    ph, truth = plate
    inner = np.zeros(GRID.shape, bool)
    inner[4:-4, 4:-4, 4:-4] = True
    span = float(truth.max() - truth.min())
    tilt = 30.0
    g = parallel(tilt)
    rec = np.asarray(fbp(ph.path_lengths(g)["aluminium"] * 0.5, g, GRID))
    raw = image.rmse(rec, truth, inner) / span
    ideal = image.rmse(rec, ideal_truth(truth, GRID, g), inner) / span
    wrong = image.rmse(rec, ideal_truth(truth, GRID, parallel(90.0 - tilt)), inner) / span
    print(f"tilt {tilt}: NRMSE of 360-view CL-FBP against the raw truth {raw:.4f}, the ideal truth {ideal:.4f}, "
          f"the 60° cone's {wrong:.4f}")
    assert raw > 0.15                        # measured 0.19: the raw truth holds the missing cone
    assert ideal < 0.03                      # measured 0.021: interpolation blur and view sampling only
    assert wrong > 3 * ideal                 # measured 0.096
    # the mean follows the DC convention (cos α × the padded mean): within 1 % of the truth's mean μ
    assert abs(float(np.mean(rec - ideal_truth(truth, GRID, g)))) < 0.01 * float(truth.mean())


def test_score_reports_raw_and_ideal(plate, monkeypatch):
    """score() fills the *_ideal metrics over the same region as the raw ones, with the ideal truth as reference."""
    ph, truth = plate
    g = parallel(30.0, n_views=36)
    ideal = ideal_truth(truth, GRID, g)
    rec = ideal + np.float32(0.002)
    region = np.zeros(GRID.shape, bool)
    region[8:-8, 8:-8, 8:-8] = True
    data = scoring.ScoringInput(rec, truth, GRID, ph.voxelize(GRID), ph, g, scanner=None, region=region)
    names = ("rmse", "nrmse", "psnr", "ssim", "rmse_ideal", "nrmse_ideal", "psnr_ideal", "ssim_ideal")
    out = scoring.score(data, names)
    span = float(truth[region].max() - truth[region].min())           # the raw truth's range, as for nrmse
    print({k: round(v, 4) for k, v in out.items()})
    assert out["rmse_ideal"] == pytest.approx(0.002, rel=1e-3)
    assert out["nrmse_ideal"] == pytest.approx(0.002 / span, rel=1e-3)
    assert out["psnr_ideal"] == pytest.approx(20 * math.log10(span / 0.002), abs=0.01)
    assert out["ssim_ideal"] > 0.99 > out["ssim"]
    assert out["rmse"] > 5 * out["rmse_ideal"]
    for name in names[4:]:
        assert name in scoring.METRICS and "ideal-scan truth" in scoring.METRICS[name][1]
    for name in names[:4]:
        assert "raw truth" in scoring.METRICS[name][1]
    assert {"rmse_ideal", "nrmse_ideal", "psnr_ideal", "ssim_ideal"} <= set(scoring.applicable(ph))


def test_limited_angle_trajectory_uses_its_wedge():
    """A trajectory given by vectors goes through the direction test: the CL vectors of tilt 30° reproduce the
    cone (≥ 99 % of the bins not cut by its surface agree), and limited-angle CT about x over 120° misses
    (180 − 120)/180 = 1/3 of the directions of isotropic noise, in a wedge about z."""
    grid = VolumeGrid((16, 24, 24), 0.1)
    cl = parallel(30.0, n_views=360)
    as_vectors = Geometry.from_vectors(cl.vectors(), cl.det_shape, "parallel")
    cone, direction = ideal_filter(grid, cl), ideal_filter(grid, as_vectors)
    whole = (cone == 0) | (cone == 1)                   # bins whose cell lies wholly inside or outside the cone
    agree = float(np.mean(cone[whole] == direction[whole]))
    ct = Geometry.parallel(tilt_deg=0.0, angles_deg=np.linspace(-60, 60, 241), det_shape=(32, 32), det_spacing=0.1)
    swap = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])     # rotation axis z → x (about y)
    vec = (np.asarray(ct.vectors()).reshape(-1, 4, 3) @ swap.T).reshape(-1, 12)
    limited = Geometry.from_vectors(vec, ct.det_shape, "parallel")
    rng = np.random.default_rng(1)
    spec = np.fft.rfftn(rng.standard_normal(grid.shape))
    k = np.meshgrid(np.fft.fftfreq(16, 0.1), np.fft.fftfreq(24, 0.1), np.fft.rfftfreq(24, 0.1), indexing="ij")
    spec *= np.sqrt(sum(a**2 for a in k)) <= 5.0
    share = measured_energy_fraction(np.fft.irfftn(spec, s=grid.shape, axes=(0, 1, 2)), grid, limited)
    print(f"CL as vectors: {agree:.4f} of bins agree; limited-angle 120°: measured share {share:.3f} (2/3)")
    assert agree > 0.99
    assert share == pytest.approx(2 / 3, abs=0.03)

"""Fourier coverage (missing cone) and dose proxy against analytic answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xraydb

from lamino.geometry import Geometry
from lamino.simulate import Scanner
from lamino.studies.metrics.coverage import (
    dose_proxy,
    fibonacci_sphere,
    fourier_coverage_map,
    klein_nishina_transfer_fraction,
    missing_cone_fraction,
    plot_fourier_coverage,
    water_mu_en_rho,
)

DET = dict(det_shape=(4, 4))


@pytest.mark.parametrize("tilt", [10.0, 30.0, 45.0, 60.0])
def test_parallel_cl_misses_double_cone(tilt):
    g = Geometry.parallel(tilt_deg=tilt, n_views=360, **DET)
    assert missing_cone_fraction(g) == pytest.approx(1 - math.cos(math.radians(tilt)), abs=0.01)


def test_ct_is_complete_and_limited_angle_misses_the_rest():
    assert missing_cone_fraction(Geometry.parallel(tilt_deg=0, n_views=360, **DET)) == 0.0
    for phi in (90.0, 120.0, 150.0):
        g = Geometry.parallel(tilt_deg=0, angles_deg=np.linspace(0, phi, int(2 * phi) + 1), **DET)
        assert missing_cone_fraction(g) == pytest.approx((180 - phi) / 180, abs=0.01)


def test_few_views_leave_gaps_unless_tolerance_is_widened():
    g = Geometry.parallel(tilt_deg=0, n_views=4, **DET)              # planes every 90° (45° apart as ±d)
    assert missing_cone_fraction(g, 4000, tol_deg=0.1) > 0.9
    assert missing_cone_fraction(g, 4000, tol_deg=46.0) == 0.0


def test_cone_beam_converges_to_parallel_and_fills_the_cone():
    par = 1 - math.cos(math.radians(30))
    far = Geometry.cone(tilt_deg=30, n_views=180, sod=1e5, sdd=2e5, det_shape=(50, 50), det_spacing=1.0)
    assert missing_cone_fraction(far, 4000) == pytest.approx(par, abs=0.01)
    near = Geometry.cone(tilt_deg=30, n_views=180, sod=100, sdd=200, det_shape=(50, 50), det_spacing=1.0)
    kappa = math.atan(25 / 200)                                       # vertical half-angle of the cone
    assert missing_cone_fraction(near, 4000) == pytest.approx(1 - math.cos(math.radians(30) - kappa), abs=0.01)


def test_fibonacci_sphere_is_uniform():
    p = fibonacci_sphere(5000)
    assert np.allclose(np.linalg.norm(p, axis=1), 1)
    assert np.abs(p.mean(axis=0)).max() < 1e-3
    assert np.mean(np.abs(p[:, 2]) > math.cos(math.radians(30))) == pytest.approx(1 - math.cos(math.radians(30)),
                                                                                  abs=2e-3)


def test_coverage_map_shows_the_cone_about_kz():
    kx, kz, cov = fourier_coverage_map(Geometry.parallel(tilt_deg=30, n_views=360, **DET), n=41)
    assert cov.shape == (41, 41) and kx[0] == -1 and kz[-1] == 1
    zz, xx = np.meshgrid(kz, kx, indexing="ij")
    polar = np.degrees(np.arctan2(np.abs(xx), np.abs(zz)))           # angle from the k_z axis
    assert not cov[(polar < 28) & (np.hypot(xx, zz) > 0)].any()
    assert cov[polar > 32].all()
    assert cov[20, 20]


def test_plot_fourier_coverage_returns_figure():
    from matplotlib.figure import Figure

    fig = plot_fourier_coverage(Geometry.parallel(tilt_deg=30, n_views=360, **DET))
    assert isinstance(fig, Figure)
    # the cone of half-angle α = 30° less the tolerance: half the angle between consecutive rays, which lie on
    # a cone 90° + α from the axis, 2·asin(cos α · sin 0.5°) apart; 20 000 directions sample it to ±0.25 %
    tol = math.asin(math.cos(math.radians(30)) * math.sin(math.radians(0.5)))
    expected = 1 - math.cos(math.radians(30) - tol)                  # 13.02 % (1 − cos 30° = 13.40 %)
    shown = float(fig.axes[0].get_title().split(": ")[1].split("%")[0]) / 100
    assert shown == pytest.approx(expected, abs=0.005)
    ax = Figure().add_subplot()
    assert plot_fourier_coverage(Geometry.parallel(tilt_deg=0, n_views=360, **DET), ax=ax) is ax.figure
    assert "0.0% missing" in ax.get_title()


def test_klein_nishina_fraction_known_values():
    f = klein_nishina_transfer_fraction([10.0, 100.0, 1000.0])
    assert f == pytest.approx([0.0188, 0.138, 0.440], abs=6e-4)
    # independent check by quadrature of dσ/dΩ ∝ r²(r + 1/r − sin²θ), r = E'/E, weighted by 1 − r
    x, w = np.polynomial.legendre.leggauss(64)
    k = 60.0 / 510.99895
    r = 1 / (1 + k * (1 - x))
    ds = r**2 * (r + 1 / r - (1 - x**2))
    assert klein_nishina_transfer_fraction(60.0) == pytest.approx(np.sum(w * ds * (1 - r)) / np.sum(w * ds), 1e-9)


def test_water_mu_en_close_to_nist():
    nist = {20.0: 0.5503, 60.0: 0.03190, 100.0: 0.02546}             # Hubbell & Seltzer, cm²/g
    got = water_mu_en_rho(list(nist))
    assert got == pytest.approx(list(nist.values()), rel=0.02)


def test_dose_proxy_monochromatic_hand_computation_and_linearity():
    scanner = Scanner.preset("esrf_id19", energy_kev=60.0)
    g = scanner.geometry(30, 100, det_shape=(8, 8))
    e_ev = 60e3
    mu_en = (xraydb.material_mu("H2O", e_ev, density=1.0, kind="photo")
             + xraydb.material_mu("H2O", e_ev, density=1.0, kind="incoh") * klein_nishina_transfer_fraction(60.0))
    fluence = scanner.flux * scanner.exposure_s                      # photons/mm² per projection
    hand = 100 * fluence * 60.0 * 1.602176634e-16 * mu_en * 1e5 * 1e3
    assert dose_proxy(scanner, g) == pytest.approx(hand, rel=1e-6)
    assert dose_proxy(scanner, scanner.geometry(30, 300, det_shape=(8, 8))) == pytest.approx(3 * hand, rel=1e-12)
    assert dose_proxy(scanner.replace(exposure_s=0.5), g) == pytest.approx(2.5 * hand, rel=1e-12)


def test_dose_proxy_cone_uses_fluence_at_the_sample():
    tube = Scanner.preset("nikon_xt225", energy_kev=60.0, kvp=80.0)
    g = tube.geometry(30, 10, det_shape=(8, 8))
    spec = tube.spectrum(4)
    # photons/mm²/mAs at 1 m → at the sample (SOD): × (1000/SOD)²
    fluence = spec.total * tube.current_ua * 1e-3 * tube.exposure_s * (1000.0 / tube.sod) ** 2
    hand = 10 * fluence * 60.0 * 1.602176634e-16 * water_mu_en_rho(60.0) * 1e5 * 1e3
    assert dose_proxy(tube, g, n_bins=4) == pytest.approx(float(hand), rel=1e-9)
    farther = tube.geometry(30, 10, det_shape=(8, 8), sod=2 * tube.sod)
    assert dose_proxy(tube, farther, n_bins=4) == pytest.approx(float(hand) / 4, rel=1e-9)


def test_bad_inputs():
    g = Geometry.parallel(tilt_deg=30, n_views=10, **DET)
    with pytest.raises(ValueError, match="n_directions"):
        missing_cone_fraction(g, 0)
    with pytest.raises(ValueError, match="tol_deg"):
        missing_cone_fraction(g, tol_deg=95)
    with pytest.raises(ValueError, match="geometry"):
        missing_cone_fraction("not a geometry")
    with pytest.raises(ValueError, match="n_bins"):
        dose_proxy(Scanner.preset("esrf_id19"), g, n_bins=0)

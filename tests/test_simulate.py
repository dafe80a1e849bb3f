"""simulate(): the forward model against exact Beer–Lambert, an independent polychromatic integration, photon
statistics, seeds, flats/darks and the Scan round trip."""

import math

import numpy as np
import pytest
import xraydb

from lamino.geometry import Geometry, VolumeGrid
from lamino.io import flat_dark_correct
from lamino.phantoms import Box, Phantom, place
from lamino.simulate import Detector, Scan, Scanner, simulate

H = 0.8            # slab thickness, mm
TILT = 30.0


def slab(material="aluminium", thickness=H, width=40.0):
    return Phantom.build("slab", [place(Box((width, width, thickness)), material, label="slab")])


def slab_geometry(n_views=4, det=(8, 10), tilt=TILT):
    return Geometry.parallel(tilt_deg=tilt, n_views=n_views, det_shape=det, det_spacing=0.5)


def beamline(energy_kev=30.0, detector=None, **kw):
    det = detector or Detector.ideal((8, 10), 0.5)
    return Scanner.preset("esrf_id19", energy_kev=energy_kev, **kw).replace(detector=det)


def tube(kvp=80.0, detector=None, **kw):
    det = detector or Detector.ideal((8, 10), 0.5)
    return Scanner.preset("nikon_xt225", kvp=kvp, **kw).replace(detector=det)


def xraydb_mu(formula, density, energy_kev):
    return xraydb.material_mu(formula, np.asarray(energy_kev) * 1e3, density=density) / 10.0    # 1/mm


def test_monochromatic_ideal_noise_free_is_exact_beer_lambert():
    g = slab_geometry()
    scan = simulate(slab(), g, beamline(30.0), noise=False, truth=False)
    expected = xraydb_mu("Al", 2.699, 30.0) * H / math.sin(math.radians(TILT))   # plate crossed along h / sin α
    np.testing.assert_allclose(scan.line_integrals(), expected, rtol=1e-4)
    np.testing.assert_allclose(scan.counts / scan.flats[0], np.exp(-expected), rtol=1e-4)


def test_polychromatic_transmission_matches_independent_integration_and_hardens():
    sc = tube(80.0)
    spectrum = sc.spectrum(32)
    e, n = spectrum.energies_kev, spectrum.fluence
    mu = xraydb_mu("Al", 2.699, e)
    g = Geometry.cone(tilt_deg=TILT, n_views=2, det_shape=(8, 10), det_spacing=0.5, sod=500.0, sdd=1000.0)
    effective = []
    for h in (0.5, 2.0, 6.0):
        ph = slab(thickness=h)
        path = ph.path_lengths(g)["aluminium"]                              # exact ray–box chords (mm)
        scan = simulate(ph, g, sc, noise=False, focal_spot=False, truth=False)
        # energy-integrating ideal detector: w(E) = E, η = 1; the flat divides out N₀ and the cos³ falloff
        t_expected = (np.exp(-path[..., None] * mu) @ (n * e)) / np.sum(n * e)
        t_sim = np.exp(-scan.line_integrals())
        np.testing.assert_allclose(t_sim, t_expected, rtol=1e-3)
        effective.append(float(np.mean(-np.log(t_sim) / path)))
    assert effective[0] > effective[1] > effective[2]                      # beam hardening: μ_eff falls with h
    assert effective[2] > xraydb_mu("Al", 2.699, e.max())                  # ... but stays above μ at kVp


def counting_flats(n_flats=1, read_noise=0.0, seed=0, quantize=True):
    det = Detector(shape=(128, 128), spacing=0.5, mode="counting", scintillator=None, psf="none",
                   read_noise_adu=read_noise, bit_depth=None, quantize=quantize)
    sc = beamline(30.0, detector=det).replace(n_flats=n_flats, n_darks=1, flux=400.0 / 0.25, exposure_s=1.0)
    g = slab_geometry(n_views=1, det=(128, 128))
    return simulate(slab(), g, sc, seed=seed, truth=False, lengths={"aluminium": np.zeros((1, 128, 128))})


def test_counting_flats_are_poisson():
    flat = counting_flats().flats[0]
    assert flat.mean() == pytest.approx(400.0 * float(Detector.ideal().efficiency(30.0)), rel=0.01)
    assert flat.var() / flat.mean() == pytest.approx(1.0, abs=0.03)
    assert np.all(flat == np.round(flat))


def test_read_noise_adds_its_variance():
    clean = counting_flats(quantize=False).flats[0]
    noisy = counting_flats(read_noise=5.0, quantize=False).flats[0]
    assert np.var(noisy - clean) == pytest.approx(25.0, rel=0.03)        # same seed: same photons
    assert float(noisy.var() - clean.var()) == pytest.approx(25.0, abs=3.0)


def test_averaged_flats_reduce_noise_as_one_over_n():
    one, twenty = counting_flats(1).flats[0], counting_flats(20).flats[0]
    assert twenty.var() / one.var() == pytest.approx(1 / 20, rel=0.08)


def test_same_seed_same_data_other_seed_differs():
    g = slab_geometry()
    sc = tube(80.0, detector=Detector(shape=(8, 10), spacing=0.5, read_noise_adu=2.0))
    g = Geometry.cone(tilt_deg=TILT, n_views=3, det_shape=(8, 10), det_spacing=0.5, sod=300.0, sdd=900.0)
    a, b, c = (simulate(slab(), g, sc, seed=s, truth=False) for s in (4, 4, 5))
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.flats, b.flats)
    assert np.mean(a.counts != c.counts) > 0.5


def test_flat_dark_correction_of_noise_free_data_with_offset_and_gain_recovers_line_integrals():
    det = Detector(shape=(8, 10), spacing=0.5, scintillator=None, psf="none", gain_sigma=0.05, offset_adu=100.0,
                   bit_depth=None, quantize=False)
    g = slab_geometry()
    scan = simulate(slab(), g, beamline(25.0, detector=det), noise=False, truth=False)
    expected = xraydb_mu("Al", 2.699, 25.0) * H / math.sin(math.radians(TILT))
    assert scan.darks.mean() == pytest.approx(100.0)
    np.testing.assert_allclose(scan.line_integrals(), expected, rtol=1e-4)


def test_detector_blur_conserves_signal_and_hardware_defaults_are_realistic():
    ph = Phantom.build("bar", [place(Box((1.0, 40.0, 0.4)), "copper", label="bar")])
    g = Geometry.parallel(tilt_deg=0.0, n_views=1, det_shape=(32, 32), det_spacing=0.1, angles_deg=(90.0,))
    det = Detector(shape=(32, 32), spacing=0.1, scintillator=None, psf="gaussian", psf_sigma_px=1.5, bit_depth=None,
                   quantize=False)
    sharp = simulate(ph, g, beamline(30.0, detector=det), noise=False, blur=False, truth=False)
    soft = simulate(ph, g, beamline(30.0, detector=det), noise=False, blur=True, truth=False)
    inner = (slice(None), slice(8, 24), slice(8, 24))
    assert soft.counts[inner].sum() == pytest.approx(sharp.counts[inner].sum(), rel=2e-3)
    assert soft.counts.min() > sharp.counts.min()                          # the edge is smeared


def test_scan_carries_truth_provenance_and_round_trips(tmp_path):
    ph = slab(thickness=1.0, width=4.0)
    g = Geometry.parallel(tilt_deg=TILT, n_views=4, det_shape=(12, 12), det_spacing=0.5)
    grid = VolumeGrid((4, 10, 10), 0.5)
    sc = beamline(30.0, detector=Detector(shape=(12, 12), spacing=0.5), exposure_s=4e-6)    # flat below saturation
    scan = simulate(ph, g, sc, seed=3, truth_grid=grid)
    assert scan.truth.energy_kev == pytest.approx(30.0)
    assert scan.truth.mu.max() == pytest.approx(xraydb_mu("Al", 2.699, 30.0), rel=1e-5)
    assert scan.truth.labels["slab"].sum() == 2 * 8 * 8
    assert scan.provenance["seed"] == 3 and scan.provenance["lamino_version"]
    path = tmp_path / "scan.h5"
    scan.save(str(path))
    back = Scan.load(str(path))
    np.testing.assert_array_equal(back.counts, scan.counts)
    assert back.geometry == scan.geometry and back.scanner == scan.scanner and back.truth == scan.truth


def test_bad_inputs_give_clear_errors():
    g = slab_geometry()
    with pytest.raises(ValueError, match="phantom"):
        simulate("slab", g)
    with pytest.raises(ValueError, match="method"):
        simulate(slab(), g, beamline(), method="magic")
    with pytest.raises(ValueError, match="nikon_xt225"):
        simulate(slab(), g, "no_such_scanner")
    with pytest.raises(ValueError, match="lengths"):
        simulate(slab(), g, beamline(), lengths={"aluminium": np.zeros((1, 2, 3))})
    with pytest.raises(ValueError, match="kvp"):
        Scanner.preset("nikon_xt225", kvp=400)
    with pytest.raises(ValueError, match="exposure_s"):
        Scanner.preset("nikon_xt225", exposure_s=0)


def test_saturating_flats_warn():
    det = Detector(shape=(8, 10), spacing=0.5, scintillator=None, psf="none", bit_depth=8)
    with pytest.warns(UserWarning, match="saturates"):
        simulate(slab(), slab_geometry(), beamline(30.0, detector=det), truth=False)


def test_scatter_adds_its_ratio_of_the_smoothed_primary():
    det = Detector(shape=(64, 64), spacing=0.5, scintillator=None, psf="none", bit_depth=None, quantize=False)
    g = slab_geometry(n_views=1, det=(64, 64))
    lengths = {"aluminium": np.full((1, 64, 64), 1.0)}                # uniform primary: scatter = spr × primary
    plain = simulate(slab(), g, beamline(30.0, detector=det), noise=False, truth=False, lengths=lengths)
    spr = simulate(slab(), g, beamline(30.0, detector=det), noise=False, truth=False, lengths=lengths,
                   scatter_spr=0.25, scatter_sigma_mm=2.0)
    centre = (0, slice(24, 40), slice(24, 40))
    np.testing.assert_allclose(spr.counts[centre] / plain.counts[centre], 1.25, rtol=1e-3)
    np.testing.assert_allclose(spr.flats, plain.flats)                  # no sample, no scatter in the flats


def test_focal_spot_blur_scales_with_magnification_and_conserves_signal():
    ph = Phantom.build("edge", [place(Box((20.0, 40.0, 40.0)), "aluminium", at=(10.0, 0.0, 0.0))])
    det = Detector(shape=(16, 64), spacing=0.2, scintillator=None, psf="none", bit_depth=None, quantize=False)
    g = Geometry.cone(tilt_deg=0.0, n_views=1, det_shape=(16, 64), det_spacing=0.2, sod=100.0, sdd=300.0,
                      angles_deg=(0.0,))
    sc = tube(80.0, detector=det).replace(focal_spot_um=400.0)            # FWHM at the detector 0.4 × (3 − 1) mm
    lengths = ph.path_lengths(g)
    sharp = simulate(ph, g, sc, noise=False, focal_spot=False, truth=False, lengths=lengths).counts[0, 8]
    soft = simulate(ph, g, sc, noise=False, focal_spot=True, truth=False, lengths=lengths).counts[0, 8]
    assert soft[8:56].sum() == pytest.approx(sharp[8:56].sum(), rel=1e-3)
    step = np.abs(np.diff(sharp)).argmax()
    width = np.sum(np.abs(np.diff(soft[step - 12:step + 13]))) / np.abs(np.diff(soft)).max()   # edge width, px
    assert 3.0 < width < 6.0                       # Gaussian σ = 0.8 mm / 2.355 / 0.2 mm ≈ 1.7 px → ≈ 4.3 px


def test_scatter_of_a_step_primary_is_the_step_blurred_by_its_gaussian():
    """Scatter = spr × (primary ∗ Gaussian of σ = scatter_sigma_mm): across a step in the primary it rises as the
    normal CDF, spr·(P₁ + (P₂ − P₁)·Φ(x/σ)), x from the edge. A kernel of the wrong width (or none) fails."""
    from scipy.stats import norm

    det = Detector(shape=(64, 64), spacing=0.5, scintillator=None, psf="none", bit_depth=None, quantize=False)
    g = slab_geometry(n_views=1, det=(64, 64))
    step = np.zeros((1, 64, 64))
    step[..., 32:] = 2.0                                                # 2 mm aluminium on the right half
    lengths = {"aluminium": step}
    plain = simulate(slab(), g, beamline(30.0, detector=det), noise=False, truth=False, lengths=lengths)
    spr = simulate(slab(), g, beamline(30.0, detector=det), noise=False, truth=False, lengths=lengths,
                   scatter_spr=0.25, scatter_sigma_mm=2.0)
    primary = plain.counts[0, 32]
    p1, p2 = primary[10], primary[54]                                   # open and behind the slab
    assert p2 < 0.9 * p1
    cols = np.arange(20, 44)
    x = (cols - 31.5) * 0.5                                             # mm from the edge
    expected = 0.25 * (p1 + (p2 - p1) * norm.cdf(x / 2.0))
    scatter = spr.counts[0, 32, cols] - plain.counts[0, 32, cols]
    np.testing.assert_allclose(scatter, expected, rtol=0.01)


def test_the_psf_blurs_the_photon_noise():
    """The detector PSF acts after the photon noise (design.md chain order), so it correlates the noise: on an
    open field the pixel variance falls by Σ k² = 1/(4πσ²) for a Gaussian PSF of σ pixels (continuous limit;
    0.0199 for σ = 2). Blurring the expected counts before the noise would leave the variance unchanged."""
    sigma = 2.0
    kw = dict(shape=(64, 64), spacing=0.5, scintillator=None, mode="counting", bit_depth=None, quantize=False)
    sharp = Detector(psf="none", **kw)
    blurred = Detector(psf="gaussian", psf_sigma_px=sigma, **kw)
    g = slab_geometry(n_views=16, det=(64, 64))
    empty = {"aluminium": np.zeros((16, 64, 64))}
    # 14 px from the borders, beyond the 25 × 25 kernel's reach: the zero-padded blur loses signal at the edges,
    # and at 5e9 photons a pixel any loss outweighs the Poisson variance
    inner = (slice(None), slice(14, 50), slice(14, 50))
    var = []
    for det in (sharp, blurred):
        scan = simulate(slab(), g, beamline(30.0, detector=det), seed=3, truth=False, lengths=empty)
        counts = np.asarray(scan.counts, np.float64)[inner]
        var.append(float(np.mean(np.var(counts, axis=(1, 2))) / np.mean(counts)))
    assert var[0] == pytest.approx(1.0, rel=0.05)                     # Poisson: variance = mean
    assert var[1] / var[0] == pytest.approx(1 / (4 * np.pi * sigma**2), rel=0.15)


def test_defective_pixels_leave_no_ring_in_the_reconstruction():
    """Dead and hot pixels read the same wrong value in every view; backprojected, each draws a ring (a cone in CL).
    The flat/dark correction fills them from their neighbours: the reconstruction of a scan with 1 % defective
    pixels then matches the defect-free one, where unfilled defects put rings of several % of μ into it."""
    from lamino.recon.fbp import fbp

    g = Geometry.parallel(tilt_deg=TILT, n_views=90, det_shape=(24, 32), det_spacing=0.1)
    phantom = Phantom.build("beads", [place(Box((2.0, 2.0, 0.4)), "aluminium", label="plate")])
    grid = VolumeGrid((6, 20, 20), 0.1)

    def recon(dead, fill=True):
        det = Detector.ideal((24, 32), 0.1).replace(dead_fraction=dead, hot_fraction=dead / 2, bit_depth=32)
        scan = simulate(phantom, g, beamline(30.0, det), noise=False, truth=False)
        li = flat_dark_correct(scan.counts, scan.flats, scan.darks, fill_defects=fill)
        return np.asarray(fbp(li, g, grid, sample_size=(0.4, 2.0, 2.0)))

    clean = recon(0.0)
    mu = xraydb_mu("Al", 2.699, 30.0)
    filled, raw = np.abs(recon(0.01) - clean).max() / mu, np.abs(recon(0.01, fill=False) - clean).max() / mu
    print(f"largest difference from the defect-free reconstruction: {filled:.4f} μ filled, {raw:.4f} μ unfilled")
    assert filled < 0.3 * raw and raw > 0.05, (filled, raw)


def test_frame_averaging_keeps_each_frame_below_saturation_and_averages_read_noise():
    """A projection of 4 × the saturating exposure taken as 4 frames (max_frame_s) reads, in each frame, what a
    quarter of the exposure reads: the open beam is not clipped and −ln(I/I0) is that of one long exposure.
    Read noise averages over the frames: at an open-beam signal S per frame (ADU), the variance of the
    averaged reading is (gain-free photon variance)/4 + σ_r²/4, against the single frame's photon variance + σ_r²."""
    det = Detector(shape=(64, 64), spacing=0.5, scintillator=None, psf="none", bit_depth=16, quantize=False,
                   read_noise_adu=400.0, adu_per_kev=1.0, offset_adu=0.0, gain_sigma=0.0, gain_drift_sigma=0.0,
                   dead_fraction=0.0, hot_fraction=0.0)
    ph, g = slab(thickness=0.3, width=400.0), slab_geometry(n_views=2, det=(64, 64))
    unclipped = beamline(30.0, detector=det.replace(bit_depth=None), exposure_s=1e-6)
    flat_adu = simulate(ph, g, unclipped, noise=False, truth=False).flats.mean() * 1e6      # ADU per second
    one_frame = beamline(30.0, detector=det, exposure_s=1.0)
    long_exposure = 4 * 65535 / flat_adu * 0.8                 # one frame of it would read 3.2 × full scale
    with pytest.warns(UserWarning, match="saturates"):
        clipped = simulate(ph, g, one_frame.replace(exposure_s=long_exposure), noise=False, truth=False)
    framed = one_frame.replace(exposure_s=long_exposure, max_frame_s=long_exposure / 4)
    assert framed.frames_per_projection == 4
    exact = simulate(ph, g, framed, noise=False, truth=False)
    assert clipped.flats.max() == 65535.0
    assert exact.flats.mean() == pytest.approx(0.8 * 65535, rel=1e-3)    # each frame a quarter of the exposure
    expected = xraydb_mu("Al", 2.699, 30.0) * 0.3 / math.sin(math.radians(TILT))
    np.testing.assert_allclose(exact.line_integrals(), expected, rtol=1e-4)
    # read noise: the averaged flat-corrected open beam varies as photon + read noise of the averaged frames
    open_beam = slab(thickness=1e-6)
    noisy = simulate(open_beam, slab_geometry(n_views=8, det=(64, 64)), framed, truth=False, seed=1)
    per_frame = 0.8 * 65535                                           # ADU per frame (adu_per_kev 1: keV)
    photon_var_total = 4 * per_frame * 30.0                           # Σ E² N over the 4 frames, mono 30 keV
    expected_var = photon_var_total / 16 + 400.0**2 / 4
    assert np.var(noisy.counts) == pytest.approx(expected_var, rel=0.05)
    with pytest.raises(ValueError, match="max_frame_s"):
        one_frame.replace(max_frame_s=0.0)

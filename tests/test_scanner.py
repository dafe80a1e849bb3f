"""Scanner digital twins: presets, overrides, photon counts and falloff against independent formulas."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lamino.geometry import Geometry
from lamino.simulate.detector import Detector
from lamino.simulate.scanner import PUBLISHED_SCANS, Scanner
from lamino.simulate.spectrum import Spectrum

PRESETS = ["nikon_xt225", "sigray_apex", "esrf_id19", "psi_csaxs", "aps_2bm", "spring8_bl20"]
SMALL = dict(det_shape=(5, 7))


def test_presets_are_the_design_list():
    assert Scanner.presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_through_json(name):
    scanner = Scanner.preset(name)
    text = json.dumps(scanner.to_dict(), allow_nan=False)
    again = Scanner.from_dict(json.loads(text))
    assert again == scanner
    assert isinstance(again.detector, Detector)
    assert scanner.sources and all(isinstance(s, str) and s for s in scanner.sources)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_flat_sits_at_a_working_level(name):
    """The default open beam neither saturates nor starves: integrating flats at 30–90 % of full scale."""
    scanner = Scanner.preset(name, **SMALL)
    d = scanner.detector
    spectrum = scanner.spectrum()
    counts, _ = scanner.photons_per_pixel(spectrum, scanner.geometry(30.0, 2))
    e = spectrum.energies_kev
    detected = counts * d.cover_transmission(e) * d.efficiency(e)
    signal = float(np.sum(detected * d.energy_weights(e))) + d.offset_adu
    assert detected.sum() > 300                         # at least a few hundred photons per pixel
    if d.saturation_adu is not None:
        assert 0.3 * d.saturation_adu < signal < 0.9 * d.saturation_adu


def test_published_scans_load():
    for scan in PUBLISHED_SCANS.values():
        scanner = Scanner.preset(scan["preset"], **scan["overrides"])
        assert scanner.kvp == scan["overrides"]["kvp"]
    pouch = Scanner.preset("nikon_xt225", **PUBLISHED_SCANS["ssb_pouch"]["overrides"])
    assert pouch.kvp * pouch.current_ua * 1e-3 == pytest.approx(9.0)   # 100 kV × 90 µA = 9 W


def test_overrides_route_to_scanner_and_detector():
    s = Scanner.preset("nikon_xt225", kvp=100, exposure_s=2.0, det_shape=(32, 48), det_spacing=0.1,
                       read_noise_adu=5.0)
    assert s.kvp == 100.0 and s.exposure_s == 2.0
    assert s.detector.shape == (32, 48)
    assert s.detector.spacing == (0.1, 0.1)
    assert s.detector.read_noise_adu == 5.0
    assert Scanner.preset("aps_2bm", det_spacing=(0.001, 0.002)).detector.spacing == (0.001, 0.002)
    g = s.geometry(30.0, 3)
    assert g.det_shape == (32, 48) and g.det_spacing == (0.1, 0.1)
    assert (g.sod, g.sdd) == (s.sod, s.sdd) and g.beam == "cone"
    assert Scanner.preset("esrf_id19").geometry(20.0, 3).beam == "parallel"
    # replace() takes the same names; the original is unchanged
    t = s.replace(gain_sigma=0.1, current_ua=50.0)
    assert t.detector.gain_sigma == 0.1 and t.current_ua == 50.0 and s.current_ua == 85.0


def test_energy_override_makes_a_tube_monochromatic_with_its_photon_output():
    tube = Scanner.preset("nikon_xt225")
    mono = Scanner.preset("nikon_xt225", energy_kev=60.0)
    spectrum = mono.spectrum()
    assert spectrum.n_bins == 1 and spectrum.energies_kev[0] == 60.0
    assert spectrum.unit == tube.spectrum().unit
    assert spectrum.total == pytest.approx(tube.spectrum().total, rel=1e-12)


def test_beam_line_spectrum_is_monochromatic_at_the_flux():
    s = Scanner.preset("aps_2bm")
    spectrum = s.spectrum()
    assert spectrum.energies_kev.tolist() == [27.4]
    assert spectrum.total == pytest.approx(s.flux, rel=1e-12)


def test_tube_counts_scale_with_current_exposure_and_inverse_square():
    base = Scanner.preset("nikon_xt225", **SMALL)
    spectrum = base.spectrum()
    geometry = base.geometry(30.0, 2)
    counts, _ = base.photons_per_pixel(spectrum, geometry)
    assert counts.dtype == np.float64 and counts.shape == (spectrum.n_bins,)
    # independent formula: photons/mm²/mAs at 1 m × mAs × pixel area × (1 m / SDD)²
    expected = spectrum.fluence * (85e-3 * 1.0) * 0.254**2 * (1000.0 / 967.3) ** 2
    np.testing.assert_allclose(counts, expected, rtol=1e-12)
    twice, _ = base.replace(current_ua=170.0).photons_per_pixel(spectrum, geometry)
    np.testing.assert_allclose(twice, 2 * counts, rtol=1e-12)
    thrice, _ = base.replace(exposure_s=3.0).photons_per_pixel(spectrum, geometry)
    np.testing.assert_allclose(thrice, 3 * counts, rtol=1e-12)
    far, _ = base.photons_per_pixel(spectrum, base.geometry(30.0, 2, sdd=2 * 967.3))
    np.testing.assert_allclose(far, counts / 4, rtol=1e-12)


@pytest.mark.parametrize("offset, roll", [((0.0, 0.0), 0.0), ((3.0, -5.0), 0.0), ((3.0, -5.0), 7.0)])
def test_tube_falloff_is_cos_cubed(offset, roll):
    s = Scanner.preset("nikon_xt225", det_shape=(5, 7), det_spacing=(0.3, 0.2))
    g = s.geometry(30.0, 3, det_offset=offset, det_roll_deg=roll)
    _, falloff = s.photons_per_pixel(s.spectrum(), g)
    assert falloff.shape == (5, 7) and falloff.dtype == np.float64
    dv, du = 0.3, 0.2
    a, b = np.radians(roll), np.array([-2.0 * dv, -3.0 * du])   # first pixel: row −2, column −3 from the centre
    # pixel centre in the detector plane, lab (x, z): offset + R(roll)·(u, v)
    x = offset[1] + b[1] * np.cos(a) + b[0] * np.sin(a)
    z = offset[0] - b[1] * np.sin(a) + b[0] * np.cos(a)
    cos_gamma = s.sdd / math.sqrt(s.sdd**2 + x**2 + z**2)
    assert falloff[0, 0] == pytest.approx(cos_gamma**3, abs=1e-9)
    if offset == (0.0, 0.0):
        assert falloff[2, 3] == pytest.approx(1.0, abs=1e-12)
        assert np.all(falloff <= 1.0)


def test_parallel_counts_are_flux_times_exposure_times_area():
    s = Scanner.preset("aps_2bm", det_shape=(4, 6), det_spacing=(0.001, 0.002), exposure_s=0.5)
    counts, falloff = s.photons_per_pixel(s.spectrum(), s.geometry(20.0, 2))
    assert counts.dtype == np.float64 and falloff.dtype == np.float64
    assert counts.tolist() == [s.flux * 0.5 * 0.001 * 0.002]
    assert np.array_equal(falloff, np.ones((4, 6)))


def test_pink_beam_from_file_keeps_the_flux(tmp_path):
    path = tmp_path / "pink.txt"
    np.savetxt(path, np.column_stack([[15.0, 20.0, 25.0], [1.0, 2.0, 1.0]]))
    s = Scanner.preset("esrf_id19", energy_kev=None, spectrum_file=str(path), **SMALL)
    spectrum = s.spectrum()
    np.testing.assert_allclose(spectrum.weights(), [0.25, 0.5, 0.25], rtol=1e-12)
    counts, _ = s.photons_per_pixel(spectrum, s.geometry(20.0, 2))
    np.testing.assert_allclose(counts, s.flux * s.exposure_s * 0.0014**2 * np.array([0.25, 0.5, 0.25]), rtol=1e-12)


def test_scan_time():
    assert Scanner.preset("nikon_xt225").scan_time_s(600) == 600.0
    assert Scanner.preset("esrf_id19", exposure_s=0.05, readout_s=0.01).scan_time_s(100) == pytest.approx(6.0)


@pytest.mark.parametrize("call, parameter", [
    (lambda: Scanner.preset("no_such_scanner"), "name"),
    (lambda: Scanner.preset("nikon_xt225", bogus=1), "bogus"),
    (lambda: Scanner.preset("nikon_xt225", kvp=300), "kvp"),
    (lambda: Scanner.preset("sigray_apex", kvp=160), "kvp"),
    (lambda: Scanner.preset("nikon_xt225", exposure_s=0.0), "exposure_s"),
    (lambda: Scanner.preset("aps_2bm", exposure_s=-1.0), "exposure_s"),
    (lambda: Scanner.preset("nikon_xt225", energy_kev=100.0), "energy_kev"),
    (lambda: Scanner.preset("esrf_id19", kvp=80.0), "kvp"),
    (lambda: Scanner.preset("esrf_id19", flux=0.0), "flux"),
    (lambda: Scanner.preset("nikon_xt225", sdd=100.0), "sdd"),
    (lambda: Scanner.preset("nikon_xt225", det_shape=(0, 4)), "shape"),
    (lambda: Scanner.preset("nikon_xt225").scan_time_s(0), "n_views"),
    (lambda: Scanner.from_dict({**Scanner.preset("aps_2bm").to_dict(), "colour": "red"}), "colour"),
])
def test_bad_values_raise_naming_the_parameter(call, parameter):
    with pytest.raises(ValueError, match=parameter):
        call()


def test_error_messages_list_what_is_allowed():
    with pytest.raises(ValueError, match="nikon_xt225.*spring8_bl20"):
        Scanner.preset("no_such_scanner")
    with pytest.raises(ValueError, match="current_ua.*det_spacing.*read_noise_adu"):
        Scanner.preset("nikon_xt225", bogus=1)
    with pytest.raises(ValueError, match=r"\[20, 225\]"):
        Scanner.preset("nikon_xt225", kvp=226)


def test_geometry_must_match_the_beam():
    tube, line = Scanner.preset("nikon_xt225", **SMALL), Scanner.preset("aps_2bm", **SMALL)
    with pytest.raises(ValueError, match="geometry.beam"):
        tube.photons_per_pixel(tube.spectrum(), line.geometry(20.0, 2))
    with pytest.raises(ValueError, match="geometry.beam"):
        line.photons_per_pixel(line.spectrum(), tube.geometry(20.0, 2))
    with pytest.raises(ValueError, match="spectrum.unit"):
        tube.photons_per_pixel(Spectrum.monochromatic(50.0), tube.geometry(20.0, 2))
    assert isinstance(tube.geometry(20.0, 2), Geometry)

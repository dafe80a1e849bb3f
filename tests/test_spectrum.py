"""Spectra: spekpy tube spectra (units, rebinning), filtration against xraydb, monochromatic and file spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest
import spekpy
import xraydb

from lamino.simulate.spectrum import SPEKPY_KVP_RANGE, Spectrum


def _spekpy(kvp, filters=(("Be", 0.25),)):
    s = spekpy.Spek(kvp=kvp, th=12.0, targ="W", dk=0.5)
    for m, t in filters:
        s.filter(m, t)
    return s


def test_tube_units_total_and_mean_energy_match_spekpy():
    ref = _spekpy(100.0)
    s = Spectrum.tube(100.0)
    assert s.n_bins == 32
    assert s.unit == "photons/mm²/mAs at 1 m"
    # spekpy: get_flu() photons/cm²/mAs at 1 m; lamino photons/mm²/mAs (÷100); photons below e_min are < 1e-6
    assert s.total == pytest.approx(ref.get_flu() / 100.0, rel=1e-6)
    assert s.mean_energy_kev == pytest.approx(ref.get_emean(), rel=0.01)
    assert 20.0 < s.mean_energy_kev < 50.0
    assert s.energies_kev.max() <= 100.0
    assert np.all(np.diff(s.energies_kev) > 0)
    assert s.weights().sum() == pytest.approx(1.0, rel=1e-12)


def test_tube_hardened_by_spekpy_filter_matches_spekpy_and_is_cached():
    ref = _spekpy(120.0, (("Be", 0.25), ("Al", 2.5)))
    s = Spectrum.tube(120.0, filters=(("Be", 0.25), ("Al", 2.5)), n_bins=16)
    assert s.n_bins == 16
    assert s.mean_energy_kev == pytest.approx(ref.get_emean(), rel=0.01)
    assert s.mean_energy_kev > Spectrum.tube(120.0).mean_energy_kev + 10.0
    again = Spectrum.tube(120.0, filters=[("Be", 0.25), ("Al", 2.5)], n_bins=16)  # lists work too
    np.testing.assert_array_equal(again.fluence, s.fluence)


def test_rebin_conserves_photons_and_mean_energy():
    fine = Spectrum.tube(80.0, n_bins=400, e_min_kev=1.0)
    for n in (1, 7, 32):
        coarse = fine.rebin(n, e_min_kev=1.0, e_max_kev=80.0)
        assert coarse.n_bins <= n
        assert coarse.total == pytest.approx(fine.total, rel=1e-6)
        assert coarse.mean_energy_kev == pytest.approx(fine.mean_energy_kev, rel=1e-6)
    coarse = fine.rebin(8, e_min_kev=1.0, e_max_kev=80.0)
    edges = np.linspace(1.0, 80.0, 9)
    assert np.all((coarse.energies_kev >= edges[:-1]) & (coarse.energies_kev <= edges[1:]))


def test_rebin_of_points_is_exact_and_discards_outside():
    s = Spectrum(np.array([10.0, 11.0, 20.0, 35.0]), np.array([1.0, 3.0, 2.0, 5.0]), "relative")
    r = s.rebin(2, e_min_kev=10.0, e_max_kev=30.0)
    np.testing.assert_allclose(r.energies_kev, [(10 + 33) / 4, 20.0])
    np.testing.assert_allclose(r.fluence, [4.0, 2.0])
    r = s.rebin(3, e_min_kev=10.0, e_max_kev=35.0)  # the upper edge belongs to the last bin; middle bin empty
    np.testing.assert_allclose(r.fluence, [4.0, 2.0, 5.0])


def test_filtered_transmission_equals_xraydb_integration():
    s = Spectrum.tube(100.0)
    t = 2.0
    mu = np.array([xraydb.material_mu("Al", e * 1000.0, density=2.699) for e in s.energies_kev]) / 10.0
    expected = np.sum(s.fluence * np.exp(-mu * t)) / np.sum(s.fluence)
    f = s.filtered("aluminium", t)
    assert f.total / s.total == pytest.approx(expected, rel=1e-6)
    assert f.mean_energy_kev > s.mean_energy_kev + 10.0  # beam hardening
    np.testing.assert_array_equal(f.energies_kev, s.energies_kev)
    assert s.filtered("aluminium", 0.0).total == s.total


def test_monochromatic():
    s = Spectrum.monochromatic(30.0, 5e6)
    assert (s.n_bins, s.total, s.mean_energy_kev, s.unit) == (1, 5e6, 30.0, "photons/mm²/s")
    mu = xraydb.material_mu("Cu", 30000.0, density=8.96) / 10.0
    assert s.filtered("copper", 0.01).total == pytest.approx(5e6 * np.exp(-mu * 0.01), rel=1e-6)


def test_from_file_round_trip_and_csv(tmp_path):
    s = Spectrum.tube(60.0, n_bins=12)
    path = s.to_file(str(tmp_path / "spec.txt"))
    back = Spectrum.from_file(path)
    np.testing.assert_array_equal(back.energies_kev, s.energies_kev)
    np.testing.assert_array_equal(back.fluence, s.fluence)
    assert back.unit == "relative"
    csv = tmp_path / "spec.csv"
    csv.write_text("# keV, counts\n30, 2\n10, 1\n20, 0\n")  # unsorted, comma separated
    c = Spectrum.from_file(str(csv))
    np.testing.assert_array_equal(c.energies_kev, [10.0, 20.0, 30.0])
    assert Spectrum.from_file(str(csv), n_bins=1).mean_energy_kev == pytest.approx(70.0 / 3.0)


def test_dict_round_trip_is_json_safe():
    s = Spectrum.tube(50.0, n_bins=8)
    back = Spectrum.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(back.fluence, s.fluence)
    assert (back.unit, back.description) == (s.unit, s.description)


def test_arrays_are_read_only():
    s = Spectrum.tube(100.0)
    with pytest.raises(ValueError):
        s.fluence[0] = 0.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: Spectrum.tube(5.0), "kvp"),
        (lambda: Spectrum.tube(600.0), "kvp"),
        (lambda: Spectrum.tube(60.0, target="Mo"), "kvp"),
        (lambda: Spectrum.tube(float("nan")), "kvp"),
        (lambda: Spectrum.tube(100.0, target="Fe"), "target"),
        (lambda: Spectrum.tube(100.0, anode_angle_deg=0.0), "anode_angle_deg"),
        (lambda: Spectrum.tube(100.0, filters=(("Al", -1.0),)), "filters"),
        (lambda: Spectrum.tube(100.0, filters=(("NoSuchStuff", 1.0),)), "filters"),
        (lambda: Spectrum.tube(100.0, n_bins=0), "n_bins"),
        (lambda: Spectrum.tube(100.0, n_bins=2.5), "n_bins"),
        (lambda: Spectrum.tube(100.0).filtered("aluminium", -1.0), "thickness_mm"),
        (lambda: Spectrum.tube(100.0).filtered("unobtainium", 1.0), "unobtainium"),
        (lambda: Spectrum.tube(100.0).rebin(4, e_min_kev=200.0), "e_min_kev"),
        (lambda: Spectrum(np.array([1.0, np.inf]), np.array([1.0, 1.0])), "energies_kev"),
        (lambda: Spectrum(np.array([2.0, 1.0]), np.array([1.0, 1.0])), "energies_kev"),
        (lambda: Spectrum(np.array([1.0, 2.0]), np.array([1.0, -1.0])), "fluence"),
        (lambda: Spectrum(np.array([1.0, 2.0]), np.array([1.0])), "fluence"),
        (lambda: Spectrum.monochromatic(-1.0), "energy_kev"),
    ],
)
def test_bad_inputs_raise_naming_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_kvp_error_states_the_range():
    lo, hi = SPEKPY_KVP_RANGE["W"]
    with pytest.raises(ValueError, match=f"kvp=1000.0.*{lo:g}, {hi:g}"):
        Spectrum.tube(1000.0)


@pytest.mark.parametrize("text", ["1 2 3\n4 5 6\n", "1\n2\n", "a b\n", "# nothing\n"])
def test_from_file_bad_columns(tmp_path, text):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(ValueError, match="path="):
        Spectrum.from_file(str(p))


def test_from_file_missing(tmp_path):
    with pytest.raises(ValueError, match="path="):
        Spectrum.from_file(str(tmp_path / "missing.txt"))

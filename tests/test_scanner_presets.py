"""Scanner presets as package data: they equal the Python presets they replaced, and bad files are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import tomllib
from pathlib import Path

import pytest

from lamino.simulate import presets
from lamino.simulate.detector import Detector
from lamino.simulate.scanner import Scanner, load_presets

# Scanner.preset(name).to_dict() of the presets as they were written in Python in lamino/simulate/scanner.py
# (commit cc7e6f4), captured by running that code; ``sources`` as (count, SHA-256 of the texts joined by "\n").
OLD_PRESETS = {
    "nikon_xt225": dict(
        name="nikon_xt225", beam="cone", kvp=80.0, target="W", anode_angle_deg=12.0,
        filters=[["Be", 1.0], ["Air", 967.3]], energy_kev=None, spectrum_file=None, current_ua=85.0, exposure_s=1.0,
        flux=None, focal_spot_um=3.0, sod=295.0, sdd=967.3, n_flats=20, n_darks=20, readout_s=0.0,
        kvp_range=[20.0, 225.0],
        description="Nikon XT H 225 lab micro-CT with a tilted stage (LEGO CL scan of Fisher et al. 2019)",
        sources=(10, "f15512e66cca3210423bd90174db9aa1f88e5f2ad64cf6256b7a1cdd985257be"),
        detector=dict(
            shape=[1148, 1596], spacing=[0.254, 0.254], mode="integrating", scintillator="CsI",
            scintillator_um=600.0, cover=[], threshold_kev=[0.0, None], psf="glare", psf_sigma_px=0.6,
            glare_fraction=0.05, glare_sigma_px=10.0, lorentz_gamma_px=0.7, gain_sigma=0.03, gain_drift_sigma=0.002,
            dead_fraction=0.0001, hot_fraction=2e-05, adu_per_kev=0.059, read_noise_adu=3.0, offset_adu=1000.0,
            bit_depth=16, quantize=True, seed=0
        ),
    ),
    "sigray_apex": dict(
        name="sigray_apex", beam="cone", kvp=80.0, target="W", anode_angle_deg=12.0,
        filters=[["Be", 0.25], ["Air", 750.0]], energy_kev=None, spectrum_file=None, current_ua=25.0,
        exposure_s=10.0, flux=None, focal_spot_um=0.5, sod=5.0, sdd=750.0, n_flats=20, n_darks=20, readout_s=0.1,
        kvp_range=[20.0, 150.0],
        description="Sigray Apex XCT-150 sub-µm lab CT/laminography (transmission-target microfocus source)",
        sources=(8, "16b0c8ff59ec07a782c02c1e0462801914d114005f41ce9cdd0cc1a9b394b0f6"),
        detector=dict(
            shape=[1536, 1944], spacing=[0.0748, 0.0748], mode="integrating", scintillator="CsI",
            scintillator_um=200.0, cover=[], threshold_kev=[0.0, None], psf="glare", psf_sigma_px=0.7,
            glare_fraction=0.03, glare_sigma_px=8.0, lorentz_gamma_px=0.7, gain_sigma=0.02, gain_drift_sigma=0.002,
            dead_fraction=0.0001, hot_fraction=2e-05, adu_per_kev=0.041, read_noise_adu=2.0, offset_adu=300.0,
            bit_depth=14, quantize=True, seed=0
        ),
    ),
    "esrf_id19": dict(
        name="esrf_id19", beam="parallel", kvp=None, target="W", anode_angle_deg=12.0, filters=[], energy_kev=19.0,
        spectrum_file=None, current_ua=100.0, exposure_s=0.2, flux=100000000000.0, focal_spot_um=0.0, sod=None,
        sdd=None, n_flats=20, n_darks=20, readout_s=0.1, kvp_range=None,
        description="ESRF ID19 synchrotron laminography (monochromatic, 1.4 µm effective pixels)",
        sources=(6, "e23b0781eaf7c606797ba05f40b8a095bde73e26c3bbbe1e5bd5dda257007da1"),
        detector=dict(
            shape=[2048, 2048], spacing=[0.0014, 0.0014], mode="integrating", scintillator="LuAG",
            scintillator_um=10.0, cover=[], threshold_kev=[0.0, None], psf="gaussian", psf_sigma_px=1.0,
            glare_fraction=0.05, glare_sigma_px=10.0, lorentz_gamma_px=0.7, gain_sigma=0.01, gain_drift_sigma=0.002,
            dead_fraction=1e-05, hot_fraction=1e-05, adu_per_kev=0.053, read_noise_adu=2.0, offset_adu=100.0,
            bit_depth=14, quantize=True, seed=0
        ),
    ),
    "psi_csaxs": dict(
        name="psi_csaxs", beam="parallel", kvp=None, target="W", anode_angle_deg=12.0, filters=[], energy_kev=6.2,
        spectrum_file=None, current_ua=100.0, exposure_s=30.0, flux=700000000000.0, focal_spot_um=0.0, sod=None,
        sdd=None, n_flats=1, n_darks=1, readout_s=5.0, kvp_range=None,
        description="PSI SLS cSAXS ptychographic X-ray laminography (absorption approximation, 6.2 keV)",
        sources=(5, "87a87003b296e17c4406c490bfdbe813d4d60afb971263e688214187251564c4"),
        detector=dict(
            shape=[1024, 1024], spacing=[1.43e-05, 1.43e-05], mode="counting", scintillator="silicon",
            scintillator_um=450.0, cover=[], threshold_kev=[3.1, None], psf="gaussian", psf_sigma_px=0.5,
            glare_fraction=0.05, glare_sigma_px=10.0, lorentz_gamma_px=0.7, gain_sigma=0.0, gain_drift_sigma=0.0,
            dead_fraction=0.0, hot_fraction=0.0, adu_per_kev=0.01, read_noise_adu=0.0, offset_adu=0.0,
            bit_depth=None, quantize=True, seed=0
        ),
    ),
    "aps_2bm": dict(
        name="aps_2bm", beam="parallel", kvp=None, target="W", anode_angle_deg=12.0, filters=[], energy_kev=27.4,
        spectrum_file=None, current_ua=100.0, exposure_s=0.16, flux=100000000000.0, focal_spot_um=0.0, sod=None,
        sdd=None, n_flats=10, n_darks=10, readout_s=0.0, kvp_range=None,
        description="APS 2-BM micro-CT laminography (multilayer monochromator, 27.4 keV, 0.65 µm pixels)",
        sources=(6, "4232b25d18a753529e0243ebc937c99cd99f57884c4c088f065e6847d1a26fe7"),
        detector=dict(
            shape=[2160, 2560], spacing=[0.00065, 0.00065], mode="integrating", scintillator="LuAG",
            scintillator_um=10.0, cover=[], threshold_kev=[0.0, None], psf="gaussian", psf_sigma_px=1.0,
            glare_fraction=0.05, glare_sigma_px=10.0, lorentz_gamma_px=0.7, gain_sigma=0.01, gain_drift_sigma=0.002,
            dead_fraction=1e-05, hot_fraction=1e-05, adu_per_kev=2.1, read_noise_adu=2.0, offset_adu=100.0,
            bit_depth=16, quantize=True, seed=0
        ),
    ),
    "spring8_bl20": dict(
        name="spring8_bl20", beam="parallel", kvp=None, target="W", anode_angle_deg=12.0, filters=[],
        energy_kev=20.0, spectrum_file=None, current_ua=100.0, exposure_s=0.1, flux=100000000000.0,
        focal_spot_um=0.0, sod=None, sdd=None, n_flats=20, n_darks=20, readout_s=0.01, kvp_range=None,
        description="SPring-8 BL20XU/BL20B2 micro-laminography (monochromatic, 1.5 µm effective pixels)",
        sources=(5, "488ae4bb2bcaf4c04506f00f9a8207621e43af9cd5c417456e6d77a588fcdc55"),
        detector=dict(
            shape=[2048, 2048], spacing=[0.0015, 0.0015], mode="integrating", scintillator="LuAG",
            scintillator_um=20.0, cover=[], threshold_kev=[0.0, None], psf="gaussian", psf_sigma_px=1.0,
            glare_fraction=0.05, glare_sigma_px=10.0, lorentz_gamma_px=0.7, gain_sigma=0.01, gain_drift_sigma=0.002,
            dead_fraction=1e-05, hot_fraction=1e-05, adu_per_kev=0.22, read_noise_adu=2.0, offset_adu=100.0,
            bit_depth=16, quantize=True, seed=0
        ),
    ),
}


def _same(a, b) -> bool:
    """Equal values of equal types, all the way down (80 and 80.0 differ)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", list(OLD_PRESETS))
def test_presets_equal_the_python_presets_they_replaced(name):
    d = Scanner.preset(name).to_dict()
    assert d.pop("max_frame_s") is None          # a field added since (frame averaging), off in every preset
    sources = d["sources"]
    d["sources"] = (len(sources), hashlib.sha256("\n".join(sources).encode()).hexdigest())
    assert _same(d, OLD_PRESETS[name])
    assert list(Scanner.presets()) == list(OLD_PRESETS)


def test_the_key_tables_name_every_scanner_and_detector_field():
    assert set(presets.SCANNER_KEYS) == {f.name for f in dataclasses.fields(Scanner)} - {"name", "detector"}
    assert set(presets.DETECTOR_KEYS) == {f.name for f in dataclasses.fields(Detector)}
    for keys, required in ((presets.SCANNER_KEYS, presets.REQUIRED), (presets.DETECTOR_KEYS,
                                                                         presets.DETECTOR_REQUIRED)):
        assert all(k in keys or k == "detector" for _, _, needed in required for k in needed)


def test_presets_file_is_package_data_and_every_preset_cites_sources():
    root = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert "presets.toml" in pyproject["tool"]["setuptools"]["package-data"]["lamino.simulate"]
    assert presets.PRESETS_FILE.is_file()
    text = presets.PRESETS_FILE.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    for name, table in raw["presets"].items():
        assert table["sources"] and all(isinstance(s, str) and s for s in table["sources"]), name
        assert "{review}" not in " ".join(Scanner.preset(name).sources)


def test_a_copy_of_the_file_loads_the_same_scanners(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(presets.PRESETS_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    mine = load_presets(path)
    assert mine == {name: Scanner.preset(name) for name in Scanner.presets()}
    assert load_presets(str(path)) == mine


def _edited(tmp_path, old: str, new: str) -> Path:
    """The shipped presets file with its first ``old`` replaced by ``new``, written to tmp_path."""
    text = presets.PRESETS_FILE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize("old, new, message", [
    ("sod = 295.0\n", "sod = 295.0\nkvpp = 80\n",
     r"\[presets.nikon_xt225\]: key 'kvpp' is not allowed: allowed keys are beam, description, kvp,"),
    ("kvp = 80.0\n", 'kvp = "80"\n', r"\[presets.nikon_xt225\]: kvp='80' is not allowed: give a number or \"none\""),
    ("n_flats = 20\n", "n_flats = 20.0\n", r"n_flats=20.0 is not allowed: give an integer"),
    ('filters = [["Be", 1.0], ["Air", 967.3]]\n', 'filters = ["Be", 1.0]\n',
     r"filters=\['Be', 1.0\] is not allowed: give an array of \[\"material\", thickness_mm\] arrays"),
    ("shape = [1148, 1596]\n", "shape = [1148]\n",
     r"\[presets.nikon_xt225.detector\]: shape=\[1148\] is not allowed: give an array of two integers"),
    ("sod = 295.0\n", "",
     r"\[presets.nikon_xt225\]: 'sod' is missing: a preset with beam = 'cone' must give kvp, kvp_range,"),
    ("n_darks = 20\n", "", r"'n_darks' is missing: every preset must give beam,"),
    ("adu_per_kev = 0.059\n", "",
     r"\[presets.nikon_xt225.detector\]: 'adu_per_kev' is missing: a preset with mode = 'integrating'"),
    ("glare_sigma_px = 10.0\n", "", r"'glare_sigma_px' is missing: a preset with psf = 'glare' must give"),
    ("sdd = 967.3\n", "sdd = 100.0\n",
     r"\[presets.nikon_xt225\]: sdd=100.0 is not allowed: the detector must lie beyond the object"),
    ("bit_depth = 16\n", "bit_depth = 40\n",
     r"\[presets.nikon_xt225.detector\]: bit_depth=40 is not allowed: give an integer in \[1, 32\]"),
    ("as listed in {review}", "as listed in {revew}",
     r"sources cite \{revew\}, which is not in \[references\]: known are review"),
    ("[presets.nikon_xt225.detector]\n", "[presets.nikon_xt225.detektor]\n",
     r"\[presets.nikon_xt225\]: key 'detektor' is not allowed"),
    ("[references]\n", "[referenzes]\n", r"key 'referenzes' is not allowed: allowed keys are references, presets"),
    ("kvp = 80.0\n", "kvp = = 80.0\n", r"is not valid TOML"),
])
def test_bad_presets_files_give_one_line_errors_naming_file_and_table(tmp_path, old, new, message):
    path = _edited(tmp_path, old, new)
    with pytest.raises(ValueError, match=message) as info:
        load_presets(path)
    text = str(info.value)
    assert str(path) in text and "\n" not in text


def test_none_and_inf_in_the_file(tmp_path):
    csaxs = Scanner.preset("psi_csaxs").detector
    assert csaxs.bit_depth is None and csaxs.threshold_kev == (3.1, math.inf)
    path = _edited(tmp_path, "hot_fraction = 2e-5\nadu_per_kev = 0.059\nread_noise_adu = 3.0\noffset_adu = 1000.0\n"
                   "bit_depth = 16\n",
                   "hot_fraction = 0.0\nadu_per_kev = 0.059\nread_noise_adu = 3.0\noffset_adu = 1000.0\n"
                   'bit_depth = "none"\n')
    assert load_presets(path)["nikon_xt225"].detector.bit_depth is None
    path = _edited(tmp_path, "psf_sigma_px = 0.6\n", 'psf_sigma_px = "none"\n')
    with pytest.raises(ValueError, match=r"psf_sigma_px='none' is not allowed: give a number$"):
        load_presets(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_presets(tmp_path / "nowhere.toml")

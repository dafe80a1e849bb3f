"""Materials: units (keV in, 1/mm out), xraydb wrapping, NIST reference values, mixtures and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xraydb

import lamino.materials
from lamino.materials import MATERIALS, Material, get_material, material_names, mix, register_material

REQUIRED = [
    "air", "abs", "aluminium", "copper", "graphite_anode", "nmc811_cathode", "nmc811", "separator", "electrolyte",
    "pouch_laminate", "li6ps5cl", "li6ps5cl_pellet", "lithium", "steel_316", "gold", "tungsten", "silicon",
    "silicon_nitride", "polyimide", "water",
]  # fmt: skip


def test_aluminium_mu_wraps_xraydb_in_per_mm_and_matches_nist():
    mu = get_material("aluminium").mu(60.0)
    ref = xraydb.material_mu("Al", 60000.0, density=2.699) / 10.0  # eV in, 1/cm out -> 1/mm
    assert mu == pytest.approx(ref, rel=1e-6)
    # NIST XCOM, total with coherent: μ/ρ(Al, 60 keV) = 0.2778 cm²/g -> μ = 0.2778 · 2.699 / 10 1/mm
    assert mu == pytest.approx(0.2778 * 2.699 / 10.0, rel=0.03)
    assert mu == pytest.approx(0.0749, rel=0.03)


def test_water_mass_attenuation_at_100_kev_matches_nist():
    water = get_material("water")
    assert water.mass_attenuation(100.0) == pytest.approx(0.1707, rel=0.03)  # cm²/g, NIST XCOM
    assert water.mu(100.0) == pytest.approx(0.01707, rel=0.03)  # 1/mm at 1 g/cm³


def test_mass_fraction_dict_equals_formula():
    by_mass = Material("w_mass", {"H": 0.1119, "O": 0.8881}, 1.0)
    by_formula = Material("w_formula", "H2O", 1.0)
    e = np.array([10.0, 30.0, 60.0, 100.0, 300.0])
    np.testing.assert_allclose(by_mass.mu(e), by_formula.mu(e), rtol=5e-3)
    fractions = by_formula.mass_fractions()
    assert fractions["H"] == pytest.approx(0.1119, rel=2e-3)
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-12)


def test_dict_fractions_are_normalised():
    m = Material("half", {"Fe": 2.0, "Ni": 2.0}, 8.0)
    assert m.mass_fractions() == pytest.approx({"Fe": 0.5, "Ni": 0.5})


def test_mix_density_and_linearity():
    al, water, gold = get_material("aluminium"), get_material("water"), get_material("gold")
    parts = [(al, 0.5), (water, 0.3), (gold, 0.2)]
    m = mix("test_mix", parts)
    assert m.density == pytest.approx(0.5 * 2.699 + 0.3 * 1.0 + 0.2 * 19.32, rel=1e-12)
    e = np.array([15.0, 60.0, 79.0, 82.0, 150.0])
    expected = sum(v * c.mu(e) for c, v in parts)
    np.testing.assert_allclose(m.mu(e), expected, rtol=1e-6)
    # mass fractions: vᵢρᵢ/ρ for pure elements
    assert m.mass_fractions()["Au"] == pytest.approx(0.2 * 19.32 / m.density, rel=1e-12)
    # a remainder of empty pore space adds no mass
    assert mix("porous_al", [(al, 0.6)]).mu(60.0) == pytest.approx(0.6 * al.mu(60.0), rel=1e-9)


def test_mu_is_vectorised_and_decreases_for_aluminium():
    al = get_material("aluminium")
    mu = al.mu(np.array([20, 40, 60]))
    assert mu.shape == (3,) and mu.dtype == np.float64
    assert np.all(np.diff(mu) < 0)
    assert al.mu(np.full((2, 3), 60.0)).shape == (2, 3)
    assert np.ndim(al.mu(60.0)) == 0
    assert float(al.mu([60.0])[0]) == pytest.approx(float(al.mu(60.0)))


def test_gold_k_edge_at_80_7_kev():
    gold = get_material("gold")
    below, above = gold.mu(80.0), gold.mu(81.0)
    assert above > 2.0 * below  # K edge 80.725 keV, jump ratio ~4.9
    assert gold.mu(80.5) < 2.0 * below  # and it lies between 80.5 and 81 keV


@pytest.mark.parametrize("name", REQUIRED)
def test_library_material_is_valid(name):
    m = get_material(name)
    assert m.name == name and MATERIALS[name] is m
    assert m.density > 0
    mu = m.mu(60.0)
    assert math.isfinite(mu) and mu > 0
    assert sum(m.mass_fractions().values()) == pytest.approx(1.0, abs=1e-9)
    hash(m)


def test_library_specific_values():
    assert get_material("li6ps5cl_pellet").density == pytest.approx(0.85 * 1.86, rel=1e-12)
    assert get_material("abs").mass_fractions() == pytest.approx({"C": 0.867, "H": 0.080, "N": 0.053}, abs=1e-9)
    assert get_material("air").density == pytest.approx(0.001205)
    assert get_material("nmc811").density == pytest.approx(4.78)
    assert 1.2 <= get_material("electrolyte").density <= 1.35
    assert 3.2 <= get_material("nmc811_cathode").density <= 3.55
    assert get_material("steel_316").mass_fractions()["Fe"] == pytest.approx(0.665)
    # electrolyte holds 1 mol/L LiPF6: Li mass per cm³ = 6.94e-3 g
    el = get_material("electrolyte")
    assert el.mass_fractions()["Li"] * el.density == pytest.approx(xraydb.atomic_mass("Li") * 1e-3, rel=1e-9)


def test_lookup_is_case_insensitive_and_names_sorted():
    assert get_material("Aluminium") is get_material("aluminium")
    names = material_names()
    assert names == sorted(names) and set(REQUIRED) <= set(names)


@pytest.fixture
def scratch_registry():
    """Remove materials registered by a test, so the global library is unchanged afterwards."""
    before = set(material_names())
    yield
    for name in set(material_names()) - before:
        lamino.materials._REGISTRY.pop(name)


def test_register_material(scratch_registry):
    m = Material("test_alumina_reg", "Al2O3", 3.95)
    register_material(m)
    assert get_material("TEST_ALUMINA_REG") is m
    with pytest.raises(ValueError, match="test_alumina_reg.*already registered.*overwrite"):
        register_material(Material("test_alumina_reg", "Al2O3", 3.9))
    m2 = register_material(Material("test_alumina_reg", "Al2O3", 3.9), overwrite=True)
    assert get_material("test_alumina_reg") is m2
    with pytest.raises(ValueError, match="material="):
        register_material("aluminium")  # type: ignore[arg-type]


def test_material_is_hashable_and_frozen():
    a = Material("x", {"H": 0.1119, "O": 0.8881}, 1.0)
    b = Material("x", {"O": 0.8881, "H": 0.1119}, 1.0)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.density = 2.0  # type: ignore[misc]


def test_unknown_material_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown material 'unobtainium': known materials are .*aluminium.*water"):
        get_material("unobtainium")


@pytest.mark.parametrize("density", [-1.0, 0.0, float("nan"), float("inf")])
def test_bad_density(density):
    with pytest.raises(ValueError, match="density="):
        Material("bad", "Al", density)


@pytest.mark.parametrize(
    ("composition", "pattern"),
    [
        ("Xx2", "composition='Xx2'"),
        ("H2O)", r"composition='H2O\)'"),
        ("", "composition=''"),
        ({}, "composition="),
        ({"H": -0.1, "O": 1.0}, "composition"),
        ({"Qq": 1.0}, "unknown element"),
        ({"al": 1.0}, "unknown element"),
        (42, "composition=42"),
    ],
)
def test_bad_composition(composition, pattern):
    with pytest.raises(ValueError, match=pattern):
        Material("bad", composition, 1.0)


@pytest.mark.parametrize("energy", [0.0, float("nan"), 5000.0, -60.0, [60.0, 0.5]])
def test_bad_energy(energy):
    with pytest.raises(ValueError, match=r"energy_kev=.*\[1, 1000\]"):
        get_material("aluminium").mu(energy)


def test_bad_mix():
    al = get_material("aluminium")
    with pytest.raises(ValueError, match="sum to"):
        mix("too_full", [(al, 0.7), (al, 0.5)])
    with pytest.raises(ValueError, match="volume_fraction="):
        mix("negative", [(al, -0.1)])
    with pytest.raises(ValueError, match="components"):
        mix("empty", [])

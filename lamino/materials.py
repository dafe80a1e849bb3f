"""Materials and their X-ray linear attenuation coefficients.

Units (``design.md``): energies in **keV**, linear attenuation μ in **1/mm**, densities in **g/cm³**, mass
attenuation μ/ρ in **cm²/g**, composition as **mass fractions** (dimensionless, summing to 1).

Data source: `xraydb <https://xraypy.github.io/XrayDB/>`_ (W. T. Elam, B. D. Ravel and J. R. Sieber,
Radiat. Phys. Chem. 63, 121 (2002)): *total* cross sections (photo-absorption + coherent + incoherent
scattering), tabulated for Z = 1–98. xraydb takes energies in eV and returns μ in 1/cm; this module wraps it
so no caller sees either, and always passes the density explicitly. The Elam tables are reliable up to
800 keV (xraydb warns above that); lamino accepts 1–1000 keV.

A :class:`Material` is immutable and hashable. Its composition is a chemical formula (``"Al2O3"``) or a
mapping element → mass fraction. μ(E) is tabulated with numpy and cached per (composition, density,
energies); call :meth:`Material.mu` outside ``jax.jit`` and pass the resulting arrays in.

Composites (electrode coatings, separators, laminates) are built with :func:`mix` from stated volume
fractions, so their densities and mass fractions are derived in code, never typed in. :data:`MATERIALS` is
the library (a read-only view of the registry); :func:`get_material`, :func:`register_material` and
:func:`material_names` look materials up and add new ones.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xraydb
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ENERGY_RANGE_KEV",
    "MATERIALS",
    "Material",
    "get_material",
    "material_names",
    "mix",
    "register_material",
]

ENERGY_RANGE_KEV: tuple[float, float] = (1.0, 1000.0)
"""Energies (keV) accepted by :meth:`Material.mu`, inclusive."""

_ELAM_Z_MAX = 98  # the Elam tables in xraydb stop at californium
_ELEMENTS: frozenset[str] = frozenset(xraydb.atomic_symbol(z) for z in range(1, _ELAM_Z_MAX + 1))

Composition = str | tuple[tuple[str, float], ...]


def _check_elements(symbols: Sequence[str], where: str) -> None:
    bad = [s for s in symbols if s not in _ELEMENTS]
    if bad:
        raise ValueError(
            f"composition={where!r}: unknown element symbol(s) {', '.join(map(repr, bad))}; "
            f"allowed are the element symbols H to Cf (Z = 1-{_ELAM_Z_MAX}), case-sensitive, e.g. 'Al', 'O'"
        )


def _formula_fractions(formula: str) -> dict[str, float]:
    """Mass fractions of a chemical formula (atom counts × atomic masses, normalised)."""
    try:
        counts = xraydb.chemparse(formula)
    except ValueError as err:
        first = str(err).splitlines()[0].rstrip(":")
        raise ValueError(
            f"composition={formula!r} is not a valid chemical formula ({first}); "
            "allowed are formulas such as 'Al2O3', 'Li6PS5Cl', 'LiNi0.8Mn0.1Co0.1O2' or a dict element -> mass fraction"
        ) from None
    _check_elements(list(counts), formula)
    masses = {el: float(n) * xraydb.atomic_mass(el) for el, n in counts.items()}
    total = sum(masses.values())
    if not counts or not math.isfinite(total) or total <= 0 or any(m < 0 for m in masses.values()):
        raise ValueError(
            f"composition={formula!r} has no positive atom counts; allowed are formulas such as 'Al2O3' or 'H2O'"
        )
    return {el: m / total for el, m in masses.items() if m > 0}


def _dict_fractions(composition: Mapping[Any, Any]) -> tuple[tuple[str, float], ...]:
    """Validated, normalised, sorted (element, mass fraction) pairs; zero fractions dropped."""
    if len(composition) == 0:
        raise ValueError("composition={} is empty; allowed is a chemical formula or a dict element -> mass fraction")
    pairs: list[tuple[str, float]] = []
    for el, w in composition.items():
        if not isinstance(el, str):
            raise ValueError(f"composition key {el!r} is not a string; allowed are element symbols such as 'Fe'")
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"composition[{el!r}]={w!r} is not a number; allowed are mass fractions >= 0") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"composition[{el!r}]={w!r} is invalid; allowed are finite mass fractions >= 0")
        pairs.append((el, w))
    _check_elements([el for el, _ in pairs], dict(composition))
    total = math.fsum(w for _, w in pairs)
    if total <= 0:
        raise ValueError(f"composition={dict(composition)!r} sums to 0; allowed are mass fractions with a positive sum")
    return tuple(sorted((el, w / total) for el, w in pairs if w > 0))


def _check_energies(energy_kev: ArrayLike) -> NDArray[np.float64]:
    try:
        e = np.asarray(energy_kev, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"energy_kev={energy_kev!r} is not numeric; allowed are energies in keV") from None
    lo, hi = ENERGY_RANGE_KEV
    bad = ~(np.isfinite(e) & (e >= lo) & (e <= hi))
    if np.any(bad):
        first = float(e[bad].flat[0]) if e.ndim else float(e)
        raise ValueError(
            f"energy_kev={first!r} is out of range; allowed are finite energies in keV within [{lo:g}, {hi:g}]"
        )
    return e


@functools.cache
def _xraydb_names_and_formulas() -> tuple[frozenset[str], dict[str, str]]:
    mats = xraydb.get_materials()
    return frozenset(mats), {m.formula.lower(): m.formula for m in mats.values()}


def _formula_is_unambiguous(formula: str) -> bool:
    """True if ``xraydb.material_mu`` will read ``formula`` as that formula, not as one of its named materials.

    ``material_mu`` first looks the string up (case-insensitively) among its material names and formulas, so
    e.g. ``"YAg"`` would become YAG (Y3Al5O12). Such strings are computed from mass fractions instead.
    """
    names, formulas = _xraydb_names_and_formulas()
    key = formula.lower()
    return key not in names and formulas.get(key, formula) == formula


@functools.lru_cache(maxsize=512)
def _mu_per_cm(composition: Composition, density: float, energies_kev: tuple[float, ...]) -> NDArray[np.float64]:
    """μ in 1/cm at the given energies (keV); read-only array. Cached: never call inside ``jax.jit``."""
    e_ev = np.asarray(energies_kev, dtype=np.float64) * 1000.0
    if isinstance(composition, str) and _formula_is_unambiguous(composition):
        mu = np.asarray(xraydb.material_mu(composition, e_ev, density=density, kind="total"), dtype=np.float64)
    else:
        pairs = composition if not isinstance(composition, str) else tuple(_formula_fractions(composition).items())
        mass_att = np.zeros_like(e_ev)
        for el, w in pairs:
            mass_att += w * np.asarray(xraydb.mu_elam(el, e_ev, kind="total"), dtype=np.float64)
        mu = density * mass_att
    mu = mu.reshape(e_ev.shape)
    mu.setflags(write=False)
    return mu


@dataclasses.dataclass(frozen=True)
class Material:
    """A homogeneous material: name, composition and density (g/cm³).

    ``composition`` is a chemical formula (``"Al2O3"``, ``"Li6PS5Cl"``; case-sensitive, fractional counts
    allowed) or a mapping element symbol → mass fraction (normalised to sum 1; stored as sorted
    ``(element, fraction)`` pairs so the material stays hashable). ``density`` is in g/cm³.
    Invalid input raises :class:`ValueError` naming the parameter, its value and what is allowed.
    """

    name: str
    composition: str | Mapping[str, float] | tuple[tuple[str, float], ...]
    density: float
    _fractions: tuple[tuple[str, float], ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name={self.name!r} is invalid; allowed is a non-empty string such as 'alumina'")
        try:
            density = float(self.density)
        except (TypeError, ValueError):
            raise ValueError(f"density={self.density!r} is not a number; allowed is a finite value > 0 g/cm³") from None
        if isinstance(self.density, bool) or not math.isfinite(density) or density <= 0:
            raise ValueError(f"density={self.density!r} is invalid; allowed is a finite value > 0 g/cm³")
        object.__setattr__(self, "density", density)
        comp = self.composition
        if isinstance(comp, str):
            fractions = tuple(sorted(_formula_fractions(comp).items()))
        elif isinstance(comp, Mapping):
            fractions = _dict_fractions(comp)
            comp = fractions
        elif isinstance(comp, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in comp):
            fractions = _dict_fractions(dict(comp))
            comp = fractions
        else:
            raise ValueError(
                f"composition={comp!r} is invalid; allowed is a chemical formula string such as 'Al2O3' "
                "or a dict element symbol -> mass fraction such as {'H': 0.112, 'O': 0.888}"
            )
        object.__setattr__(self, "composition", comp)
        object.__setattr__(self, "_fractions", fractions)

    def mass_fractions(self) -> dict[str, float]:
        """Element symbol → mass fraction (dimensionless, sums to 1); formulas use xraydb atomic masses."""
        return dict(self._fractions)

    def mu(self, energy_kev: ArrayLike) -> NDArray[np.float64] | np.float64:
        """Linear attenuation coefficient μ in **1/mm** (total, incl. coherent scattering) at ``energy_kev`` (keV).

        Vectorised: returns a float64 array of the input's shape (a numpy float64 for a scalar input).
        Energies must be finite and within 1–1000 keV.
        """
        e = _check_energies(energy_kev)
        mu = _mu_per_cm(self.composition, self.density, tuple(e.ravel().tolist())) / 10.0  # 1/cm -> 1/mm
        mu = mu.reshape(e.shape)
        return np.float64(mu) if mu.ndim == 0 else mu

    def mass_attenuation(self, energy_kev: ArrayLike) -> NDArray[np.float64] | np.float64:
        """Mass attenuation coefficient μ/ρ in **cm²/g** at ``energy_kev`` (keV); same shapes as :meth:`mu`."""
        return self.mu(energy_kev) * 10.0 / self.density


def mix(name: str, components: Sequence[tuple[Material | str, float]]) -> Material:
    """Composite of ``(material, volume_fraction)`` pairs: ρ = Σ vᵢρᵢ, mass fractions wⱼ = Σᵢ vᵢρᵢwᵢⱼ / ρ.

    Volume fractions must be >= 0 and sum to at most 1; any remainder is empty (vacuum) pore space, which
    adds no mass. Components may be :class:`Material` objects or library names. Because attenuation is
    linear in partial density, μ of the result equals Σ vᵢμᵢ at every energy.
    """
    if len(components) == 0:
        raise ValueError("components=[] is empty; allowed is a list of (material, volume_fraction) pairs")
    parts: list[tuple[Material, float]] = []
    for item in components:
        try:
            mat, v = item
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(
                f"components item {item!r} is invalid; allowed is a (material, volume_fraction) pair"
            ) from None
        if isinstance(mat, str):
            mat = get_material(mat)
        if not isinstance(mat, Material):
            raise ValueError(f"components material {mat!r} is invalid; allowed is a Material or a library name")
        if not math.isfinite(v) or v < 0 or v > 1:
            raise ValueError(f"volume_fraction={v!r} for {mat.name!r} is invalid; allowed is a value in [0, 1]")
        parts.append((mat, v))
    total_v = math.fsum(v for _, v in parts)
    if total_v > 1.0 + 1e-9:
        raise ValueError(f"volume fractions of {name!r} sum to {total_v!r}; allowed is a sum <= 1 (rest is vacuum)")
    density = math.fsum(v * m.density for m, v in parts)
    if density <= 0:
        raise ValueError(f"volume fractions of {name!r} give density={density!r}; allowed is a mixture with mass")
    fractions: dict[str, float] = {}
    for m, v in parts:
        for el, w in m.mass_fractions().items():
            fractions[el] = fractions.get(el, 0.0) + v * m.density * w / density
    return Material(name, fractions, density)


def _by_mass(name: str, parts: Sequence[tuple[str, float]], density: float) -> Material:
    """Material from ``(formula, mass)`` pairs (any mass unit) and a measured density (g/cm³)."""
    total = math.fsum(m for _, m in parts)
    fractions: dict[str, float] = {}
    for formula, m in parts:
        for el, w in _formula_fractions(formula).items():
            fractions[el] = fractions.get(el, 0.0) + w * m / total
    return Material(name, fractions, density)


def _molar_mass(formula: str) -> float:
    """Molar mass in g/mol."""
    return math.fsum(float(n) * xraydb.atomic_mass(el) for el, n in xraydb.chemparse(formula).items())


# ---------------------------------------------------------------------------------------------------------------
# Building blocks (not all are library entries). Densities in g/cm³.
# ---------------------------------------------------------------------------------------------------------------

# Liquid electrolyte "LP30"-type: 1 M LiPF6 in EC:DMC 1:1 by volume (e.g. Sigma-Aldrich 746711), ρ ≈ 1.30 g/cm³
# (vendor value at 25 °C). Per cm³ of solution: 1 mmol LiPF6 (0.152 g); the rest of the mass is solvent, split by
# equal volumes of EC (1.32 g/cm³) and DMC (1.07 g/cm³), i.e. mass ratio 1.32 : 1.07 (volume change on mixing
# neglected).
_RHO_ELECTROLYTE, _RHO_EC, _RHO_DMC = 1.30, 1.32, 1.07
_M_LIPF6 = 1.0e-3 * _molar_mass("LiPF6")  # g of salt per cm³ at 1 mol/L
_M_SOLVENT = _RHO_ELECTROLYTE - _M_LIPF6
_ELECTROLYTE = _by_mass(
    "electrolyte",
    [
        ("LiPF6", _M_LIPF6),
        ("C3H4O3", _M_SOLVENT * _RHO_EC / (_RHO_EC + _RHO_DMC)),  # ethylene carbonate
        ("C3H6O3", _M_SOLVENT * _RHO_DMC / (_RHO_EC + _RHO_DMC)),  # dimethyl carbonate
    ],
    _RHO_ELECTROLYTE,
)

_GRAPHITE = Material("graphite", "C", 2.26)  # crystalline graphite particles (theoretical 2.26)
_CARBON_BLACK = Material("carbon_black", "C", 1.80)  # conductive carbon (Super P type), skeletal 1.8-2.1
_PVDF = Material("pvdf", "C2H2F2", 1.78)  # poly(vinylidene fluoride) binder
# SBR binder of aqueous anodes, ~25 wt% styrene: (C8H8)0.15(C4H6)0.85 per mole of repeat units; CMC neglected.
_SBR = Material("sbr", "(C8H8)0.15(C4H6)0.85", 0.94)
_PE = Material("polyethylene", "C2H4", 0.94)  # NIST polyethylene 0.94
_NYLON6 = Material("nylon6", "C6H11NO", 1.14)  # polyamide 6
_PP = Material("polypropylene", "C3H6", 0.90)  # cast polypropylene sealant layer
_AL = Material("aluminium", "Al", 2.699)  # NIST
_NMC811 = Material("nmc811", "LiNi0.8Mn0.1Co0.1O2", 4.78)  # crystal (XRD) density
_LI6PS5CL = Material("li6ps5cl", "Li6PS5Cl", 1.86)  # argyrodite, theoretical (a = 9.85 Å, Z = 4)

# Pouch-cell laminate, outer to inner (typical DNP D-EL40H-type stack; adhesive layers, ~3-5 µm, neglected).
POUCH_LAYERS_UM: tuple[tuple[str, float], ...] = (("nylon6", 25.0), ("aluminium", 40.0), ("polypropylene", 40.0))
"""Layer thicknesses (µm) assumed for ``pouch_laminate``; its volume fractions are the thickness fractions."""
_POUCH_TOTAL_UM = math.fsum(t for _, t in POUCH_LAYERS_UM)
_POUCH_MATS = {"nylon6": _NYLON6, "aluminium": _AL, "polypropylene": _PP}

# Electrode coatings, volume fractions (calendered, electrolyte-filled pores).
GRAPHITE_ANODE_VOLUME_FRACTIONS: tuple[tuple[str, float], ...] = (
    ("graphite", 0.640),
    ("carbon_black", 0.015),
    ("sbr", 0.045),
    ("electrolyte", 0.300),
)
"""``graphite_anode``: 30 % porosity; solids ≈ 95.4 / 1.8 / 2.8 wt% graphite / carbon / binder."""
NMC811_CATHODE_VOLUME_FRACTIONS: tuple[tuple[str, float], ...] = (
    ("nmc811", 0.62),
    ("carbon_black", 0.04),
    ("pvdf", 0.04),
    ("electrolyte", 0.30),
)
"""``nmc811_cathode``: 30 % porosity; solids ≈ 95.4 / 2.3 / 2.3 wt% NMC811 / carbon / PVDF."""
SEPARATOR_VOLUME_FRACTIONS: tuple[tuple[str, float], ...] = (("polyethylene", 0.60), ("electrolyte", 0.40))
"""``separator``: PE membrane, 40 % porosity, pores filled with electrolyte."""

_BLOCKS = {
    "graphite": _GRAPHITE,
    "carbon_black": _CARBON_BLACK,
    "pvdf": _PVDF,
    "sbr": _SBR,
    "polyethylene": _PE,
    "electrolyte": _ELECTROLYTE,
    "nmc811": _NMC811,
}


def _composite(name: str, fractions: Sequence[tuple[str, float]]) -> Material:
    return mix(name, [(_BLOCKS[n], v) for n, v in fractions])


_LIBRARY: tuple[Material, ...] = (
    # Dry air near sea level, NIST composition (C 0.000124, N 0.755268, O 0.231781, Ar 0.012827), 0.001205.
    Material("air", {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}, 0.001205),
    # LEGO bricks (ABS), by mass C 0.867 / H 0.080 / N 0.053, 1.05 g/cm³ (typical ABS 1.04-1.06).
    Material("abs", {"C": 0.867, "H": 0.080, "N": 0.053}, 1.05),
    _AL,  # NIST 2.699
    Material("copper", "Cu", 8.96),  # handbook (CRC)
    Material("water", "H2O", 1.0),  # NIST liquid water
    Material("lithium", "Li", 0.534),  # handbook (CRC)
    Material("gold", "Au", 19.32),  # handbook (CRC)
    Material("tungsten", "W", 19.3),  # handbook (CRC) 19.25-19.3
    Material("silicon", "Si", 2.329),  # handbook (CRC)
    Material("silicon_nitride", "Si3N4", 3.17),  # dense Si3N4 ceramic (xraydb / handbook)
    Material("polyimide", "C22H10N2O5", 1.42),  # Kapton, NIST
    # Stainless steel 316, nominal mid-spec: Cr 17, Ni 12, Mo 2.5, Mn 2 wt%, Fe balance (Si, C, P, S neglected).
    Material("steel_316", {"Fe": 0.665, "Cr": 0.17, "Ni": 0.12, "Mo": 0.025, "Mn": 0.02}, 8.0),
    _NMC811,
    _LI6PS5CL,
    # Cold-pressed solid-electrolyte pellet: 85 % of theoretical density, pores empty (gas mass neglected).
    mix("li6ps5cl_pellet", [(_LI6PS5CL, 0.85)]),
    _ELECTROLYTE,
    _composite("graphite_anode", GRAPHITE_ANODE_VOLUME_FRACTIONS),
    _composite("nmc811_cathode", NMC811_CATHODE_VOLUME_FRACTIONS),
    _composite("separator", SEPARATOR_VOLUME_FRACTIONS),
    # Homogenised nylon/Al/PP laminate: valid for rays crossing the whole stack (laminate thinner than a voxel).
    mix("pouch_laminate", [(_POUCH_MATS[n], t / _POUCH_TOTAL_UM) for n, t in POUCH_LAYERS_UM]),
)

_REGISTRY: dict[str, Material] = {m.name.lower(): m for m in _LIBRARY}

MATERIALS: Mapping[str, Material] = types.MappingProxyType(_REGISTRY)
"""The material library, lower-case snake_case name → :class:`Material` (read-only view of the registry).

Composites are derived in code from stated volume fractions (:func:`mix`); derived densities are about:
``electrolyte`` 1.30, ``separator`` 1.08, ``graphite_anode`` 1.91 (dry coating 1.52),
``nmc811_cathode`` 3.50 (dry coating 3.11), ``pouch_laminate`` 1.64 (105 µm nylon/Al/PP),
``li6ps5cl_pellet`` 1.581 g/cm³. Add materials with :func:`register_material`.
"""


def material_names() -> list[str]:
    """Sorted names of all registered materials."""
    return sorted(_REGISTRY)


def get_material(name: str) -> Material:
    """The registered material called ``name`` (case-insensitive); unknown names raise ``ValueError``."""
    key = name.lower() if isinstance(name, str) else name
    try:
        return _REGISTRY[key]
    except (KeyError, TypeError):
        raise ValueError(f"unknown material {name!r}: known materials are {', '.join(material_names())}") from None


def register_material(material: Material, overwrite: bool = False) -> Material:
    """Add ``material`` to the registry under ``material.name.lower()``; returns it.

    An existing name raises ``ValueError`` unless ``overwrite=True``.
    """
    if not isinstance(material, Material):
        raise ValueError(f"material={material!r} is invalid; allowed is a lamino.materials.Material")
    key = material.name.lower()
    if key in _REGISTRY and not overwrite:
        raise ValueError(
            f"material name={material.name!r} is already registered; allowed is a new name, or overwrite=True"
        )
    _REGISTRY[key] = material
    return material

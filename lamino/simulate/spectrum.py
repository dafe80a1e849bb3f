"""X-ray spectra as energy bins: tube spectra from spekpy, monochromatic beams and spectra read from files.

A :class:`Spectrum` is a set of energy bins, each with its photon-weighted mean energy (keV) and its photon
fluence per unit exposure (photons/mm² per mAs at 1 m for tubes, per second for beam lines, or relative).
The simulator contracts over the bins: I = Σ_E N₀(E)·η(E)·w(E)·exp(−Σ_m μ_m(E)·L_m).

Tube spectra come from `spekpy <https://bitbucket.org/spekpy/spekpy_release>`_ (G. Poludniowski et al.,
Med. Phys. 48, 3630 (2021)), whose ``get_spectrum()`` returns the differential fluence in photons/cm²/mAs/keV
at 1 m on bin centres ``dk`` keV apart; lamino converts it to photons/mm²/mAs per bin (× dk / 100).
Filtration named in :meth:`Spectrum.tube` uses spekpy's materials and attenuation data (as measured tube
spectra are specified); :meth:`Spectrum.filtered` uses :mod:`lamino.materials` (xraydb), the same data as the
sample, so a filter and a sample of the same material attenuate identically.
"""

from __future__ import annotations

import functools
import io
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lamino.io import atomic_write
from lamino.materials import get_material

__all__ = ["SPEKPY_KVP_RANGE", "Spectrum"]

SPEKPY_KVP_RANGE: dict[str, tuple[float, float]] = {
    "W": (10.0, 500.0),
    "Mo": (10.0, 50.0),
    "Rh": (10.0, 50.0),
    "Cr": (10.0, 50.0),
    "Cu": (10.0, 50.0),
    "Ag": (10.0, 50.0),
    "Au": (10.0, 50.0),
}
"""Anode targets and tube voltages (kV, inclusive) that spekpy 2.x accepts with its default ("casim") model."""

SPEKPY_DK_KEV = 0.5
"""Width (keV) of spekpy's native energy bins before rebinning."""

E_MIN_KEV = 1.0
"""Lowest energy (keV) a spectrum is rebinned to by default (lamino's attenuation data start at 1 keV)."""

PEAK_FRACTION = 1e-4
"""Default lower bin edge: the lowest energy whose fluence exceeds this fraction of the peak (at least 1 keV)."""


def _finite(name: str, value: Any, allowed: str) -> float:
    """``value`` as a finite float, else a ValueError naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(value, bool) or not math.isfinite(x):
        raise ValueError(f"{name}={value!r} is not allowed: give {allowed}")
    return x


def _bins(name: str, n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(f"{name}={n_bins!r} is not allowed: give an integer ≥ 1")
    return int(n_bins)


def _readonly(a: ArrayLike) -> NDArray[np.float64]:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=64)
def _spekpy_spectrum(kvp: float, target: str, anode_angle_deg: float,
                     filters: tuple[tuple[str, float], ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """spekpy bin centres (keV) and photons/mm²/mAs per bin at 1 m (read-only arrays). Cached."""
    import spekpy

    spek = spekpy.Spek(kvp=kvp, th=anode_angle_deg, targ=target, dk=SPEKPY_DK_KEV)
    for material, thickness_mm in filters:
        try:
            spek.filter(material, thickness_mm)
        except Exception:  # spekpy raises bare Exception for unknown materials
            raise ValueError(
                f"filters material {material!r} is not allowed: give a spekpy material name such as 'Al', 'Cu', 'Be'"
            ) from None
    k, fluence_per_cm2_kev = spek.get_spectrum()
    return _readonly(k), _readonly(np.asarray(fluence_per_cm2_kev) * SPEKPY_DK_KEV / 100.0)  # /cm² → /mm²


def _check_filters(filters: Any) -> tuple[tuple[str, float], ...]:
    """Filters as a hashable tuple of (material, thickness mm ≥ 0)."""
    try:
        pairs = [(m, t) for m, t in filters]
    except (TypeError, ValueError):
        raise ValueError(f"filters={filters!r} is not allowed: give (material, thickness_mm) pairs") from None
    out = []
    for material, t in pairs:
        if not isinstance(material, str) or not material:
            raise ValueError(f"filters material={material!r} is not allowed: give a material name such as 'Al'")
        t = _finite(f"filters thickness of {material!r}", t, "a thickness ≥ 0 mm")
        if t < 0:
            raise ValueError(f"filters thickness of {material!r}={t!r} is not allowed: give a thickness ≥ 0 mm")
        out.append((material, t))
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Spectrum:
    """Energy bins of an X-ray beam.

    ``energies_kev`` (n_bins,): photon-weighted mean energy of each bin (keV), strictly ascending, > 0.
    ``fluence`` (n_bins,): photons per mm² per unit exposure in each bin (≥ 0, not all 0); ``unit`` names the
    exposure ("photons/mm²/mAs at 1 m" for tubes, "photons/mm²/s" for beam lines, "relative" for files).
    The arrays are stored as read-only float64 copies.
    """

    energies_kev: NDArray[np.float64]
    fluence: NDArray[np.float64]
    unit: str = "photons/mm²/mAs at 1 m"
    description: str = ""

    def __post_init__(self) -> None:
        e = np.asarray(self.energies_kev, dtype=np.float64)
        f = np.asarray(self.fluence, dtype=np.float64)
        if e.ndim != 1 or e.size == 0:
            raise ValueError(f"energies_kev has shape {e.shape}: give a non-empty 1-D array of energies in keV")
        if not np.all(np.isfinite(e)) or np.any(e <= 0) or np.any(np.diff(e) <= 0):
            raise ValueError(
                f"energies_kev={e.tolist()!r} is not allowed: give finite energies > 0 keV, strictly ascending"
            )
        if f.shape != e.shape:
            raise ValueError(f"fluence has shape {f.shape}: give one value per energy, shape {e.shape}")
        if not np.all(np.isfinite(f)) or np.any(f < 0) or not np.any(f > 0):
            raise ValueError(f"fluence={f.tolist()!r} is not allowed: give finite values ≥ 0, not all 0")
        if not isinstance(self.unit, str) or not isinstance(self.description, str):
            raise ValueError(f"unit={self.unit!r}, description={self.description!r}: give strings")
        object.__setattr__(self, "energies_kev", _readonly(e))
        object.__setattr__(self, "fluence", _readonly(f))

    # ------------------------------------------------------------------ constructors

    @classmethod
    def tube(cls, kvp: float, target: str = "W", anode_angle_deg: float = 12.0,
             filters: tuple[tuple[str, float], ...] = (("Be", 0.25),), n_bins: int = 32,
             e_min_kev: float | None = None) -> Spectrum:
        """X-ray tube spectrum from spekpy, photons/mm²/mAs at 1 m, rebinned to ``n_bins`` up to ``kvp``.

        ``filters`` are (spekpy material name, thickness mm) pairs: tube window and added filtration. The spekpy
        computation is cached. Bins are as in :meth:`rebin` with ``e_max_kev = kvp``.
        """
        if not isinstance(target, str) or target not in SPEKPY_KVP_RANGE:
            raise ValueError(f"target={target!r} is not allowed: give one of {', '.join(SPEKPY_KVP_RANGE)}")
        lo, hi = SPEKPY_KVP_RANGE[target]
        kvp = _finite("kvp", kvp, f"a tube voltage in kV within [{lo:g}, {hi:g}] for target {target!r}")
        if not lo <= kvp <= hi:
            raise ValueError(f"kvp={kvp!r} is not allowed: give a tube voltage in kV within [{lo:g}, {hi:g}] "
                             f"for target {target!r} (spekpy's range)")
        angle = _finite("anode_angle_deg", anode_angle_deg, "an angle in degrees within (0, 90)")
        if not 0 < angle < 90:
            raise ValueError(f"anode_angle_deg={anode_angle_deg!r} is not allowed: give an angle in (0, 90) degrees")
        filters = _check_filters(filters)
        n_bins = _bins("n_bins", n_bins)
        k, fluence = _spekpy_spectrum(kvp, target, angle, filters)
        fine = cls(k, fluence, "photons/mm²/mAs at 1 m",
                   f"{target} tube {kvp:g} kV, anode {angle:g}°, filters "
                   + (", ".join(f"{m} {t:g} mm" for m, t in filters) or "none") + " (spekpy)")
        return fine.rebin(n_bins, e_min_kev=e_min_kev, e_max_kev=kvp)

    @classmethod
    def monochromatic(cls, energy_kev: float, fluence: float = 1.0, unit: str = "photons/mm²/s") -> Spectrum:
        """A single energy (keV) with the given fluence (photons/mm² per unit exposure)."""
        e = _finite("energy_kev", energy_kev, "an energy > 0 keV")
        f = _finite("fluence", fluence, "a fluence > 0")
        if e <= 0:
            raise ValueError(f"energy_kev={energy_kev!r} is not allowed: give an energy > 0 keV")
        if f <= 0:
            raise ValueError(f"fluence={fluence!r} is not allowed: give a fluence > 0")
        return cls(np.array([e]), np.array([f]), unit, f"monochromatic {e:g} keV")

    @classmethod
    def from_file(cls, path: str, n_bins: int | None = None) -> Spectrum:
        """Spectrum from a text file of two columns, energy (keV) and fluence (relative), comma or space separated.

        Lines starting with ``#`` are comments; rows are sorted by energy. ``n_bins`` rebins (see :meth:`rebin`).
        """
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read().replace(",", " ")
            with warnings.catch_warnings(action="ignore"):  # an empty file is reported below
                data = np.loadtxt(io.StringIO(text), ndmin=2, comments="#")
        except OSError as err:
            raise ValueError(f"path={path!r} cannot be read ({err.strerror}): give a readable text file") from None
        except ValueError:
            raise ValueError(f"path={path!r} is not allowed: give numeric columns energy (keV), fluence") from None
        if data.shape[0] == 0:
            raise ValueError(f"path={path!r} has no data rows: give two columns, energy (keV) and fluence")
        if data.shape[1] != 2:
            raise ValueError(f"path={path!r} has {data.shape[1]} columns: give exactly two, energy (keV) and fluence")
        data = data[np.argsort(data[:, 0], kind="stable")]
        spectrum = cls(data[:, 0], data[:, 1], "relative", f"file {os.path.basename(path)}")
        return spectrum if n_bins is None else spectrum.rebin(n_bins)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spectrum:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(np.asarray(d["energies_kev"], float), np.asarray(d["fluence"], float),
                       d.get("unit", "relative"), d.get("description", ""))
        except (KeyError, TypeError):
            raise ValueError("d is not allowed: give a dict with 'energies_kev' and 'fluence' lists") from None

    # ------------------------------------------------------------------ derived spectra

    def rebin(self, n_bins: int, e_min_kev: float | None = None, e_max_kev: float | None = None) -> Spectrum:
        """The photons regrouped into ``n_bins`` equal-width bins between ``e_min_kev`` and ``e_max_kev``.

        Each bin's energy is the photon-weighted mean energy of the photons in it, so the total and the mean
        energy of the photons inside [e_min, e_max] are conserved; photons outside are discarded and empty bins
        are dropped (so the result may have fewer bins). Defaults: ``e_max_kev`` = the highest energy,
        ``e_min_kev`` = the lowest energy whose fluence exceeds 1e-4 of the peak, at least 1 keV.
        """
        n_bins = _bins("n_bins", n_bins)
        e, f = self.energies_kev, self.fluence
        if e_min_kev is None:
            e_min = max(E_MIN_KEV, float(e[np.argmax(f > PEAK_FRACTION * f.max())]))
        else:
            e_min = _finite("e_min_kev", e_min_kev, "an energy > 0 keV")
        e_max = float(e[-1]) if e_max_kev is None else _finite("e_max_kev", e_max_kev, "an energy > 0 keV")
        if not 0 < e_min < e_max:
            raise ValueError(f"e_min_kev={e_min!r}, e_max_kev={e_max!r} are not allowed: give 0 < e_min < e_max")
        edges = np.linspace(e_min, e_max, n_bins + 1)
        idx = np.searchsorted(edges, e, side="right") - 1
        idx[e == e_max] = n_bins - 1  # the last bin includes its upper edge
        inside = (idx >= 0) & (idx < n_bins)
        counts = np.bincount(idx[inside], weights=f[inside], minlength=n_bins)
        if not np.any(counts > 0):
            raise ValueError(f"e_min_kev={e_min!r}, e_max_kev={e_max!r} contain no photons of this spectrum "
                             f"({e[0]:g}–{e[-1]:g} keV)")
        energy = np.bincount(idx[inside], weights=(f * e)[inside], minlength=n_bins)
        keep = counts > 0
        return Spectrum(energy[keep] / counts[keep], counts[keep], self.unit, self.description)

    def filtered(self, material: str, thickness_mm: float) -> Spectrum:
        """The spectrum after ``thickness_mm`` (mm) of a :mod:`lamino.materials` material: × exp(−μ(E)·t)."""
        t = _finite("thickness_mm", thickness_mm, "a thickness ≥ 0 mm")
        if t < 0:
            raise ValueError(f"thickness_mm={thickness_mm!r} is not allowed: give a thickness ≥ 0 mm")
        fluence = self.fluence * np.exp(-get_material(material).mu(self.energies_kev) * t)
        if not np.any(fluence > 0):
            raise ValueError(f"thickness_mm={t!r} of {material!r} absorbs the whole spectrum: give a thinner filter")
        return Spectrum(self.energies_kev, fluence, self.unit, f"{self.description} + {material} {t:g} mm".strip())

    # ------------------------------------------------------------------ summaries

    @property
    def n_bins(self) -> int:
        """Number of energy bins."""
        return int(self.energies_kev.size)

    @property
    def total(self) -> float:
        """Total fluence, photons/mm² per unit exposure (``unit``)."""
        return float(self.fluence.sum())

    @property
    def mean_energy_kev(self) -> float:
        """Fluence-weighted mean energy (keV)."""
        return float(np.dot(self.weights(), self.energies_kev))

    def weights(self) -> NDArray[np.float64]:
        """Fraction of the photons in each bin (sums to 1)."""
        return self.fluence / self.fluence.sum()

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (lists of floats and strings)."""
        return {"energies_kev": self.energies_kev.tolist(), "fluence": self.fluence.tolist(),
                "unit": self.unit, "description": self.description}

    def to_file(self, path: str) -> str:
        """Write the two columns energy (keV), fluence as text (atomically, readable by :meth:`from_file`)."""
        with atomic_write(path, suffix=".txt") as tmp:
            np.savetxt(tmp, np.column_stack([self.energies_kev, self.fluence]), fmt="%.17g",
                       header=f"{self.description}\nenergy_keV fluence ({self.unit})", encoding="utf-8")
        return path

    def __repr__(self) -> str:
        return (f"Spectrum({self.description or 'custom'}: {self.n_bins} bins, "
                f"{self.energies_kev[0]:.3g}–{self.energies_kev[-1]:.3g} keV, mean {self.mean_energy_kev:.4g} keV, "
                f"total {self.total:.4g} {self.unit})")

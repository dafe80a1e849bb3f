"""Scanner digital twins: an X-ray source, a detector and a typical geometry, with presets of real instruments.

A :class:`Scanner` turns a spectrum and a geometry into photons per detector pixel per projection
(:meth:`Scanner.photons_per_pixel`); :func:`lamino.simulate.simulate` feeds them through the detector chain.
Units (``design.md``): mm, keV, seconds; tube current in µA, tube voltage in kV, focal spot in µm,
beam-line flux in photons/mm²/s at the sample.

Two kinds of source:

* **tubes** (``beam="cone"``): a spekpy spectrum of ``kvp``, ``target``, ``anode_angle_deg`` and ``filters``
  in photons/mm²/mAs at 1 m. A pixel on the central ray (the perpendicular from the source to the detector,
  at distance SDD) receives ``fluence × current·exposure (mAs) × pixel area × (1000 mm / SDD)²`` photons;
  a pixel seen at angle γ off the central ray receives that × cos³γ (inverse square × obliquity).
* **beam lines** (``beam="parallel"``): a monochromatic beam of ``energy_kev`` (or a pink beam read from
  ``spectrum_file``) of ``flux``; a pixel receives ``flux × exposure × pixel area × weight(E)``, with no
  falloff. Pixels of a parallel geometry are effective pixels (at the sample).

Presets (:meth:`Scanner.presets`) are built from published scans and data sheets; each preset's ``sources``
says where every number comes from and calls an estimate a "typical value". Detector gains (``adu_per_kev``)
are set so that the preset's own open-beam flat reads about 60 % of the detector's full scale, the operating
point at which such scans are usually taken.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lamino._checks import count, non_negative, number, pair, positive
from lamino.geometry import Geometry
from lamino.simulate.detector import Detector
from lamino.simulate.spectrum import Spectrum

__all__ = ["BEAMS", "PUBLISHED_SCANS", "Scanner"]

BEAMS = ("cone", "parallel")
TUBE_UNIT = "photons/mm²/mAs at 1 m"
BEAM_UNIT = "photons/mm²/s"
DETECTOR_ALIASES = {"det_shape": "shape", "det_spacing": "spacing"}
"""Override names routed to the detector under another name (as :class:`~lamino.geometry.Geometry` calls them)."""


@dataclasses.dataclass(frozen=True)
class Scanner:
    """An instrument: source (tube or beam line), detector, typical geometry and acquisition settings.

    Tubes (``beam="cone"``) need ``kvp`` (kV, within ``kvp_range`` when given), ``current_ua`` (µA), ``sod`` and
    ``sdd`` (mm); ``energy_kev`` makes them an idealised monochromatic source with the tube's photon output.
    Beam lines (``beam="parallel"``) need ``flux`` (photons/mm²/s at the sample) and ``energy_kev`` (keV) or a
    ``spectrum_file`` (pink beam, two columns keV, relative fluence). ``exposure_s`` is per projection,
    ``readout_s`` the dead time per view, ``n_flats`` / ``n_darks`` the frames averaged into one flat / dark,
    ``focal_spot_um`` the source size (µm, FWHM). ``sources`` cites where the numbers come from.
    """

    name: str
    beam: str
    detector: Detector
    kvp: float | None = None
    target: str = "W"
    anode_angle_deg: float = 12.0
    filters: tuple[tuple[str, float], ...] = ()
    energy_kev: float | None = None
    spectrum_file: str | None = None
    current_ua: float = 100.0
    exposure_s: float = 1.0
    flux: float | None = None
    focal_spot_um: float = 0.0
    sod: float | None = None
    sdd: float | None = None
    n_flats: int = 20
    n_darks: int = 20
    readout_s: float = 0.0
    sources: tuple[str, ...] = ()
    kvp_range: tuple[float, float] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name={self.name!r} is not allowed: give a non-empty string")
        if self.beam not in BEAMS:
            raise ValueError(f"beam={self.beam!r} is not allowed: give one of {', '.join(BEAMS)}")
        if not isinstance(self.detector, Detector):
            raise ValueError(f"detector={type(self.detector).__name__} is not allowed: give a lamino Detector")
        put("filters", _filters(self.filters))
        put("sources", _strings("sources", self.sources))
        if not isinstance(self.description, str):
            raise ValueError(f"description={self.description!r} is not allowed: give a string")
        if not isinstance(self.target, str) or not self.target:
            raise ValueError(f"target={self.target!r} is not allowed: give an anode element such as 'W'")
        put("anode_angle_deg", number("anode_angle_deg", self.anode_angle_deg, lambda x: 0 < x < 90,
                                       "an angle in (0, 90) degrees"))
        put("exposure_s", positive("exposure_s", self.exposure_s, " s (exposure per projection)"))
        put("current_ua", positive("current_ua", self.current_ua, " µA"))
        put("focal_spot_um", non_negative("focal_spot_um", self.focal_spot_um, " µm"))
        put("readout_s", non_negative("readout_s", self.readout_s, " s"))
        put("n_flats", count("n_flats", self.n_flats))
        put("n_darks", count("n_darks", self.n_darks))
        if self.energy_kev is not None:
            put("energy_kev", positive("energy_kev", self.energy_kev, " keV"))
        if self.spectrum_file is not None and (not isinstance(self.spectrum_file, str) or not self.spectrum_file):
            raise ValueError(f"spectrum_file={self.spectrum_file!r} is not allowed: give a file path or None")
        if self.kvp_range is not None:
            lo, hi = pair("kvp_range", self.kvp_range)
            lo, hi = positive("kvp_range low", lo, " kV"), positive("kvp_range high", hi, " kV")
            if lo >= hi:
                raise ValueError(f"kvp_range={self.kvp_range!r} is not allowed: give (low, high) kV with low < high")
            put("kvp_range", (lo, hi))
        if self.beam == "cone":
            self._check_tube(put)
        else:
            self._check_beam_line(put)

    def _check_tube(self, put: Any) -> None:
        allowed = "a tube voltage in kV" + (f" within [{self.kvp_range[0]:g}, {self.kvp_range[1]:g}] "
                                            f"(the {self.name} tube)" if self.kvp_range else " > 0")
        lo, hi = self.kvp_range or (0.0, math.inf)
        put("kvp", number("kvp", self.kvp, lambda x: lo <= x <= hi and 0 < x < math.inf, allowed))
        if self.energy_kev is not None and self.energy_kev > self.kvp:
            raise ValueError(f"energy_kev={self.energy_kev!r} is not allowed: a tube at kvp={self.kvp:g} emits no "
                             f"photons above {self.kvp:g} keV; give energy_kev ≤ kvp or raise kvp too")
        if self.flux is not None:
            raise ValueError(f"flux={self.flux!r} is not allowed for a tube (beam='cone'): set current_ua and "
                             "exposure_s instead, or use a beam line (beam='parallel')")
        put("sod", positive("sod", self.sod, " mm (source–object distance)"))
        put("sdd", positive("sdd", self.sdd, " mm (source–detector distance)"))
        if self.sdd <= self.sod:
            raise ValueError(f"sdd={self.sdd!r} is not allowed: the detector must lie beyond the object, "
                             f"sdd > sod={self.sod!r}")

    def _check_beam_line(self, put: Any) -> None:
        for name in ("kvp", "sod", "sdd"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed for a beam line (beam='parallel'): "
                                 "it applies to tubes only; leave it None")
        put("flux", positive("flux", self.flux, " photons/mm²/s at the sample"))
        if self.energy_kev is None and self.spectrum_file is None:
            raise ValueError("energy_kev=None is not allowed for a beam line without a spectrum_file: give the "
                             "beam energy in keV or a pink-beam spectrum_file")

    # ------------------------------------------------------------------ presets

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the instrument presets."""
        return list(_PRESETS)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Scanner:
        """The preset ``name`` with ``overrides``: any Scanner or Detector field, ``det_shape``, ``det_spacing``.

        ``energy_kev=`` makes a tube preset monochromatic; see :meth:`replace`.
        """
        if name not in _PRESETS:
            raise ValueError(f"name={name!r} is not a scanner preset: choose one of {', '.join(_PRESETS)}")
        return _PRESETS[name].replace(**overrides)

    def replace(self, **changes: Any) -> Scanner:
        """A copy with fields changed (validated again).

        ``changes`` may name Scanner fields, Detector fields (routed to ``detector``) and ``det_shape`` /
        ``det_spacing`` (→ ``detector.shape`` / ``detector.spacing``; a spacing may be one number or (dv, du) mm).
        """
        own_fields = [f.name for f in dataclasses.fields(Scanner)]
        det_fields = [f.name for f in dataclasses.fields(Detector)]
        own: dict[str, Any] = {}
        det: dict[str, Any] = {}
        for key, value in changes.items():
            if key in DETECTOR_ALIASES:
                det[DETECTOR_ALIASES[key]] = value
            elif key in own_fields:
                own[key] = value
            elif key in det_fields:
                det[key] = value
            else:
                allowed = sorted({*own_fields, *det_fields, *DETECTOR_ALIASES})
                raise ValueError(f"{key}={value!r} is not an allowed override: give one of {', '.join(allowed)}")
        detector = own.pop("detector", self.detector)
        if det:
            if not isinstance(detector, Detector):
                raise ValueError(f"detector={type(detector).__name__} is not allowed: give a lamino Detector")
            detector = detector.replace(**det)
        return dataclasses.replace(self, detector=detector, **own)

    # ------------------------------------------------------------------ physics

    def spectrum(self, n_bins: int = 32) -> Spectrum:
        """The source spectrum: tubes in photons/mm²/mAs at 1 m, beam lines in photons/mm²/s.

        Monochromatic if ``energy_kev`` is set (a tube keeps its photon output at ``kvp``), read from
        ``spectrum_file`` (its shape, scaled to the tube's output or to ``flux``), else the spekpy tube spectrum.
        """
        if self.energy_kev is None and self.spectrum_file is None:
            return self._tube_spectrum(n_bins)
        if self.energy_kev is not None:
            shape = Spectrum.monochromatic(self.energy_kev)
        else:
            shape = Spectrum.from_file(self.spectrum_file, n_bins)
        if self.beam == "cone":
            total, unit = self._tube_spectrum(n_bins).total, TUBE_UNIT
            what = f", photon output of the {self.kvp:g} kV tube"
        else:
            total, unit, what = float(self.flux), BEAM_UNIT, f", flux {self.flux:.3g} photons/mm²/s"
        return Spectrum(shape.energies_kev, shape.weights() * total, unit, shape.description + what)

    def _tube_spectrum(self, n_bins: int) -> Spectrum:
        return Spectrum.tube(self.kvp, self.target, self.anode_angle_deg, self.filters, n_bins)

    def photons_per_pixel(self, spectrum: Spectrum,
                          geometry: Geometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Photons per pixel per projection on the central ray (n_bins,) and the falloff map (rows, cols).

        Counted before the detector's cover, after tube filtration. Tubes: ``spectrum.fluence`` (photons/mm²/mAs
        at 1 m) × current·exposure (mAs) × pixel area (mm², ``geometry.det_spacing``) × (1000 mm / D)², D the
        source–detector-plane distance (= SDD), and falloff cos³γ, γ each pixel centre's angle off the central
        ray (so it includes ``det_offset`` and ``det_roll_deg``). Beam lines: flux × exposure × pixel area ×
        ``spectrum.weights()``, falloff all ones.
        """
        if not isinstance(geometry, Geometry) or not geometry.is_concrete:
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a concrete lamino Geometry")
        kind = "tube" if self.beam == "cone" else "beam line"
        if geometry.beam != self.beam:
            raise ValueError(f"geometry.beam={geometry.beam!r} is not allowed with the {kind} {self.name!r}: give a "
                             f"{self.beam}-beam geometry (e.g. scanner.geometry(tilt_deg, n_views))")
        dv, du = geometry.det_spacing
        area = dv * du
        if self.beam == "parallel":
            counts = self.flux * self.exposure_s * area * spectrum.weights()
            return counts.astype(np.float64), np.ones(geometry.det_shape, dtype=np.float64)
        if spectrum.unit != TUBE_UNIT:
            raise ValueError(f"spectrum.unit={spectrum.unit!r} is not allowed for a tube: give a spectrum in "
                             f"{TUBE_UNIT} (scanner.spectrum())")
        cos_gamma, distance = _obliquity(geometry)
        mas = self.current_ua * 1e-3 * self.exposure_s
        counts = spectrum.fluence * mas * area * (1000.0 / distance) ** 2
        return np.asarray(counts, dtype=np.float64), cos_gamma**3

    def geometry(self, tilt_deg: float, n_views: int, **kw: Any) -> Geometry:
        """This scanner's typical geometry with its detector; ``kw`` go to Geometry.cone / .parallel (and win)."""
        args: dict[str, Any] = dict(det_shape=self.detector.shape, det_spacing=self.detector.spacing)
        if self.beam == "cone":
            args.update(sod=self.sod, sdd=self.sdd)
        args.update(kw)
        build = Geometry.cone if self.beam == "cone" else Geometry.parallel
        return build(tilt_deg=tilt_deg, n_views=n_views, **args)

    def scan_time_s(self, n_views: int) -> float:
        """Acquisition time of ``n_views`` projections (s): n_views × (exposure_s + readout_s)."""
        return count("n_views", n_views) * (self.exposure_s + self.readout_s)

    # ------------------------------------------------------------------ interchange

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, the detector nested; :meth:`from_dict` rebuilds an equal scanner."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "detector":
                value = value.to_dict()
            elif f.name == "filters":
                value = [[m, t] for m, t in value]
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scanner:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"d has unknown key(s) {', '.join(unknown)}: allowed are {', '.join(names)}")
        d = dict(d)
        if "detector" not in d:
            raise ValueError("d is not allowed without 'detector': give Scanner.to_dict() output")
        d["detector"] = Detector.from_dict(d["detector"])
        return cls(**d)


def _filters(filters: Any) -> tuple[tuple[str, float], ...]:
    """Filters as a tuple of (spekpy material, thickness mm ≥ 0)."""
    try:
        pairs = [pair("filters", p) for p in filters]
    except TypeError:
        raise ValueError(f"filters={filters!r} is not allowed: give (material, thickness_mm) pairs") from None
    out = []
    for material, t in pairs:
        if not isinstance(material, str) or not material:
            raise ValueError(f"filters material={material!r} is not allowed: give a spekpy material such as 'Al'")
        out.append((material, non_negative(f"filters thickness of {material!r}", t, " mm")))
    return tuple(out)


def _strings(name: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name}={values!r} is not allowed: give a list of strings")
    return tuple(values)


def _obliquity(geometry: Geometry) -> tuple[NDArray[np.float64], float]:
    """cos γ of every pixel centre (rows, cols) off the central ray, and the source–detector-plane distance (mm).

    From the first view's cone vectors (distances and angles do not change as the sample turns).
    """
    vec = np.asarray(geometry.vectors(), dtype=np.float64)[0]
    src, centre, u, v = vec[0:3], vec[3:6], vec[6:9], vec[9:12]
    normal = np.cross(u, v)
    normal /= np.linalg.norm(normal)
    rows, cols = geometry.det_shape
    r = np.arange(rows) - (rows - 1) / 2
    c = np.arange(cols) - (cols - 1) / 2
    pixels = centre + c[None, :, None] * u + r[:, None, None] * v      # (rows, cols, 3)
    rays = pixels - src
    cos_gamma = np.abs(rays @ normal) / np.linalg.norm(rays, axis=-1)
    return cos_gamma, float(abs(np.dot(centre - src, normal)))


# ---------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------

_REVIEW = ("W. Du et al., review of X-ray computed laminography (background/laminography-review.txt), Table 2 "
           "'reported instruments and synchrotron facilities for X-ray laminography'")

_NIKON = Scanner(
    name="nikon_xt225",
    beam="cone",
    description="Nikon XT H 225 lab micro-CT with a tilted stage (LEGO CL scan of Fisher et al. 2019)",
    kvp=80.0,
    kvp_range=(20.0, 225.0),
    target="W",
    anode_angle_deg=12.0,
    filters=(("Be", 1.0), ("Air", 967.3)),
    current_ua=85.0,
    exposure_s=1.0,
    focal_spot_um=3.0,
    sod=295.0,
    sdd=967.3,
    n_flats=20,
    n_darks=20,
    readout_s=0.0,
    detector=Detector(
        shape=(1148, 1596), spacing=(0.254, 0.254), mode="integrating", scintillator="CsI", scintillator_um=600.0,
        psf="glare", psf_sigma_px=0.6, glare_fraction=0.05, glare_sigma_px=10.0,
        gain_sigma=0.03, gain_drift_sigma=0.002, dead_fraction=1e-4, hot_fraction=2e-5,
        adu_per_kev=0.059, read_noise_adu=3.0, offset_adu=1000.0, bit_depth=16),
    sources=(
        "kvp 80 kV, current 85 µA: LEGO CL scan, S.L. Fisher et al., Meas. Sci. Technol. 30, 035401 (2019), "
        "data zenodo.org/record/2540509 (flat/dark files 'Flat_80kV85uA', 'Dark_80kV85uA'), as read in CIL's "
        "laminography example",
        "sod 295 mm, sdd 967.3 mm, 30° tilt, 0.254 mm pixels: CIL's LEGO laminography example ('parameters are "
        "from the original paper/author clarification'); detector 1148 × 1596 pixels of 0.254 mm: design.md "
        "(the LEGO data); 0.254 mm also in " + _REVIEW,
        "SSB pouch CL scan on the same instrument: W target, 100 kV, 9 W (≈ 90 µA), 600 projections × 1 s, "
        "≈ 16 µm resolution: Du et al. review, 'CL Exploitation' (PUBLISHED_SCANS['ssb_pouch'])",
        "kvp range 20–225 kV, 225 W, W reflection target: Nikon XT H tube as listed by the UEF SIB Labs X-ray "
        "tomography facility page (uef.fi/en/sib-labs-x-ray-tomography); that installation has a 43 × 43 cm Varex "
        "panel of 2880 × 2880 pixels (override det_shape=(2880, 2880), det_spacing=0.15)",
        "exposure 1 s per projection: the SSB pouch scan (Du et al.); the LEGO exposure is not given in the "
        "sources at hand (typical value)",
        "focal spot 3 µm: typical value for a 225 kV microfocus reflection target below ~7 W (Nikon's quoted "
        "spot-size rule; not verified in the sources at hand)",
        "anode angle 12°: spekpy's default (typical value; the target angle is not given in the sources at hand)",
        "filters: Be window 1 mm (typical value for open microfocus tubes) and the air over the source–detector "
        "distance (967 mm, spekpy 'Air'; change it with sdd); no added filter in the published scans",
        "detector: a-Si flat panel with CsI:Tl; 0.254 mm = 2 × 0.127 mm suggests a 127 µm-pitch Varian PaxScan-"
        "class panel read 2 × 2 binned (our inference); CsI 600 µm, 16-bit, read noise 3 ADU, dark offset 1000 "
        "ADU, 3 % pixel gain spread, 0.2 % gain drift, glare 5 % at σ 10 px: typical values for such panels",
        "adu_per_kev 0.059: set so that the default open-beam flat reads ≈ 60 % of the 16-bit range",
    ),
)

_SIGRAY = Scanner(
    name="sigray_apex",
    beam="cone",
    description="Sigray Apex XCT-150 sub-µm lab CT/laminography (transmission-target microfocus source)",
    kvp=80.0,
    kvp_range=(20.0, 150.0),
    target="W",
    anode_angle_deg=12.0,
    filters=(("Be", 0.25), ("Air", 750.0)),
    current_ua=25.0,
    exposure_s=10.0,
    focal_spot_um=0.5,
    sod=5.0,
    sdd=750.0,
    n_flats=20,
    n_darks=20,
    readout_s=0.1,
    detector=Detector(
        shape=(1536, 1944), spacing=(0.0748, 0.0748), mode="integrating", scintillator="CsI", scintillator_um=200.0,
        psf="glare", psf_sigma_px=0.7, glare_fraction=0.03, glare_sigma_px=8.0,
        gain_sigma=0.02, gain_drift_sigma=0.002, dead_fraction=1e-4, hot_fraction=2e-5,
        adu_per_kev=0.041, read_noise_adu=2.0, offset_adu=300.0, bit_depth=14),
    sources=(
        "instrument and application: Sigray Apex XCT-150, Li-ion battery CL, G. Zan et al., Proc. Natl. Acad. "
        "Sci. 119, e2203199119 (2022), 0.2 µm resolution as listed in " + _REVIEW,
        "kvp ≤ 150 kV: the model name (XCT-150); lower limit 20 kV and the default 80 kV: typical values",
        "transmission X-ray source with the sample close to its window: Sigray patent WO2022126071 (W. Yun et al., "
        "'High throughput 3D x-ray imaging system using a transmission x-ray source'); spekpy models a "
        "reflection target, so the W spectrum at a 12° anode angle and a 0.25 mm Be window is an approximation",
        "current 25 µA (2 W at 80 kV), focal spot 0.5 µm, exposure 10 s: typical values for sub-µm lab sources",
        "sod 5 mm, sdd 750 mm (magnification 150, 0.5 µm voxels with 74.8 µm pixels): typical values",
        "detector: a CMOS flat panel with CsI (1536 × 1944 pixels of 74.8 µm, 14-bit, Dexela 1512-class): a "
        "typical detector of this class; the Apex's own detector is not documented in the sources at hand",
        "read noise 2 ADU, offset 300 ADU, 2 % gain spread, 0.2 % drift: typical values",
        "adu_per_kev 0.041: set so that the default open-beam flat reads ≈ 60 % of the 14-bit range",
    ),
)

_ID19 = Scanner(
    name="esrf_id19",
    beam="parallel",
    description="ESRF ID19 synchrotron laminography (monochromatic, 1.4 µm effective pixels)",
    energy_kev=19.0,
    flux=1e11,
    exposure_s=0.2,
    readout_s=0.1,
    n_flats=20,
    n_darks=20,
    detector=Detector(
        shape=(2048, 2048), spacing=(0.0014, 0.0014), mode="integrating", scintillator="LuAG", scintillator_um=10.0,
        psf="gaussian", psf_sigma_px=1.0,
        gain_sigma=0.01, gain_drift_sigma=0.002, dead_fraction=1e-5, hot_fraction=1e-5,
        adu_per_kev=0.053, read_noise_adu=2.0, offset_adu=100.0, bit_depth=14),
    sources=(
        "1.4 µm effective pixels, flip-chip CL: L. Helfen et al., Appl. Phys. Lett. 86 (7) (2005), as listed in "
        + _REVIEW,
        "19 keV monochromatic beam: the CFRP laminography at ID19 (Borstnar et al.) cited in the Du et al. "
        "review; ID19 also offers pink/white beams (set spectrum_file)",
        "flux 1e11 photons/mm²/s at the sample: typical value (order of magnitude for a multilayer "
        "monochromator at ID19), not a measured figure",
        "detector: 2048 × 2048, 14-bit CCD camera (FReLoN-class, 14 µm pixels behind 10× optics give 1.4 µm) "
        "with a 10 µm thin-film scintillator: typical values; LuAG is used here, ESRF's GGG:Eu films are not in "
        "lamino's material registry",
        "exposure 0.2 s, readout 0.1 s, read noise 2 ADU, offset 100 ADU, PSF σ 1 px, 1 % gain spread, 0.2 % "
        "drift (beam and scintillator changes between flats and projections): typical values",
        "adu_per_kev 0.053: set so that the default open-beam flat reads ≈ 60 % of the 14-bit range",
    ),
)

_CSAXS = Scanner(
    name="psi_csaxs",
    beam="parallel",
    description="PSI SLS cSAXS ptychographic X-ray laminography (absorption approximation, 6.2 keV)",
    energy_kev=6.2,
    flux=7e11,
    exposure_s=30.0,
    readout_s=5.0,
    n_flats=1,
    n_darks=1,
    detector=Detector(
        shape=(1024, 1024), spacing=(1.43e-5, 1.43e-5), mode="counting", scintillator="silicon",
        scintillator_um=450.0, threshold_kev=(3.1, math.inf), psf="gaussian", psf_sigma_px=0.5,
        gain_sigma=0.0, gain_drift_sigma=0.0, dead_fraction=0.0, hot_fraction=0.0,
        read_noise_adu=0.0, offset_adu=0.0, bit_depth=None),
    sources=(
        "ptychographic X-ray laminography of integrated circuits at 6.2 keV: M. Holler et al., Nat. Electron. "
        "2, 464 (2019); 14.3 nm resolution as listed in " + _REVIEW + "; used here as the effective pixel",
        "absorption approximation only: the 'detector' stands for the reconstructed projections (1024 × 1024 "
        "effective pixels, typical field of view), counted photon by photon with no read noise or saturation",
        "sensor: 450 µm Si hybrid pixel detector (Eiger/Pilatus-class), counting threshold at half the photon "
        "energy: typical values",
        "flux 7e11 photons/mm²/s over the field and 30 s per projection: typical values (coherent flux ≈ 5e8 "
        "photons/s, 0.1 s dwell, 1.5 µm scan step ≈ 2e13 photons/mm² per projection), an estimate",
        "one flat and one dark frame, 5 s overhead per projection: typical values (ptychography normalises by the "
        "probe, not by flats)",
    ),
)

_APS = Scanner(
    name="aps_2bm",
    beam="parallel",
    description="APS 2-BM micro-CT laminography (multilayer monochromator, 27.4 keV, 0.65 µm pixels)",
    energy_kev=27.4,
    flux=1e11,
    exposure_s=0.16,
    readout_s=0.0,
    n_flats=10,
    n_darks=10,
    detector=Detector(
        shape=(2160, 2560), spacing=(0.00065, 0.00065), mode="integrating", scintillator="LuAG",
        scintillator_um=10.0, psf="gaussian", psf_sigma_px=1.0,
        gain_sigma=0.01, gain_drift_sigma=0.002, dead_fraction=1e-5, hot_fraction=1e-5,
        adu_per_kev=2.1, read_noise_adu=2.0, offset_adu=100.0, bit_depth=16),
    sources=(
        "27.4 keV multilayer monochromator, PCO edge 2560 × 2160, Mitutoyo 10× → 0.65 µm pixels, LuAG 10 µm, "
        "10 flats and 10 darks: TomoBank laminography data set tomo_00100 (APS 2-BM-B, 'Camera caffè' leaf), "
        "tomography/tomobank docs/source/data/docs.data.laminography.rst",
        "0.92 µm pixels for the mouse-brain laminography: V. Nikitin et al., J. Synchrotron Rad. (2024), "
        "journals.iucr.org/s/issues/2024/04/00/gy5064, as listed in " + _REVIEW + " (override det_spacing=0.00092)",
        "exposure 0.16 s per view: from tomo_00100's fly scan (180° at 0.75°/s over 1500 projections); readout "
        "0 s (fly scan, global shutter)",
        "flux 1e11 photons/mm²/s: typical value (order of magnitude for a bending-magnet multilayer beam), not a "
        "measured figure",
        "16-bit sCMOS, read noise 2 ADU, offset 100 ADU, PSF σ 1 px, 1 % gain spread, 0.2 % drift: typical values",
        "adu_per_kev 2.1: set so that the default open-beam flat reads ≈ 60 % of the 16-bit range",
    ),
)

_SPRING8 = Scanner(
    name="spring8_bl20",
    beam="parallel",
    description="SPring-8 BL20XU/BL20B2 micro-laminography (monochromatic, 1.5 µm effective pixels)",
    energy_kev=20.0,
    flux=1e11,
    exposure_s=0.1,
    readout_s=0.01,
    n_flats=20,
    n_darks=20,
    detector=Detector(
        shape=(2048, 2048), spacing=(0.0015, 0.0015), mode="integrating", scintillator="LuAG",
        scintillator_um=20.0, psf="gaussian", psf_sigma_px=1.0,
        gain_sigma=0.01, gain_drift_sigma=0.002, dead_fraction=1e-5, hot_fraction=1e-5,
        adu_per_kev=0.22, read_noise_adu=2.0, offset_adu=100.0, bit_depth=16),
    sources=(
        "micro-laminography at SPring-8 BL20, 1.5 µm, copper grids: M. Hoshino et al., 'Development of an X-ray "
        "micro-laminography system at SPring-8', AIP Conf. Proc. (2011), as listed in " + _REVIEW,
        "20 keV: typical value within the monochromatic ranges of BL20XU (undulator) and BL20B2 (bending magnet), "
        "both ≈ 8–113 keV",
        "flux 1e11 photons/mm²/s: typical value for BL20XU (undulator); BL20B2 gives roughly 1e9 (override flux)",
        "detector: 2048 × 2048 16-bit sCMOS behind a 20 µm LuAG:Ce scintillator and optics giving 1.5 µm pixels, "
        "exposure 0.1 s, readout 0.01 s, read noise 2 ADU, offset 100 ADU, PSF σ 1 px: typical values",
        "adu_per_kev 0.22: set so that the default open-beam flat reads ≈ 60 % of the 16-bit range",
    ),
)

_PRESETS: dict[str, Scanner] = {s.name: s for s in (_NIKON, _SIGRAY, _ID19, _CSAXS, _APS, _SPRING8)}

PUBLISHED_SCANS: dict[str, dict[str, Any]] = {
    "lego": {"preset": "nikon_xt225", "overrides": {"kvp": 80.0, "current_ua": 85.0, "exposure_s": 1.0},
             "tilt_deg": 30.0, "n_views": None,
             "source": "Fisher et al., Meas. Sci. Technol. 30, 035401 (2019); CIL laminography example"},
    "ssb_pouch": {"preset": "nikon_xt225", "overrides": {"kvp": 100.0, "current_ua": 90.0, "exposure_s": 1.0},
                  "tilt_deg": None, "n_views": 600,
                  "source": "Du et al. review, 'CL Exploitation': W target, 100 kV, 9 W, 600 projections × 1 s"},
}
"""Settings of published CL scans: ``Scanner.preset(s["preset"], **s["overrides"])``; None = not published."""

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

Presets (:meth:`Scanner.presets`) are built from published scans and data sheets and kept as package data
(``presets.toml``, read and checked by :mod:`lamino.simulate.presets`); each preset's ``sources`` says where every
number comes from and calls an estimate a "typical value". Detector gains (``adu_per_kev``)
are set so that the preset's own open-beam flat reads about 60 % of the detector's full scale, the operating
point at which such scans are usually taken.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lamino._checks import count, non_negative, number, pair, positive
from lamino.geometry import Geometry, frame
from lamino.simulate import presets
from lamino.simulate.detector import Detector
from lamino.simulate.spectrum import Spectrum

__all__ = ["BEAMS", "PUBLISHED_SCANS", "Scanner", "load_presets"]

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
    ``focal_spot_um`` the source size (µm, FWHM). ``max_frame_s``: the longest exposure of one detector frame
    (s); a longer ``exposure_s`` is taken as :attr:`frames_per_projection` equal frames and averaged, as
    flat-panel scanners do, so each frame (and each flat frame) saturates at its own level and read noise
    falls as 1/√frames. None: one frame per projection. ``sources`` cites where the numbers come from.
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
    max_frame_s: float | None = None
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
        if self.max_frame_s is not None:
            put("max_frame_s", positive("max_frame_s", self.max_frame_s, " s (longest single detector frame)"))
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
        """Names of the instrument presets (package data, :mod:`lamino.simulate.presets`)."""
        return list(_presets())

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Scanner:
        """The preset ``name`` with ``overrides``: any Scanner or Detector field, ``det_shape``, ``det_spacing``.

        ``energy_kev=`` makes a tube preset monochromatic; see :meth:`replace`. The presets are read from
        ``presets.toml`` (package data) and checked once, on first use (:func:`load_presets`).
        """
        table = _presets()
        if name not in table:
            raise ValueError(f"name={name!r} is not a scanner preset: choose one of {', '.join(table)}")
        return table[name].replace(**overrides)

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

    @property
    def frames_per_projection(self) -> int:
        """Detector frames averaged into one projection: ⌈exposure_s / max_frame_s⌉ (1 without max_frame_s)."""
        if self.max_frame_s is None:
            return 1
        return max(1, math.ceil(self.exposure_s / self.max_frame_s * (1 - 1e-9)))

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

    From the first view's cone vectors (distances and angles do not change as the sample turns); the rays from
    the source to the pixel centres are the detector frame's (:func:`lamino.geometry.frame.pixel_rays`).
    """
    vec = np.asarray(geometry.vectors(), dtype=np.float64)[0]
    src, centre, u, v = frame.split_vectors(vec)
    normal = np.cross(u, v)
    normal /= np.linalg.norm(normal)
    _, rays = frame.pixel_rays(vec, geometry.det_shape, "cone")        # (rows, cols, 3), source → pixel centre
    cos_gamma = np.abs(rays @ normal) / np.linalg.norm(rays, axis=-1)
    return cos_gamma, float(abs(np.dot(centre - src, normal)))


# ---------------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------------


def load_presets(path=None) -> dict[str, Scanner]:
    """The scanners of a presets file (default: lamino's ``presets.toml``, see :mod:`lamino.simulate.presets`),
    in file order; a value a Scanner or Detector refuses gives a one-line ValueError naming the file and table."""
    file = presets.PRESETS_FILE if path is None else path
    out = {}
    for name, fields in presets.read_presets(file).items():
        fields = dict(fields)
        try:
            detector = Detector(**fields.pop("detector"))
        except ValueError as exc:
            raise ValueError(f"{presets.where(file, f'presets.{name}.detector')}: {exc}") from None
        try:
            out[name] = Scanner(name=name, detector=detector, **fields)
        except ValueError as exc:
            raise ValueError(f"{presets.where(file, f'presets.{name}')}: {exc}") from None
    return out


@functools.cache
def _presets() -> dict[str, Scanner]:
    """lamino's presets, read once."""
    return load_presets()


PUBLISHED_SCANS: dict[str, dict[str, Any]] = {
    "lego": {"preset": "nikon_xt225", "overrides": {"kvp": 80.0, "current_ua": 85.0, "exposure_s": 1.0},
             "tilt_deg": 30.0, "n_views": None,
             "source": "Fisher et al., Meas. Sci. Technol. 30, 035401 (2019); CIL laminography example"},
    "ssb_pouch": {"preset": "nikon_xt225", "overrides": {"kvp": 100.0, "current_ua": 90.0, "exposure_s": 1.0},
                  "tilt_deg": None, "n_views": 600,
                  "source": "Du et al. review, 'CL Exploitation': W target, 100 kV, 9 W, 600 projections × 1 s"},
}
"""Settings of published CL scans: ``Scanner.preset(s["preset"], **s["overrides"])``; None = not published."""

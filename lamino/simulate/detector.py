"""Flat-panel and photon-counting detectors: absorption, energy weighting, blur and readout.

A :class:`Detector` holds a detector's physics and its fixed pixel defects. The simulator uses it in the order of
``design.md``: cover transmission and scintillator absorption η(E) = 1 − exp(−μ(E)·t) (numpy, outside ``jit``)
→ Poisson per bin → energy weights w(E) (E·adu_per_kev when integrating, a window indicator when counting)
→ :func:`blur` with :meth:`Detector.psf_kernel` → :func:`readout` (gain, dead and hot pixels, read noise, offset,
quantisation, saturation). :func:`blur` and :func:`readout` are pure JAX functions of float32 arrays
(..., rows, cols) and can be jitted with the detector as a static argument (it is frozen and hashable).

PSF kernels are normalised to sum 1 and have odd sizes. Gaussians are *discrete* Gaussians
T(n; σ²) = e^{−σ²} I_n(σ²) (T. Lindeberg, IEEE TPAMI 12, 234 (1990)): their variance is exactly σ² px² for any σ,
even σ < 1 px where sampled Gaussians are too narrow, and two of them convolve to one with the variances added.
The Lorentzian is the 2-D Cauchy PSF p(r) = γ / (2π (r² + γ²)^{3/2}), integrated exactly over each pixel.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.signal
import scipy.special
from numpy.typing import ArrayLike, NDArray

from lamino._checks import fraction, is_int, non_negative, number, pair, positive
from lamino.materials import Material, get_material, material_names, register_material

__all__ = ["MODES", "PSFS", "SATURATED_SHARE", "SCINTILLATORS", "Detector", "blur", "frame_average",
           "gaussian_kernel", "lorentzian_kernel", "readout"]

MODES = ("integrating", "counting")
PSFS = ("none", "gaussian", "glare", "lorentzian")
SATURATED_SHARE = 0.01      # share of saturated open-beam pixels above which a scan's data count as clipped
GAUSS_TRUNCATE = 5.0
"""Gaussian kernels are cut at ⌈5σ⌉ + 2 px (variance within 1e-4 of σ² even for σ < 1 px) and renormalised."""
LORENTZ_MASS = 0.99
"""Lorentzian kernels reach the radius that holds this fraction of the PSF's mass, then are renormalised."""

SCINTILLATORS: tuple[Material, ...] = (
    Material("csi", "CsI", 4.51),  # caesium iodide (CsI:Tl needles): CRC Handbook of Chemistry and Physics, 4.51
    Material("gos", "Gd2O2S", 7.32),  # gadolinium oxysulfide (Gadox, GOS:Tb): Saint-Gobain / Hamamatsu, 7.32-7.34
    Material("luag", "Lu3Al5O12", 6.73),  # LuAG:Ce single crystal: Crytur data sheet, 6.73
    Material("cdte", "CdTe", 5.85),  # CdTe sensor of photon-counting detectors: CRC Handbook, 5.85
)
"""Sensor materials added to :mod:`lamino.materials` unless already registered (densities in g/cm³)."""

for _m in SCINTILLATORS:
    if _m.name not in material_names():
        register_material(_m)


# ---------------------------------------------------------------------------------------------------------------
# PSF kernels (numpy, outside jit)
# ---------------------------------------------------------------------------------------------------------------


def _gauss_1d(sigma_px: float, radius: int) -> NDArray[np.float64]:
    """Discrete Gaussian T(n; σ²) for n = −radius … radius (variance σ² px² before truncation)."""
    n = np.arange(-radius, radius + 1)
    return scipy.special.ive(n, sigma_px * sigma_px)


def _gauss_radius(sigma_px: float, max_radius: int | None) -> int:
    r = math.ceil(GAUSS_TRUNCATE * sigma_px) + 2 if sigma_px > 0 else 0
    return r if max_radius is None else min(r, max_radius)


def _normalised(kernel: NDArray[np.float64]) -> NDArray[np.float64]:
    return kernel / kernel.sum()


def gaussian_kernel(sigma_px: float, max_radius: int | None = None, radius: int | None = None) -> NDArray[np.float64]:
    """2-D discrete Gaussian of standard deviation ``sigma_px`` (px) per axis, sums to 1, odd size.

    The half-size is ``radius`` if given, else ⌈5σ⌉ + 2, at most ``max_radius``. σ = 0 gives the 1×1 kernel [[1]].
    """
    sigma = float(sigma_px)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma_px={sigma_px!r} is not allowed: give a width ≥ 0 px")
    g = _gauss_1d(sigma, _gauss_radius(sigma, max_radius) if radius is None else radius)
    return _normalised(np.outer(g, g))


def lorentzian_kernel(gamma_px: float, max_radius: int | None = None) -> NDArray[np.float64]:
    """2-D Cauchy PSF γ / (2π (r² + γ²)^{3/2}) integrated over each pixel, sums to 1, odd size.

    The half-size R holds > 99 % of the mass (disk of radius R: 1 − γ/√(R² + γ²) ≥ 0.99), at most ``max_radius``.
    """
    gamma = float(gamma_px)
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma_px={gamma_px!r} is not allowed: give a width > 0 px")
    r = math.ceil(gamma * math.sqrt(1.0 / (1.0 - LORENTZ_MASS) ** 2 - 1.0))
    r = r if max_radius is None else min(r, max_radius)
    edges = np.arange(-r, r + 2) - 0.5
    x, y = np.meshgrid(edges, edges, indexing="ij")
    # cumulative distribution F(x, y) of the 2-D Cauchy PSF; pixel mass by inclusion-exclusion of its corners
    cdf = (np.arctan(x / gamma) + np.arctan(y / gamma)
           + np.arctan(x * y / (gamma * np.sqrt(x * x + y * y + gamma * gamma)))) / (2 * np.pi)
    mass = cdf[1:, 1:] - cdf[:-1, 1:] - cdf[1:, :-1] + cdf[:-1, :-1]
    return _normalised(mass)


# ---------------------------------------------------------------------------------------------------------------
# Pixel maps (numpy, cached: a detector's serial number)
# ---------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _pixel_maps(shape: tuple[int, int], gain_sigma: float, drift_sigma: float, dead_fraction: float,
                hot_fraction: float, seed: int) -> dict[str, NDArray[Any]]:
    """Read-only gain, drift (float32) and dead, hot (bool, disjoint) maps drawn in a fixed order from ``seed``."""
    rng = np.random.default_rng(seed)
    gain = np.maximum(1.0 + gain_sigma * rng.standard_normal(shape), 0.0).astype(np.float32)
    drift = np.maximum(1.0 + drift_sigma * rng.standard_normal(shape), 0.0).astype(np.float32)
    n = shape[0] * shape[1]
    order = rng.permutation(n)
    n_dead, n_hot = round(dead_fraction * n), round(hot_fraction * n)
    dead, hot = np.zeros(n, bool), np.zeros(n, bool)
    dead[order[:n_dead]] = True
    hot[order[n_dead:n_dead + n_hot]] = True
    maps = {"gain": gain, "drift": drift, "dead": dead.reshape(shape), "hot": hot.reshape(shape)}
    for a in maps.values():
        a.setflags(write=False)
    return maps


# ---------------------------------------------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------------------------------------------


def _known_material(name: str, material: Any) -> str:
    try:
        get_material(material)
    except ValueError:
        raise ValueError(f"{name}={material!r} is not allowed: give a lamino.materials name "
                         f"({', '.join(material_names())})") from None
    return material





@dataclasses.dataclass(frozen=True)
class Detector:
    """An X-ray detector: geometry, sensor, PSF, pixel defects and readout electronics.

    ``shape`` (rows, cols); ``spacing`` (dv, du) in mm (a number means square pixels); ``mode`` "integrating"
    (signal ∝ absorbed energy, ``adu_per_kev`` ADU per keV) or "counting" (1 ADU per photon in the window
    ``threshold_kev`` = [low, high) keV); ``scintillator`` a :mod:`lamino.materials` name (None: ideal, η = 1) of
    thickness ``scintillator_um`` µm; ``cover`` (material, mm) layers in front of the sensor; ``psf`` one of
    "none", "gaussian" (σ = ``psf_sigma_px``), "glare" ((1 − f)·G(σ) + f·G(σ_glare)), "lorentzian" (γ); per-pixel
    gain spread ``gain_sigma`` (removed by flat-field correction) and ``gain_drift_sigma`` (gain change between
    flats and projections: rings); ``dead_fraction`` / ``hot_fraction`` of pixels reading 0 / saturation;
    ``read_noise_adu``, ``offset_adu`` (dark level), ``bit_depth`` (saturation 2**bits − 1; None: none),
    ``quantize`` (round to integer ADU); ``seed`` fixes the pixel maps, like a serial number.
    """

    shape: tuple[int, int] = (256, 256)
    spacing: tuple[float, float] = (0.2, 0.2)
    mode: str = "integrating"
    scintillator: str | None = "CsI"
    scintillator_um: float = 500.0
    cover: tuple[tuple[str, float], ...] = ()
    threshold_kev: tuple[float, float] = (0.0, math.inf)
    psf: str = "gaussian"
    psf_sigma_px: float = 0.5
    glare_fraction: float = 0.05
    glare_sigma_px: float = 10.0
    lorentz_gamma_px: float = 0.7
    gain_sigma: float = 0.0
    gain_drift_sigma: float = 0.0
    dead_fraction: float = 0.0
    hot_fraction: float = 0.0
    adu_per_kev: float = 0.01
    read_noise_adu: float = 0.0
    offset_adu: float = 0.0
    bit_depth: int | None = 16
    quantize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        rows, cols = pair("shape", self.shape)
        if not all(is_int(n) and n >= 1 for n in (rows, cols)):
            raise ValueError(f"shape={self.shape!r} is not allowed: give (rows, cols), integers ≥ 1")
        put("shape", (int(rows), int(cols)))
        spacing = (self.spacing, self.spacing) if np.ndim(self.spacing) == 0 else pair("spacing", self.spacing)
        put("spacing", tuple(positive("spacing", s, " mm") for s in spacing))
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r} is not allowed: give one of {', '.join(MODES)}")
        if self.scintillator is not None:
            _known_material("scintillator", self.scintillator)
        put("scintillator_um", positive("scintillator_um", self.scintillator_um, " µm"))
        try:
            cover = tuple((m, t) for m, t in self.cover)
        except (TypeError, ValueError):
            raise ValueError(f"cover={self.cover!r} is not allowed: give (material, thickness_mm) pairs") from None
        put("cover", tuple((_known_material("cover material", m), non_negative(f"cover thickness of {m!r}", t, " mm"))
                           for m, t in cover))
        low, high = pair("threshold_kev", self.threshold_kev)
        low = non_negative("threshold_kev low", low, " keV")
        high = number("threshold_kev high", math.inf if high is None else high, lambda x: x > low,
                       f"an energy > the low threshold {low:g} keV (inf or None: no upper threshold)")
        put("threshold_kev", (low, high))
        if self.psf not in PSFS:
            raise ValueError(f"psf={self.psf!r} is not allowed: give one of {', '.join(PSFS)}")
        put("psf_sigma_px", non_negative("psf_sigma_px", self.psf_sigma_px, " px"))
        put("glare_fraction", fraction("glare_fraction", self.glare_fraction))
        put("glare_sigma_px", positive("glare_sigma_px", self.glare_sigma_px, " px"))
        put("lorentz_gamma_px", positive("lorentz_gamma_px", self.lorentz_gamma_px, " px"))
        put("gain_sigma", non_negative("gain_sigma", self.gain_sigma))
        put("gain_drift_sigma", non_negative("gain_drift_sigma", self.gain_drift_sigma))
        put("dead_fraction", fraction("dead_fraction", self.dead_fraction))
        put("hot_fraction", fraction("hot_fraction", self.hot_fraction))
        if self.dead_fraction + self.hot_fraction > 1:
            raise ValueError(f"dead_fraction + hot_fraction={self.dead_fraction + self.hot_fraction!r} is not "
                             "allowed: give fractions summing to at most 1")
        put("adu_per_kev", positive("adu_per_kev", self.adu_per_kev, " ADU/keV"))
        put("read_noise_adu", non_negative("read_noise_adu", self.read_noise_adu, " ADU"))
        put("offset_adu", non_negative("offset_adu", self.offset_adu, " ADU"))
        bits = self.bit_depth
        if bits is not None and not (is_int(bits) and 1 <= bits <= 32):
            raise ValueError(f"bit_depth={bits!r} is not allowed: give an integer in [1, 32] or None (no saturation)")
        put("bit_depth", None if bits is None else int(bits))
        if self.hot_fraction > 0 and bits is None:
            raise ValueError(f"hot_fraction={self.hot_fraction!r} is not allowed with bit_depth=None: hot pixels read "
                             "the saturation level, so give a bit_depth")
        if not isinstance(self.quantize, bool | np.bool_):
            raise ValueError(f"quantize={self.quantize!r} is not allowed: give True or False")
        put("quantize", bool(self.quantize))
        if not (is_int(self.seed) and self.seed >= 0):
            raise ValueError(f"seed={self.seed!r} is not allowed: give an integer ≥ 0")
        put("seed", int(self.seed))

    @classmethod
    def ideal(cls, shape: tuple[int, int] = (256, 256), spacing: float | tuple[float, float] = 0.2,
              mode: str = "integrating") -> Detector:
        """A perfect detector: every photon absorbed (η = 1), no PSF, defects, read noise, offset or saturation.

        With a monochromatic beam and ``simulate(..., noise=False)`` its flat-corrected data are exactly exp(−∫μ).
        """
        return cls(shape=shape, spacing=spacing, mode=mode, scintillator=None, psf="none", gain_sigma=0.0,
                   gain_drift_sigma=0.0, dead_fraction=0.0, hot_fraction=0.0, read_noise_adu=0.0, offset_adu=0.0,
                   bit_depth=None, quantize=False)

    # ------------------------------------------------------------------ energy response (numpy)

    @property
    def saturation_adu(self) -> float | None:
        """Largest reading, 2**bit_depth − 1 ADU (None without saturation)."""
        return None if self.bit_depth is None else float(2**self.bit_depth - 1)

    def saturated_fraction(self, readings: ArrayLike) -> float:
        """Share of ``readings`` (e.g. an averaged flat) at the saturation level (within 0.1 %): clipped data.
        0 without saturation. Above :data:`SATURATED_SHARE`, ``simulate`` warns and studies set the point aside."""
        full = self.saturation_adu
        return 0.0 if full is None else float(np.mean(np.asarray(readings) >= 0.999 * full))

    def efficiency(self, energies_kev: ArrayLike) -> NDArray[np.float64]:
        """Fraction η(E) = 1 − exp(−μ(E)·t) of photons absorbed in the sensor (1 without a scintillator)."""
        e = np.asarray(energies_kev, dtype=np.float64)
        if self.scintillator is None:
            return np.ones_like(e)
        return -np.expm1(-get_material(self.scintillator).mu(e) * (self.scintillator_um * 1e-3))

    def cover_transmission(self, energies_kev: ArrayLike) -> NDArray[np.float64]:
        """Transmission Π exp(−μ(E)·t) of the cover layers in front of the sensor."""
        e = np.asarray(energies_kev, dtype=np.float64)
        tau = sum((get_material(m).mu(e) * t for m, t in self.cover), np.zeros_like(e))
        return np.exp(-tau)

    def energy_weights(self, energies_kev: ArrayLike) -> NDArray[np.float64]:
        """Signal per absorbed photon w(E): E·adu_per_kev ADU (integrating) or 1/0 in/out of the window (counting)."""
        e = np.asarray(energies_kev, dtype=np.float64)
        if self.mode == "counting":
            low, high = self.threshold_kev
            return ((e >= low) & (e < high)).astype(np.float64)
        return e * self.adu_per_kev

    # ------------------------------------------------------------------ blur and pixel maps (numpy)

    def psf_kernel(self, extra_sigma_px: float = 0.0) -> NDArray[np.float64]:
        """The PSF as a 2-D kernel (sums to 1, odd size), convolved with a Gaussian of ``extra_sigma_px`` (px).

        The extra Gaussian models e.g. focal-spot blur. Kernels never extend beyond the detector size (larger
        parts could not reach a pixel); truncated kernels are renormalised.
        """
        extra = non_negative("extra_sigma_px", extra_sigma_px, " px")
        max_radius = max(self.shape) - 1
        if self.psf == "none":
            kernel = np.ones((1, 1))
        elif self.psf == "gaussian":
            kernel = gaussian_kernel(self.psf_sigma_px, max_radius)
        elif self.psf == "glare":
            radius = _gauss_radius(max(self.psf_sigma_px, self.glare_sigma_px), max_radius)
            f = self.glare_fraction
            kernel = (1 - f) * gaussian_kernel(self.psf_sigma_px, radius=radius) + f * gaussian_kernel(
                self.glare_sigma_px, radius=radius)
        else:
            kernel = lorentzian_kernel(self.lorentz_gamma_px, max_radius)
        if extra > 0:
            kernel = np.maximum(scipy.signal.fftconvolve(kernel, gaussian_kernel(extra, max_radius)), 0.0)
        return _normalised(kernel)

    def pixel_maps(self) -> dict[str, NDArray[Any]]:
        """This detector's fixed maps: "gain", "drift" (float32, mean 1) and "dead", "hot" (bool), (rows, cols).

        Drawn from ``numpy.random.default_rng(seed)`` in a fixed order: gain = 1 + gain_sigma·z, drift =
        1 + gain_drift_sigma·z (clipped at 0), then exactly round(fraction × pixels) dead and, disjoint, hot pixels.
        Cached; the arrays are read-only.
        """
        return dict(_pixel_maps(self.shape, self.gain_sigma, self.gain_drift_sigma, self.dead_fraction,
                                self.hot_fraction, self.seed))

    # ------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (an infinite upper threshold becomes None)."""
        d = dataclasses.asdict(self)
        d["shape"], d["spacing"] = list(self.shape), list(self.spacing)
        d["cover"] = [[m, t] for m, t in self.cover]
        low, high = self.threshold_kev
        d["threshold_kev"] = [low, None if math.isinf(high) else high]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detector:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"d has unknown key(s) {', '.join(unknown)}: allowed are {', '.join(sorted(names))}")
        return cls(**d)

    def replace(self, **changes: Any) -> Detector:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"replace got unknown field(s) {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------------------------------------------
# JAX stages (jit-friendly; the detector and the kernel's shape are static)
# ---------------------------------------------------------------------------------------------------------------


def blur(images: ArrayLike, kernel: ArrayLike) -> jax.Array:
    """Linear (zero-padded) convolution of ``images`` (..., rows, cols) with ``kernel`` (odd × odd), same shape.

    FFT-based; signal farther than half the kernel size from the edges is conserved exactly, signal blurred
    past the edges is lost (as on a real detector). Returns float32.
    """
    images = jnp.asarray(images, jnp.float32)
    kernel = jnp.asarray(kernel, jnp.float32)
    kr, kc = kernel.shape
    if kr % 2 == 0 or kc % 2 == 0:
        raise ValueError(f"kernel shape={kernel.shape!r} is not allowed: give odd sizes (centred kernel)")
    if (kr, kc) == (1, 1):
        return images * kernel[0, 0]
    rows, cols = images.shape[-2:]
    size = (scipy.fft.next_fast_len(rows + kr - 1, real=True), scipy.fft.next_fast_len(cols + kc - 1, real=True))
    full = jnp.fft.irfft2(jnp.fft.rfft2(images, s=size) * jnp.fft.rfft2(kernel, s=size), s=size)
    return full[..., kr // 2: kr // 2 + rows, kc // 2: kc // 2 + cols].astype(jnp.float32)


def frame_average(signal: ArrayLike, detector: Detector, maps: dict[str, ArrayLike], key: jax.Array, noise: bool,
                  frames: int) -> jax.Array:
    """The mean of ``frames`` detector frames that share one projection's signal (..., rows, cols) equally:
    each frame reads ``signal / frames`` through :func:`readout` with its own read noise, quantisation and
    saturation. (The photon noise of the whole exposure is in ``signal`` already; splitting it equally
    neglects the frames' own photon fluctuations, which matter only for frames within noise of saturation.)"""
    share = jnp.asarray(signal, jnp.float32) / frames

    def add_frame(i, total):
        return total + readout(share, detector, maps, jax.random.fold_in(key, i), noise)

    return jax.lax.fori_loop(0, frames, add_frame, jnp.zeros_like(share)) / frames


def readout(signal: ArrayLike, detector: Detector, maps: dict[str, ArrayLike], key: jax.Array, noise: bool,
            flat: bool = False) -> jax.Array:
    """Detector readings (..., rows, cols) float32 from the blurred signal in ADU (counts when counting).

    Order (design.md): × gain (× drift unless ``flat``: flats are taken when the gain was calibrated) → dead
    pixels 0, hot pixels saturated → + N(0, read_noise_adu²) if ``noise`` → + offset_adu → round if ``quantize``
    → clip to [0, 2**bit_depth − 1] if ``bit_depth``. ``maps`` from :meth:`Detector.pixel_maps`.
    """
    x = jnp.asarray(signal, jnp.float32) * jnp.asarray(maps["gain"], jnp.float32)
    if not flat:
        x = x * jnp.asarray(maps["drift"], jnp.float32)
    x = jnp.where(jnp.asarray(maps["dead"]), 0.0, x)
    full = detector.saturation_adu
    if full is not None:
        x = jnp.where(jnp.asarray(maps["hot"]), full, x)
    if noise and detector.read_noise_adu > 0:
        x = x + detector.read_noise_adu * jax.random.normal(key, x.shape, jnp.float32)
    x = x + detector.offset_adu
    if detector.quantize:
        x = jnp.round(x)
    if full is not None:
        x = jnp.clip(x, 0.0, full)
    return x

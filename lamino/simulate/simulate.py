"""``simulate``: a phantom scanned by an instrument's digital twin → a :class:`~lamino.io.Scan` of raw counts.

Each material is projected once (exact ray tracing, or a projection of the voxelised phantom on a grid finer than
the detector), then the chain of :mod:`lamino.simulate.chain` turns the path lengths into detector readings,
a chunk of views at a time (spread over the JAX devices), with flats and darks from the same chain.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
import warnings
from collections import deque

import jax
import numpy as np
from tqdm.auto import tqdm

import lamino
from lamino import _checks, config
from lamino.geometry import Geometry, VolumeGrid
from lamino.io import GroundTruth, Scan
from lamino.phantoms import Phantom
from lamino.resources import FLOAT32, check_memory
from lamino.simulate.chain import (
    ChainSwitches,
    acquire_views,
    as_constants,
    reference_frames,
    views_per_chunk,
)
from lamino.simulate.detector import SATURATED_SHARE, gaussian_kernel
from lamino.simulate.scanner import Scanner

METHODS = ("exact", "voxel")
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))


def simulate(phantom: Phantom, geometry: Geometry, scanner: Scanner | str | None = None, seed: int = 0, *,
             noise: bool = True, blur: bool = True, focal_spot: bool = True, scatter_spr: float = 0.0,
             scatter_sigma_mm: float | None = None, method: str = "exact", voxel_size: float | None = None,
             n_bins: int = 32, exact_bins: bool = False, truth: bool = True, truth_grid: VolumeGrid | None = None,
             lengths: dict[str, np.ndarray] | None = None, progress: bool = False) -> Scan:
    """Simulate the raw data of scanning ``phantom`` with ``scanner`` along ``geometry``.

    Parameters
    ----------
    scanner:
        a :class:`Scanner`, a preset name, or None for ``nikon_xt225`` (cone beam) / ``esrf_id19`` (parallel).
        The detector takes the geometry's shape and pixel spacing; a warning says when they differ from the
        scanner's (build the geometry with ``scanner.geometry(...)`` to keep them equal).
    seed:
        an integer in [0, 2**32) that seeds photon and read noise (``jax.random``); the same seed gives
        identical data.
    noise, blur, focal_spot:
        switch off photon and read noise, the detector PSF, and the focal-spot blur (cone beam, magnification
        M: Gaussian of FWHM = focal spot × (M − 1) at the detector).
    scatter_spr, scatter_sigma_mm:
        scatter as a low-frequency copy of the primary, ``spr`` × (primary ⊛ Gaussian of σ mm at the detector;
        default σ = 1/8 of the detector width). 0 switches scatter off.
    method:
        ``"exact"`` ray–primitive path lengths (:meth:`Phantom.path_lengths`, no voxels, no inverse crime) or
        ``"voxel"`` (projection of the phantom voxelised at ``voxel_size``, default half a pixel at the object).
    n_bins:
        energy bins of tube spectra. ``exact_bins`` draws Poisson noise per bin instead of the exact-moment
        compound-Poisson sampler (30× slower; ignored with focal-spot blur or scatter).
    truth, truth_grid:
        attach the μ volume at the effective energy and the labels on ``truth_grid`` (default
        ``VolumeGrid.fit(geometry)``).
    lengths:
        precomputed per-material path lengths {material: (n_views, rows, cols) mm}, e.g. to re-simulate the
        same phantom and geometry with another seed or exposure without tracing again.
    """
    t_start = time.perf_counter()
    if not isinstance(phantom, Phantom):
        raise ValueError(f"phantom={type(phantom).__name__} is not allowed: give a lamino Phantom "
                         "(lamino.phantoms.get(name) or from_mesh)")
    if not isinstance(geometry, Geometry) or not geometry.is_concrete:
        raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a concrete lamino Geometry")
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not allowed: choose one of {', '.join(METHODS)}")
    seed = _checks.seed("seed", seed)
    if not (isinstance(n_bins, int) and n_bins >= 1):
        raise ValueError(f"n_bins={n_bins!r} is not allowed: give an integer ≥ 1")
    if not (math.isfinite(scatter_spr) and scatter_spr >= 0):
        raise ValueError(f"scatter_spr={scatter_spr!r} is not allowed: give a ratio ≥ 0")
    scanner = _scanner(scanner, geometry)
    _warn_if_detector_differs(scanner, geometry)
    check_memory(estimate_bytes(geometry, len(phantom.materials), truth_grid if truth else None, truth),
                 f"simulating {geometry.n_views} views of {geometry.det_shape[0]}×{geometry.det_shape[1]} pixels",
                 "use fewer views, a smaller detector or a coarser truth grid")
    detector = scanner.detector.replace(shape=tuple(geometry.det_shape), spacing=tuple(geometry.det_spacing))
    spectrum = scanner.spectrum(n_bins)
    detected = detected_spectrum(scanner, geometry, spectrum)
    energies, photons, weights, falloff = detected.energies_kev, detected.photons, detected.weights, detected.falloff
    if not np.any(photons * weights > 0):
        raise ValueError(f"the detector records nothing from this spectrum ({energies.min():.1f}–"
                         f"{energies.max():.1f} keV): check threshold_kev and the cover")

    materials = sorted(phantom.materials)
    if lengths is None:
        lengths = (phantom.path_lengths(geometry, progress=progress) if method == "exact"
                   else phantom.voxel_path_lengths(geometry, voxel_size))
    _check_lengths(lengths, materials, geometry)
    mu = np.stack([phantom.materials[m].mu(energies) for m in materials]) if materials else np.zeros((0, len(energies)))

    du = geometry.det_spacing[1]
    fs_sigma_px = _focal_spot_sigma_px(scanner, geometry) if focal_spot else 0.0
    scatter_sigma_px = (scatter_sigma_mm / du if scatter_sigma_mm else geometry.det_shape[1] / 8)
    switches = ChainSwitches(noise=bool(noise), blur=bool(blur) and detector.psf != "none",
                             focal_spot=fs_sigma_px > 0.05, scatter=scatter_spr > 0, exact_bins=bool(exact_bins),
                             frames=scanner.frames_per_projection)
    consts = as_constants(mu, photons, weights, falloff, detector.psf_kernel(), gaussian_kernel(fs_sigma_px),
                          gaussian_kernel(scatter_sigma_px) if scatter_spr > 0 else gaussian_kernel(0.0),
                          scatter_spr, detector.pixel_maps())

    key_views, key_ref = jax.random.split(jax.random.key(seed))
    counts = _acquire(key_views, lengths, materials, geometry.n_views, consts, detector, switches, len(energies),
                      progress)
    flat, dark = reference_frames(key_ref, consts, detector, switches, scanner.n_flats, scanner.n_darks)
    flats, darks = np.asarray(flat)[None], np.asarray(dark)[None]
    _warn_if_saturated(flats[0], detector)

    e_eff = detected.effective_energy_kev
    gt = _truth(phantom, geometry, truth_grid, e_eff) if truth else None
    params = dict(noise=noise, blur=blur, focal_spot=focal_spot, scatter_spr=scatter_spr,
                  scatter_sigma_mm=scatter_sigma_mm, method=method, voxel_size=voxel_size, n_bins=n_bins,
                  exact_bins=exact_bins)
    provenance = {
        "lamino_version": lamino.__version__, "seed": seed, "created": datetime.datetime.now(
            datetime.UTC).isoformat(timespec="seconds"), "simulate": params,
        "spectrum": spectrum.to_dict(), "effective_energy_kev": e_eff,
        "photons_per_pixel": float(np.sum(detected.incident)), "detected_photons_per_pixel": float(np.sum(photons)),
        "seconds": round(time.perf_counter() - t_start, 3),
    }
    return Scan(counts=counts, flats=flats, darks=darks, geometry=geometry,
                scanner=scanner.replace(detector=detector).to_dict(),
                phantom={"name": phantom.name, "params": _json_safe(phantom.params),
                         "sample_size_mm": list(phantom.sample_size)}, truth=gt,
                provenance=provenance)


@dataclasses.dataclass(frozen=True, eq=False)
class DetectedSpectrum:
    """What one flat-field pixel receives and records per projection: ``energies_kev`` (bins), ``incident``
    photons per bin, ``photons`` absorbed in the scintillator per bin (after the detector cover), the detector's
    per-photon ``weights`` (integrating: ∝ E; counting: the energy window), the off-axis ``falloff`` map."""

    energies_kev: np.ndarray
    incident: np.ndarray
    photons: np.ndarray
    weights: np.ndarray
    falloff: np.ndarray

    @property
    def effective_energy_kev(self) -> float:
        """Mean energy of the recorded signal, Σ E·N·w / Σ N·w (keV)."""
        signal = self.photons * self.weights
        return float(np.sum(self.energies_kev * signal) / np.sum(signal))


def detected_spectrum(scanner: Scanner, geometry: Geometry, spectrum=None, n_bins: int = 32) -> DetectedSpectrum:
    """The photons one detector pixel absorbs per projection and energy bin of ``scanner`` on ``geometry``
    (``spectrum``: the scanner's spectrum, default ``scanner.spectrum(n_bins)``)."""
    spectrum = spectrum if spectrum is not None else scanner.spectrum(n_bins)
    energies = spectrum.energies_kev
    flux, falloff = scanner.photons_per_pixel(spectrum, geometry)
    det = scanner.detector
    photons = flux * det.cover_transmission(energies) * det.efficiency(energies)
    return DetectedSpectrum(energies, flux, photons, det.energy_weights(energies), falloff)


def _warn_if_saturated(flat: np.ndarray, detector) -> None:
    """Warn when more than 1 % of the open-beam flat reads the saturation level (data would be clipped)."""
    share = detector.saturated_fraction(flat)
    if share > SATURATED_SHARE:
        warnings.warn(f"the flat field saturates the detector ({share:.0%} of pixels at {detector.saturation_adu:g} "
                      "ADU): lower exposure_s, the tube current or the flux, or adu_per_kev, or set max_frame_s to "
                      "average shorter frames", stacklevel=3)


def _warn_if_detector_differs(scanner: Scanner, geometry: Geometry) -> None:
    """One warning when the geometry's detector (shape, pixel spacing) is not the scanner's: the geometry wins."""
    det = scanner.detector
    same_shape = tuple(geometry.det_shape) == tuple(det.shape)
    same_spacing = np.allclose(geometry.det_spacing, det.spacing, rtol=1e-9, atol=0.0)
    if same_shape and same_spacing:
        return
    rows, cols = geometry.det_shape
    warnings.warn(f"the geometry's detector ({rows}×{cols} pixels of {_spacing(geometry.det_spacing)} mm) differs "
                  f"from the scanner's ({det.shape[0]}×{det.shape[1]} pixels of {_spacing(det.spacing)} mm): "
                  "simulating the geometry's; build the geometry with scanner.geometry(...) or the scanner with "
                  f"det_shape=({rows}, {cols}), det_spacing=... to make them agree", stacklevel=3)


def _spacing(spacing) -> str:
    dv, du = (float(x) for x in spacing)
    return f"{du:g}" if dv == du else f"{dv:g}×{du:g}"


def _scanner(scanner: Scanner | str | None, geometry: Geometry) -> Scanner:
    if scanner is None:
        return Scanner.preset("nikon_xt225" if geometry.beam == "cone" else "esrf_id19")
    if isinstance(scanner, str):
        return Scanner.preset(scanner)
    if not isinstance(scanner, Scanner):
        raise ValueError(f"scanner={type(scanner).__name__} is not allowed: give a Scanner or a preset name "
                         f"({', '.join(Scanner.presets())})")
    return scanner


def _focal_spot_sigma_px(scanner: Scanner, geometry: Geometry) -> float:
    """Focal-spot blur σ at the detector in pixels for an object at the axis: FWHM = spot × (M − 1)."""
    if geometry.beam != "cone" or not scanner.focal_spot_um:
        return 0.0
    fwhm_mm = scanner.focal_spot_um * 1e-3 * (geometry.magnification - 1)
    return fwhm_mm / FWHM_PER_SIGMA / geometry.det_spacing[1]


def _check_lengths(lengths: dict, materials: list[str], geometry: Geometry) -> None:
    shape = (geometry.n_views, *geometry.det_shape)
    for m in materials:
        if m not in lengths or np.shape(lengths[m]) != shape:
            raise ValueError(f"lengths[{m!r}] is not allowed: give path lengths of shape {shape} for every "
                             f"phantom material ({', '.join(materials)})")


def _acquire(key, lengths, materials, n_views, consts, detector, switches, n_bins, progress) -> np.ndarray:
    """Run the chain over chunks of views, round-robin over the compute devices, collecting as they finish."""
    rows, cols = detector.shape
    out = np.empty((n_views, rows, cols), np.float32)
    chunk = views_per_chunk(detector.shape, n_bins)
    devices = config.compute_devices()
    dev_consts = [jax.device_put(consts, d) for d in devices]
    pending: deque = deque()
    bar = tqdm(total=n_views, desc="simulate", unit="view", disable=not progress)
    chunk = min(chunk, n_views)
    for i, v0 in enumerate(range(0, n_views, chunk)):
        v1 = min(v0 + chunk, n_views)
        dev = i % len(devices)
        stack = np.zeros((len(materials), chunk, rows, cols), np.float32)   # the last chunk padded: one compile
        for j, m in enumerate(materials):
            stack[j, :v1 - v0] = lengths[m][v0:v1]
        res = acquire_views(jax.random.fold_in(key, v0), jax.device_put(stack, devices[dev]), dev_consts[dev],
                            detector, switches)
        pending.append((v0, v1, res))
        while len(pending) > len(devices):
            _collect(pending.popleft(), out, bar)
    while pending:
        _collect(pending.popleft(), out, bar)
    bar.close()
    return out


def _collect(item, out: np.ndarray, bar) -> None:
    v0, v1, res = item
    out[v0:v1] = np.asarray(res)[:v1 - v0]
    bar.update(v1 - v0)


def estimate_bytes(geometry: Geometry, n_materials: int, truth_grid: VolumeGrid | None = None,
                   truth: bool = True) -> int:
    """Peak memory (bytes) of :func:`simulate`, from the shapes: the per-material path lengths and the counts
    (float32, views × rows × cols each), the chain's working chunks (≤ 256 MiB per JAX device, two in flight),
    and with ``truth`` the voxelised phantom (one float32 fraction per material, μ and the labels) on
    ``truth_grid`` (default ``VolumeGrid.fit(geometry)``)."""
    pixels = geometry.n_views * geometry.det_shape[0] * geometry.det_shape[1]
    total = FLOAT32 * pixels * (n_materials + 1) + 2 * len(config.compute_devices()) * (1 << 28)
    if truth:
        try:
            grid = truth_grid or VolumeGrid.fit(geometry)
        except ValueError:          # no grid fits this detector: simulate() says so later
            return total
        total += FLOAT32 * int(np.prod(grid.shape)) * (n_materials + 2)
    return total


def _truth(phantom: Phantom, geometry: Geometry, grid: VolumeGrid | None, energy_kev: float) -> GroundTruth:
    grid = grid or VolumeGrid.fit(geometry)
    vox = phantom.voxelize(grid)
    mu = phantom.attenuation(grid, energy_kev, voxels=vox)
    return GroundTruth(mu=mu, grid=grid, energy_kev=energy_kev, labels=dict(vox.labels))


def _json_safe(value):
    """Phantom parameters as JSON-safe values (tuples → lists, numpy → Python)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


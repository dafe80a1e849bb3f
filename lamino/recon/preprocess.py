"""Projection preprocessing: flat/dark correction, ring suppression, beam-hardening linearisation, binning, cropping.

All functions take and return projections as (n_views, rows, cols) line integrals (dimensionless, float32
numpy arrays); functions that change the detector also return the matching :class:`~lamino.geometry.Geometry`.

- :func:`flat_dark_correct` is :func:`lamino.io.flat_dark_correct` (``−log((I − D) / (F − D))``), re-exported.
- :func:`suppress_rings` removes stripes (rings after reconstruction) by subtracting, from every detector pixel,
  the narrow high-pass part of its mean over views (Rivers 1998; median filtering as in Vo et al. 2018).
- :func:`linearize_beam_hardening` maps polychromatic ``−ln T`` to ``μ_ref · L`` of one material with a
  polynomial fitted from the known detected spectrum (water/material precorrection, Herman 1979).
- :func:`bin_projections` and :func:`crop_projections` change the detector sampling and update ``det_shape``,
  ``det_spacing`` and ``det_offset`` so that every object point still projects to the same place.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lamino import _checks
from lamino.geometry import Geometry
from lamino.io import flat_dark_correct
from lamino.materials import Material, get_material

__all__ = ["beam_hardening_curve", "bin_projections", "crop_projections", "flat_dark_correct",
           "linearize_beam_hardening", "suppress_rings"]

RING_METHODS = ("robust", "gaussian")


def _projections(proj, geometry: Geometry | None = None, finite: bool = True) -> np.ndarray:
    """``proj`` as a float32 (n_views, rows, cols) array, checked against ``geometry`` when given and, with
    ``finite``, for NaN and inf (a ValueError saying how many)."""
    arr = np.asarray(proj, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"projections with shape {arr.shape} are not allowed: give (n_views, rows, cols)")
    if finite:
        _checks.finite("projections", arr)
    if geometry is not None:
        if not isinstance(geometry, Geometry):
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino.geometry.Geometry")
        expected = (geometry.n_views, *geometry.det_shape)
        if arr.shape != expected:
            raise ValueError(f"projections with shape {arr.shape} are not allowed: the geometry expects {expected}")
    return arr


# ---------------------------------------------------------------------------------------------- rings
def suppress_rings(proj, sigma_px: float = 1.0, method: str = "robust", width_px: int | None = None,
                   iterations: int = 10) -> np.ndarray:
    """Remove detector stripes (ring artefacts) by high-pass filtering the per-pixel mean over views.

    A pixel with a wrong gain or offset adds the same value to every view of ``−ln T``: a stripe along the
    view axis of the sinogram, a ring (in CL a ring segment) in the reconstruction. Following Rivers (1998,
    GSECARS tutorial on microtomography data processing) the stripe profile ``s(r, c)`` is the high-pass part,
    along the detector columns u, of the mean over views ``m(r, c)``, and it is subtracted from every view:
    ``p'(i, r, c) = p(i, r, c) − s(r, c)``. A smooth object contributes a smooth mean and is left alone.

    ``method="gaussian"`` is Rivers' linear filter, ``s = m − G_σ * m`` (Gaussian of ``sigma_px`` along u).
    It leaves a fraction ≈ 1/(√(2π) σ) of a one-pixel stripe behind and takes ≈ σ²/2·m'' from curved parts
    of the object.

    ``method="robust"`` (default) separates *narrow* from *smooth* instead of high from low frequencies,
    with the median filtering used by Vo, Atwood & Drakopoulos (Opt. Express 26, 28396, 2018) to keep
    the object out of the stripe estimate. It iterates, from ``s = 0``::

        r = m − G_σ * (m − s)           # Rivers' high-pass, background smoothed from the destriped mean
        s = r − median_w(r)             # its narrow part: a running median of width w removes stripes
                                        # up to (w − 1)/2 pixels wide and keeps the smooth rest of r

    At the fixed point ``s`` is the stripe and ``m − s`` the smooth mean. Stripes wider than
    ``(w − 1)/2`` pixels and the smooth part of gain errors are indistinguishable from the object and stay.

    Args:
        proj: line integrals (n_views, rows, cols).
        sigma_px: Gaussian scale along u in detector pixels (> 0); small values spare the object.
        method: ``"robust"`` or ``"gaussian"``.
        width_px: median window w (odd, ≥ 3) for ``"robust"``; default ``2⌈2σ⌉ + 1``.
        iterations: fixed-point iterations of ``"robust"`` (≥ 1).

    Returns:
        Corrected projections, float32 (n_views, rows, cols).
    """
    p = _projections(proj)
    sigma = _checks.positive("sigma_px", sigma_px, " pixels")
    if method not in RING_METHODS:
        raise ValueError(f"method={method!r} is not allowed: use one of {', '.join(RING_METHODS)}")
    width = 2 * math.ceil(2 * sigma) + 1 if width_px is None else width_px
    if not _checks.is_int(width) or width < 3 or width % 2 == 0:
        raise ValueError(f"width_px={width_px!r} is not allowed: give an odd integer ≥ 3 (pixels)")
    n_iter = _checks.count("iterations", iterations)
    mean = p.mean(axis=0, dtype=np.float64)                             # (rows, cols)

    def smooth(x):
        return ndimage.gaussian_filter1d(x, sigma, axis=1, mode="nearest")

    if method == "gaussian":
        stripe = mean - smooth(mean)
    else:
        stripe = np.zeros_like(mean)
        for _ in range(n_iter):
            r = mean - smooth(mean - stripe)
            stripe = r - ndimage.median_filter(r, size=(1, width), mode="nearest")
    return (p - stripe[None]).astype(np.float32)


# ---------------------------------------------------------------------------------------------- beam hardening
def beam_hardening_curve(energies_kev, weights, material: str | Material, thickness_mm) -> np.ndarray:
    """Polychromatic line integral ``−ln(Σ_E w_E exp(−μ(E) t) / Σ_E w_E)`` for thicknesses ``t`` (mm).

    ``weights`` is the detected (energy-integrating: energy-weighted) spectrum per energy bin; only its shape
    matters. Returns an array shaped like ``thickness_mm``.
    """
    e, w, mat = _spectrum(energies_kev, weights, material)
    t = np.asarray(thickness_mm, dtype=float)
    _checks.finite("thickness_mm", t)
    mu = np.asarray(mat.mu(e), dtype=float)
    trans = np.exp(-np.multiply.outer(t, mu)) @ (w / w.sum())
    return -np.log(trans)


def _spectrum(energies_kev, weights, material) -> tuple[np.ndarray, np.ndarray, Material]:
    e = np.atleast_1d(np.asarray(energies_kev, dtype=float))
    w = np.atleast_1d(np.asarray(weights, dtype=float))
    if e.ndim != 1 or e.size < 1 or not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"energies_kev with shape {e.shape} is not allowed: give a 1-D list of energies > 0 keV")
    if w.shape != e.shape or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights with shape {w.shape} is not allowed: give {e.size} finite weights ≥ 0, "
                         "not all zero, one per energy")
    mat = material if isinstance(material, Material) else get_material(material)
    return e, w, mat


def linearize_beam_hardening(proj, energies_kev, weights, material: str | Material, max_thickness_mm: float,
                             degree: int = 3, reference_kev: float | None = None,
                             n_samples: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Beam-hardening precorrection: a polynomial that maps polychromatic ``−ln T`` to ``μ_ref · L``.

    For thicknesses ``L`` in [0, ``max_thickness_mm``] of ``material`` the polychromatic line integral
    ``p(L) = −ln(Σ_E w_E e^{−μ(E) L} / Σ_E w_E)`` is computed from the known spectrum and the polynomial
    ``q(p) = Σ_{k=1..degree} c_k p^k`` (no constant: q(0) = 0) is fitted by least squares to ``μ_ref · L``
    on ``n_samples`` thicknesses evenly spaced in ``L`` (the classic single-material precorrection, e.g.
    Herman, "Correction for beam hardening in computed tomography", Phys. Med. Biol. 24, 81, 1979).

    Reference: ``μ_ref`` is the spectrum-weighted mean attenuation ``μ̄ = Σ w_E μ(E) / Σ w_E`` by default —
    the slope of ``p(L)`` at ``L = 0``, so thin parts keep their values and corrected data are line integrals
    of ``μ̄`` (the μ of the monochromatic energy ``E_eff`` with ``μ(E_eff) = μ̄``). Give ``reference_kev`` to
    use ``μ(reference_kev)`` instead. Values of ``−ln T`` beyond ``p(max_thickness_mm)`` are extrapolated.

    Args:
        proj: polychromatic line integrals ``−ln T`` (n_views, rows, cols) (any shape is accepted).
        energies_kev: spectrum energy bins (keV).
        weights: detected, energy-weighted spectrum per bin (e.g. N(E)·η(E)·E); any scale.
        material: a material name of :func:`lamino.materials.get_material` or a :class:`Material`.
        max_thickness_mm: largest path length through the material in the data (mm).
        degree: polynomial degree (≥ 1).
        reference_kev: energy of the reference μ, or None for the spectral mean μ̄.
        n_samples: thickness samples for the fit (≥ degree + 1).

    Returns:
        ``(corrected, coefficients)``: corrected float32 projections and the coefficients
        ``[0, c_1, …, c_degree]`` in ascending powers (``numpy.polynomial.polynomial.polyval`` order).
    """
    p = np.asarray(proj, dtype=np.float32)
    _checks.finite("projections", p)
    e, w, mat = _spectrum(energies_kev, weights, material)
    t_max = _checks.positive("max_thickness_mm", max_thickness_mm, " mm")
    if not _checks.is_int(degree) or not 1 <= degree <= 8:
        raise ValueError(f"degree={degree!r} is not allowed: give an integer from 1 to 8")
    if not _checks.is_int(n_samples) or n_samples < degree + 1:
        raise ValueError(f"n_samples={n_samples!r} is not allowed: give an integer ≥ degree + 1 = {degree + 1}")
    mu = np.asarray(mat.mu(e), dtype=float)
    if reference_kev is None:
        mu_ref = float(np.sum(w * mu) / np.sum(w))
    else:
        mu_ref = float(mat.mu(_checks.positive("reference_kev", reference_kev, " keV")))
    t = np.linspace(0.0, t_max, int(n_samples))
    poly = beam_hardening_curve(e, w, mat, t)
    scale = float(poly[-1])                                 # fit in p / p_max for conditioning
    basis = np.stack([(poly / scale) ** k for k in range(1, degree + 1)], axis=1)
    c_scaled, *_ = np.linalg.lstsq(basis, mu_ref * t, rcond=None)
    coeffs = np.concatenate([[0.0], c_scaled / scale ** np.arange(1, degree + 1)])
    corrected = np.polynomial.polynomial.polyval(p.astype(np.float64), coeffs).astype(np.float32)
    return corrected, coeffs


# ---------------------------------------------------------------------------------------------- detector sampling
def _resampled_geometry(geometry: Geometry, det_shape: tuple[int, int], factors: tuple[int, int],
                        shift_px: tuple[float, float]) -> Geometry:
    """``geometry`` with a new detector whose pixel (0, 0) … grid is the old one scaled by ``factors`` (v, u)
    and whose centre moved by ``shift_px`` = (rows, cols) old pixels along the detector's v and u axes.

    The detector centre moves in its own (possibly rolled) plane: with roll ρ, u = (cos ρ, −sin ρ) and
    v = (sin ρ, cos ρ) in lab (x, z), so ``det_offset`` (v, u), which is in lab z and x, changes by
    Δ_u·du·(−sin ρ, cos ρ) + Δ_v·dv·(cos ρ, sin ρ).
    """
    fv, fu = factors
    dr, dc = shift_px
    if geometry.custom_vectors is not None:
        vec = np.asarray(geometry.vectors(), dtype=float).copy()
        vec[:, 3:6] += dc * vec[:, 6:9] + dr * vec[:, 9:12]
        vec[:, 6:9] *= fu
        vec[:, 9:12] *= fv
        return Geometry.from_vectors(vec, det_shape, beam=geometry.beam)
    dv, du = geometry.det_spacing
    v_off, u_off = geometry.det_offset
    roll = math.radians(geometry.det_roll_deg)
    u_off += dc * du * math.cos(roll) + dr * dv * math.sin(roll)
    v_off += -dc * du * math.sin(roll) + dr * dv * math.cos(roll)
    return geometry.replace(det_shape=det_shape, det_spacing=(dv * fv, du * fu), det_offset=(v_off, u_off))


def bin_projections(proj, geometry: Geometry, factor: int | tuple[int, int]) -> tuple[np.ndarray, Geometry]:
    """Average ``factor`` × ``factor`` (or (fv, fu)) detector pixels; returns ``(binned, geometry)``.

    Rows and columns that do not fill a whole bin (the last ``rows % fv`` rows, ``cols % fu`` columns) are
    dropped and ``det_offset`` moves the detector centre to the centre of the kept pixels, so that the binned
    pixel centres are the centroids of their fine pixels and every object point projects to the same place.
    Works for parallel, cone and :meth:`Geometry.from_vectors` geometries (detector roll included).
    """
    p = _projections(proj, geometry)
    pair = (factor, factor) if _checks.is_int(factor) else tuple(np.atleast_1d(factor).tolist())
    if len(pair) != 2 or not all(_checks.is_int(x) and x >= 1 for x in pair):
        raise ValueError(f"factor={factor!r} is not allowed: give an integer ≥ 1 or a pair (fv, fu) of them")
    fv, fu = int(pair[0]), int(pair[1])
    n, rows, cols = p.shape
    nr, nc = rows // fv, cols // fu
    if nr < 1 or nc < 1:
        raise ValueError(f"factor={factor!r} is not allowed: it exceeds the detector shape {(rows, cols)}")
    binned = p[:, :nr * fv, :nc * fu].reshape(n, nr, fv, nc, fu).mean(axis=(2, 4), dtype=np.float64)
    # kept pixels 0 … nr·fv − 1 are centred at old index (nr·fv − 1)/2, the old centre is at (rows − 1)/2
    shift = ((nr * fv - rows) / 2, (nc * fu - cols) / 2)
    return binned.astype(np.float32), _resampled_geometry(geometry, (nr, nc), (fv, fu), shift)


def _slice(s: slice | None, n: int, name: str) -> tuple[int, int]:
    if s is None:
        return 0, n
    if not isinstance(s, slice):
        raise ValueError(f"{name}={s!r} is not allowed: give a slice (e.g. slice(10, 90)) or None")
    start, stop, step = s.indices(n)
    if step != 1 or stop <= start:
        raise ValueError(f"{name}={s!r} is not allowed: give a non-empty slice with step 1 within 0…{n}")
    return start, stop


def crop_projections(proj, geometry: Geometry, rows: slice | None = None,
                     cols: slice | None = None) -> tuple[np.ndarray, Geometry]:
    """Keep detector ``rows`` and ``cols`` (slices with step 1, None = all); returns ``(cropped, geometry)``.

    ``det_offset`` moves the detector centre to the centre of the kept region so that every object point
    projects onto the same pixel as before (shifted by the crop start). NaN or inf are allowed only outside the
    kept region (cropping bad edges away is allowed).
    """
    p = _projections(proj, geometry, finite=False)
    _, n_rows, n_cols = p.shape
    r0, r1 = _slice(rows, n_rows, "rows")
    c0, c1 = _slice(cols, n_cols, "cols")
    shift = (r0 + (r1 - r0 - 1) / 2 - (n_rows - 1) / 2, c0 + (c1 - c0 - 1) / 2 - (n_cols - 1) / 2)
    cropped = np.ascontiguousarray(p[:, r0:r1, c0:c1])
    _checks.finite("cropped projections", cropped)
    return cropped, _resampled_geometry(geometry, (r1 - r0, c1 - c0), (1, 1), shift)

"""The acquisition chain, jitted: path lengths → expected photons per energy bin → detector readout.

For a chunk of views with per-material path lengths L_m (mm), attenuation table μ_m(E) (1/mm) and detected
photons per pixel and bin N(E) = N₀(E)·T_cover(E)·η(E) (flux after tube filtration, detector cover and
scintillator absorption), the expected photons are λ_E = N(E)·f(u, v)·exp(−Σ_m μ_m(E)·L_m), f the flux falloff.
The chain then follows design.md: Poisson per bin → energy weighting w(E) → blur (PSF) → gain, dead and hot
pixels → read noise → offset, quantisation, saturation (each detector frame, when a projection averages
several). The energy sum is contracted once per pixel (three moments Σλ, Σwλ, Σw²λ), so the energy bins cost
one small matrix product, never a projection each.
Focal-spot blur and scatter act on the expected photons, before noise, as they do physically.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lamino.simulate.detector import Detector, blur, frame_average, readout
from lamino.simulate.noise import binned_poisson, compound_poisson, poisson


class ChainConstants(NamedTuple):
    """Per-scan arrays of the chain (float32, device-ready)."""

    mu: jax.Array             # (M, E) 1/mm
    photons: jax.Array        # (E,) detected photons per pixel per projection at full flux (falloff 1)
    weights: jax.Array        # (E,) detector units per absorbed photon
    falloff: jax.Array        # (R, C) relative flux per pixel
    psf: jax.Array            # detector PSF kernel (sums to 1)
    focal_spot: jax.Array     # focal-spot blur kernel at the detector (sums to 1)
    scatter: jax.Array        # scatter kernel (sums to 1)
    spr: jax.Array            # scatter-to-primary ratio (scalar)
    maps: dict                # detector pixel maps (gain, drift, dead, hot)


class ChainSwitches(NamedTuple):
    """Static switches of the chain (each stage can be turned off)."""

    noise: bool = True
    blur: bool = True
    focal_spot: bool = False
    scatter: bool = False
    exact_bins: bool = False
    frames: int = 1           # detector frames averaged into one projection (Scanner.frames_per_projection)


def expected_photons(lengths: jax.Array, c: ChainConstants) -> jax.Array:
    """λ_E (..., R, C, E): expected detected photons per energy bin; ``lengths`` (M, ..., R, C) in mm."""
    tau = jnp.tensordot(jnp.moveaxis(lengths, 0, -1), c.mu, axes=1)          # (..., R, C, E)
    return c.photons * jnp.exp(-tau) * c.falloff[..., None]


def expected_moments(lengths: jax.Array, c: ChainConstants) -> jax.Array:
    """(3, ..., R, C): Σ_E λ_E, Σ_E w_E λ_E, Σ_E w_E² λ_E without materialising λ (one fused pass per bin)."""
    coeff = jnp.stack([c.photons, c.photons * c.weights, c.photons * c.weights**2])      # (3, E)

    def add_bin(e, acc):
        tau = sum((lengths[m] * c.mu[m, e] for m in range(lengths.shape[0])), jnp.zeros(lengths.shape[1:]))
        return acc + coeff[:, e].reshape((3,) + (1,) * tau.ndim) * jnp.exp(-tau)

    acc = jnp.zeros((3, *lengths.shape[1:]), jnp.float32)
    return jax.lax.fori_loop(0, coeff.shape[1], add_bin, acc) * c.falloff


def _per_bin(s: ChainSwitches) -> bool:
    """Whether the chain needs λ per energy bin (exact per-bin Poisson draws)."""
    return s.noise and s.exact_bins and not (s.focal_spot or s.scatter)


def detect(key: jax.Array, signal_in: jax.Array, c: ChainConstants, detector: Detector, s: ChainSwitches,
           flat: bool) -> jax.Array:
    """Detector signal (..., R, C) in detector units from expected photons: λ per bin (..., R, C, E) when
    :func:`_per_bin`, else the moments (3, ..., R, C) of :func:`expected_moments`."""
    key_photons, key_read = jax.random.split(key)
    if _per_bin(s):
        signal = binned_poisson(key_photons, signal_in, c.weights)
    else:
        mom = signal_in
        if s.focal_spot:
            mom = blur(mom, c.focal_spot)
        if s.scatter and not flat:
            mom = mom + c.spr * blur(mom, c.scatter)
        if not s.noise:
            signal = mom[1]
        elif detector.mode == "counting":     # Σ of 0/1-weighted Poisson bins is Poisson with mean Σwλ
            signal = poisson(key_photons, mom[1])
        else:
            signal = compound_poisson(key_photons, mom[0], mom[1], mom[2])
    if s.blur:
        signal = blur(signal, c.psf)
    if flat or s.frames == 1:
        return readout(signal, detector, c.maps, key_read, s.noise, flat)
    return frame_average(signal, detector, c.maps, key_read, s.noise, s.frames)


@functools.partial(jax.jit, static_argnames=("detector", "switches"))
def acquire_views(key: jax.Array, lengths: jax.Array, c: ChainConstants, detector: Detector,
                  switches: ChainSwitches) -> jax.Array:
    """Raw projections (V, R, C) float32 from per-material path lengths (M, V, R, C) mm."""
    expected = expected_photons(lengths, c) if _per_bin(switches) else expected_moments(lengths, c)
    return detect(key, expected, c, detector, switches, flat=False)


@functools.partial(jax.jit, static_argnames=("detector", "switches", "n_flats", "n_darks"))
def reference_frames(key: jax.Array, c: ChainConstants, detector: Detector, switches: ChainSwitches,
                     n_flats: int, n_darks: int) -> tuple[jax.Array, jax.Array]:
    """Averaged flat (open beam) and dark (no beam) frames (R, C), each the mean of its frames, as scanners do."""
    rows, cols = c.falloff.shape
    beam = (jnp.arange(n_flats + n_darks) < n_flats).astype(jnp.float32)            # flats first, then darks
    nothing = jnp.zeros((0, n_flats + n_darks, rows, cols), jnp.float32)              # no material in the beam
    expected = expected_photons(nothing, c) if _per_bin(switches) else expected_moments(nothing, c)
    # each flat frame is exposed as long as one frame of a projection (the exposure / switches.frames)
    beam = beam / switches.frames
    expected = expected * (beam[:, None, None, None] if _per_bin(switches) else beam[None, :, None, None])
    frames = detect(key, expected, c, detector, switches, flat=True)
    return frames[:n_flats].mean(0), frames[n_flats:].mean(0)


def views_per_chunk(det_shape: tuple[int, int], n_bins: int, budget_bytes: int = 1 << 28) -> int:
    """Views per jitted call so the (V, R, C, E) float32 photon array stays within ``budget_bytes``.

    Depends only on the detector and the energy grid, so a seed gives the same data on any machine.
    """
    per_view = det_shape[0] * det_shape[1] * max(n_bins, 3) * 4
    return int(max(1, min(64, budget_bytes // per_view)))


def as_constants(mu, photons, weights, falloff, psf, focal_spot, scatter, spr, maps) -> ChainConstants:
    """Pack numpy inputs into float32 :class:`ChainConstants` (masks stay boolean)."""
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    maps = {k: jnp.asarray(v) if np.asarray(v).dtype == bool else f32(v) for k, v in maps.items()}
    return ChainConstants(f32(mu), f32(photons), f32(weights), f32(falloff), f32(psf), f32(focal_spot),
                          f32(scatter), f32(spr), maps)

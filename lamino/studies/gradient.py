"""Gradient of a study's reconstruction error with respect to the tilt angle, through the differentiable projector.

The full study pipeline (exact ray tracing, Poisson noise, FBP, thresholded crack metrics) is not
differentiable, so the planner offers the derivative of a smooth surrogate that keeps CL's trade-off:

- data: noise-free line integrals y(α) = A(α) μ of the truth μ (the point's effective energy) on a grid
  ``coarsen`` times coarser than the study's;
- reconstruction: K Landweber iterations x_{k+1} = x_k + τ A(α)ᵀ (y − A(α) x_k) from x_0 = 0, τ = 1/‖A(α₀)‖²,
  a linear operator x_K = R(α) y;
- noise: Poisson statistics give −log data of variance σ²(α) = exp(A(α) μ) / N₀ per pixel (N₀ detected photons
  per pixel of the flat), so the expected squared error is

      E‖x_K − μ‖² = ‖R y − μ‖² + trace(R Σ Rᵀ),   Σ = diag σ²,

  the trace by Hutchinson's estimator with a few fixed Gaussian probes z: E‖R(σ ⊙ z)‖²;
- objective: the expected RMSE √(E‖x_K − μ‖² / n_voxels) (1/mm): larger tilts shorten the path through a flat
  sample (h / sin α: less noise) but widen the missing cone (1 − cos α: more bias).

``jax.grad`` differentiates it with respect to α through :class:`~lamino.projector.Projector` built from a
traced geometry (design.md: the projector is differentiable in ``tilt_deg``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lamino import _checks
from lamino.projector import Projector
from lamino.recon import coarser_grid, operator_norm
from lamino.simulate.simulate import detected_spectrum
from lamino.studies.build import build_geometry, build_scanner, study_grid
from lamino.studies.spec import StudySpec


def expected_rmse_function(spec: StudySpec, point: dict[str, Any], iterations: int = 10, probes: int = 2,
                           coarsen: int = 1, seed: int = 0):
    """``f(tilt_deg) -> expected RMSE (1/mm)`` of the surrogate in the module docstring, for ``point``'s
    scanner, views and exposure; a JAX function (jit / grad it). ``seed`` (in [0, 2**32)) draws the probes."""
    from lamino import phantoms

    seed = _checks.seed("seed", seed)

    scanner = build_scanner(spec, point)
    grid = study_grid(spec)
    for _ in range(coarsen):
        grid = coarser_grid(grid)
    geometry0 = build_geometry(spec, point, scanner)
    detected = detected_spectrum(scanner, geometry0, n_bins=spec.simulate.get("n_bins", 32))
    n0 = float(np.sum(detected.photons))
    energy = detected.effective_energy_kev
    p = spec.phantom
    mu = jnp.asarray(phantoms.get(p["name"], seed=p["seed"], **p["params"]).attenuation(grid, energy))
    tau = 1.0 / operator_norm(Projector(geometry0, grid)) ** 2
    shape = (geometry0.n_views, *geometry0.det_shape)
    z = jax.random.normal(jax.random.key(seed), (probes, *shape), jnp.float32)

    def f(tilt):
        forward = Projector(build_geometry(spec, {**point, "tilt_deg": tilt}, scanner), grid).forward
        y = forward(mu)
        sigma = jnp.sqrt(jnp.exp(y) / n0)
        data = jnp.concatenate([y[None], sigma[None] * z])      # R is linear: bias and noise probes together

        def step(x, _):
            residual, pullback = jax.vjp(jax.vmap(forward), x)
            (g,) = pullback(data - residual)
            return x + tau * g, None

        x, _ = jax.lax.scan(step, jnp.zeros((probes + 1, *grid.shape), jnp.float32), None, length=iterations)
        bias = jnp.sum((x[0] - mu) ** 2)
        variance = jnp.mean(jnp.sum(x[1:] ** 2, axis=(1, 2, 3)))
        return jnp.sqrt((bias + variance) / mu.size)

    return f


def tilt_gradient(spec: StudySpec, point: dict[str, Any], iterations: int = 10, probes: int = 2,
                  coarsen: int = 1) -> dict[str, float] | None:
    """The surrogate's expected RMSE (1/mm) at ``point``'s tilt and its derivative per degree of tilt; None for
    a limited-angle CT trajectory (no tilt to differentiate)."""
    if point.get("trajectory", "cl") != "cl":
        return None
    f = expected_rmse_function(spec, point, iterations, probes, coarsen)
    value, slope = jax.jit(jax.value_and_grad(f))(jnp.float32(point["tilt_deg"]))
    return {"tilt_deg": float(point["tilt_deg"]), "expected_rmse_per_mm": float(value),
            "d_expected_rmse_d_tilt_per_deg": float(slope)}

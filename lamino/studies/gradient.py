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

**Detectability** (issue 17: the gradient of d′). For the d′ metrics (:mod:`lamino.studies.metrics.detectability`)
the same linearised chain gives the NPW d′ of a task in closed form. With y = A(α)μ the line integrals,
Poisson noise of variance σ²(α) = exp(y)/N (N the effective counts per pixel of the open beam, (Σ n w)²/Σ n w²
over the detected spectrum), the filtered backprojection R(α) = A(α)ᵀH (H the ramp along detector rows) and
the task's contrast Δμ (its coverage × (μ_signal − μ_background)), the expected reconstructed signal on the
task's zone Z is s = 1_Z ⊙ R A Δμ and

    d′(α) = ‖s‖² / ‖σ ⊙ H A s‖²^(1/2)          (sᵀ R Σ Rᵀ s = ‖σ ⊙ Rᵀ s‖², H = Hᵀ)

— eq. (1) of :mod:`~lamino.studies.metrics.detectability` with the exact covariance of this linear model
instead of a measured one. It is invariant to the scale of R, so FBP's angular weights and sin θ / 2 drop out.
Each task is projected on a box around its zone (the signal on a box three times finer, which the voxel
projector needs to see a small pore as sharply as exact rays do); y on a coarse grid covering the whole
sample. A cone beam is taken as the parallel beam of its magnified pixel (the d′ of the quickstart's pores
differed by 0.1 %). :func:`dprime_slopes` gives d′ and dd′/dα for a study's d′ metrics at a point.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lamino import _checks
from lamino.geometry import Geometry, VolumeGrid
from lamino.materials import get_material
from lamino.phantoms.scene import VOID
from lamino.projector import Projector
from lamino.recon import coarser_grid, operator_norm
from lamino.recon.filters import filter_rows
from lamino.simulate.simulate import DetectedSpectrum, detected_spectrum
from lamino.studies.build import build_geometry, build_scanner, study_grid
from lamino.studies.metrics.detectability import task_zones
from lamino.studies.spec import StudySpec
from lamino.studies.tasks import Task, counted_by, coverage, median_dprime_metric


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


# ---------------------------------------------------------------------------------------------- d′
SIGNAL_SUPERSAMPLING = 3        # the signal's box is this many times finer than the study grid
BACKGROUND_VOXEL_MM = 0.1       # the coarse grid on which y = Aμ gives the noise, at most this fine


def effective_counts(d: DetectedSpectrum) -> float:
    """N = (Σ n w)² / Σ n w² over the detected spectrum ``d`` of an open-beam pixel per view (n photons per bin,
    w the detector's energy weights): the Poisson counts with the same relative variance (Swank)."""
    signal = d.photons * d.weights
    return float(np.sum(signal) ** 2 / np.sum(d.photons * d.weights ** 2))


def parallel_equivalent(geometry_at, tilt):
    """``geometry_at(tilt)`` as a parallel beam: a cone beam's detector pixel divided by its magnification sdd/sod
    (the rays through one small task are nearly parallel)."""
    g = geometry_at(tilt)
    if g.beam == "parallel":
        return g
    mag = g.sdd / g.sod
    return Geometry.parallel(tilt_deg=g.tilt_deg, n_views=g.n_views, det_shape=g.det_shape,
                             det_spacing=tuple(s / mag for s in g.det_spacing), angles_deg=g.angles_deg)


def _box(zone: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A ``shape`` box of voxels centred on ``zone``'s bounding box, inside the grid."""
    idx = np.nonzero(zone)
    out = []
    for i, n, b in zip(idx, zone.shape, shape, strict=True):
        start = min(max(0, (int(i.min()) + int(i.max()) + 1) // 2 - b // 2), max(0, n - b))
        out.append(slice(start, start + b))
    return tuple(out)


def _centre_mm(grid: VolumeGrid, box: tuple[slice, ...]) -> np.ndarray:
    """(x, y, z) mm of the centre of the voxel ``box`` of ``grid``."""
    zyx = [grid.center[i] + ((s.start + s.stop - 1) / 2 - (grid.shape[i] - 1) / 2) * grid.voxel_size[i]
           for i, s in enumerate(box)]
    return np.array(zyx[::-1], np.float32)


def dprime_model(geometry_at, grid: VolumeGrid, tasks: list[Task], mu_of, counts: float, background: np.ndarray,
                 background_grid: VolumeGrid, region=None):
    """The linearised chain's NPW d′ (module docstring) of each of ``tasks`` as a JAX function of the tilt:
    ``value_and_slope(k, tilt)`` → (d′, dd′/dα per degree) of task ``k`` (NaN, NaN for a task without a zone in
    ``region``), compiled once for all tasks.

    ``geometry_at(tilt)``: the acquisition geometry (a traced tilt too); ``grid``: the reconstruction grid;
    ``mu_of(material)``: μ (1/mm) at the effective energy (0 for ``"void"``); ``counts``: N
    (:func:`effective_counts`); ``background``: μ of the whole sample on ``background_grid``."""
    zones = task_zones([coverage(t, grid) > 0 for t in tasks], region=region)
    present = [z.any() for z in zones]
    extent = [max((int(np.ptp(np.nonzero(z)[a])) + 1 for z, ok in zip(zones, present, strict=True) if ok),
                  default=1) for a in range(3)]
    shape = tuple(min(e + 4, n) for e, n in zip(extent, grid.shape, strict=True))
    box_grid = VolumeGrid(shape, grid.voxel_size, (0.0, 0.0, 0.0))
    k = SIGNAL_SUPERSAMPLING
    fine_grid = VolumeGrid(tuple(b * k for b in shape), tuple(v / k for v in grid.voxel_size), (0.0, 0.0, 0.0))
    inputs = []
    for t, z, ok in zip(tasks, zones, present, strict=True):
        if not ok:
            inputs.append(None)
            continue
        box = _box(z, shape)
        centre = _centre_mm(grid, box)
        fine = VolumeGrid(fine_grid.shape, fine_grid.voxel_size, tuple(float(c) for c in centre[::-1]))
        contrast = coverage(t, fine) * np.float32(mu_of(t.signal) - mu_of(t.background))
        inputs.append((jnp.asarray(centre), jnp.asarray(contrast, jnp.float32), jnp.asarray(z[box])))
    g0 = parallel_equivalent(geometry_at, 0.0)
    du = float(g0.det_spacing[1])
    mu_bg = jnp.asarray(background, jnp.float32)

    def variance_at(tilt):
        g = parallel_equivalent(geometry_at, tilt)
        return jnp.exp(Projector(g, background_grid).forward(mu_bg)) / counts

    variance_and_rate = jax.jit(lambda t: jax.jvp(variance_at, (t,), (jnp.ones_like(t),)))

    def dprime(tilt, tilt0, variance0, rate, centre, contrast, zone):
        """d′ at ``tilt``; the noise variance σ²(α) is shared by all tasks, so it is computed once per tilt
        (``variance0`` at ``tilt0``) with its derivative ``rate``, exact at tilt = tilt0."""
        g = parallel_equivalent(geometry_at, tilt)
        vec = jnp.asarray(g.vectors(), jnp.float32)
        moved = Geometry.from_vectors(vec.at[:, 3:6].add(-centre), g.det_shape, "parallel")   # the box at 0
        signal_projector = Projector(moved, fine_grid).forward
        box_projector = Projector(moved, box_grid).forward
        variance = variance0 + (tilt - tilt0) * rate
        filtered = filter_rows(signal_projector(contrast), du)
        _, backproject = jax.vjp(box_projector, jnp.zeros(box_grid.shape, jnp.float32))
        s = jnp.where(zone, backproject(filtered)[0], 0.0)
        noise = filter_rows(box_projector(s), du)
        return jnp.sum(s * s) / jnp.sqrt(jnp.sum(variance * noise * noise))

    both = jax.jit(jax.value_and_grad(dprime))
    noise: dict[float, tuple] = {}

    def value_and_slope(i: int, tilt: float) -> tuple[float, float]:
        if inputs[i] is None:
            return math.nan, math.nan
        t = jnp.float32(tilt)
        if tilt not in noise:
            noise.clear()
            noise[tilt] = variance_and_rate(t)
        value, slope = both(t, t, *noise[tilt], *inputs[i])
        return float(value), float(slope)

    return value_and_slope


def _members(metric: str, tasks: list[Task]) -> list[int] | None:
    """The indices of the tasks whose median d′ is ``metric``; None when ``metric`` is not a d′ median."""
    if not median_dprime_metric(metric):
        return None
    counted = counted_by(metric)
    return [i for i, t in enumerate(tasks) if counted(t)]


def _median_and_slope(values: list[tuple[float, float]]) -> tuple[float, float]:
    """The median of the values and its derivative (that of the middle one, or the mean of the two middle)."""
    finite = sorted((v, s) for v, s in values if math.isfinite(v))
    if not finite:
        return math.nan, math.nan
    n = len(finite)
    middle = finite[(n - 1) // 2: n // 2 + 1]
    return float(np.mean([v for v, _ in middle])), float(np.mean([s for _, s in middle]))


def dprime_slopes(spec: StudySpec, point: dict[str, Any], metrics,
                  spread_deg: float = 0.0) -> dict[str, tuple[float, float]] | None:
    """(d′, dd′/dα per degree) of the linearised chain (module docstring) for each d′ metric of ``metrics`` at
    ``point`` (its phantom instance, scanner, views and exposure; the study's tasks and measured region): the
    median over the metric's tasks, as the study scores it. ``spread_deg`` > 0 averages each task's slope over
    five tilts evenly spread over ± that. None for a limited-angle CT trajectory or when no metric of
    ``metrics`` is a d′ metric."""
    from lamino.studies.point import _phantom, _voxels, scoring_region
    from lamino.studies.tasks import builtin_tasks, user_tasks

    wanted = [m for m in metrics if median_dprime_metric(m)]
    if point.get("trajectory", "cl") != "cl" or not wanted:
        return None
    phantom, key = _phantom(spec, point)
    grid = study_grid(spec)
    voxels = _voxels(phantom, key, grid)
    region = scoring_region(spec, grid)
    tasks = builtin_tasks(phantom) + (user_tasks(spec.tasks, phantom, voxels, region) if spec.tasks else [])
    needed = sorted({i for m in wanted for i in (_members(m, tasks) or [])})
    if not needed:
        return {m: (math.nan, math.nan) for m in wanted}
    scanner = build_scanner(spec, point)
    geometry = build_geometry(spec, point, scanner)
    detected = detected_spectrum(scanner, geometry, n_bins=spec.simulate.get("n_bins", 32))
    energy, counts = detected.effective_energy_kev, effective_counts(detected)
    size = phantom.sample_size                     # (z, y, x) mm, a box centred on the origin
    voxel = max(max(grid.voxel_size), max(size) / 96, BACKGROUND_VOXEL_MM)
    background_grid = VolumeGrid(tuple(int(math.ceil(s / voxel)) + 2 for s in size), voxel)

    def mu_of(material: str) -> float:
        if material == VOID:
            return 0.0
        return float((phantom.materials.get(material) or get_material(material)).mu(energy))

    chosen = [tasks[i] for i in needed]
    value_and_slope = dprime_model(lambda t: build_geometry(spec, {**point, "tilt_deg": t}, scanner), grid,
                                      chosen, mu_of, counts, phantom.attenuation(background_grid, energy),
                                      background_grid, region)
    tilt = float(point["tilt_deg"])
    offsets = np.linspace(-spread_deg, spread_deg, 5) if spread_deg > 0 else np.zeros(1)
    values: dict[int, float] = {}
    slopes: dict[int, list[float]] = {i: [] for i in needed}
    for d in offsets:                         # (the tasks share the noise of one tilt: tilts outermost)
        for j, i in enumerate(needed):
            value, slope = value_and_slope(j, tilt + float(d))
            slopes[i].append(slope)
            if d == 0:
                values[i] = value
    per_task = {i: (values[i], float(np.mean(slopes[i]))) for i in needed}
    return {m: _median_and_slope([per_task[i] for i in (_members(m, tasks) or [])]) for m in wanted}

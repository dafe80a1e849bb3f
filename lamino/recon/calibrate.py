"""Geometry calibration from the projections alone: centre of rotation, tilt, detector roll and u offset.

:func:`calibrate` estimates misaligned :class:`~lamino.geometry.Geometry` parameters θ by **projection
matching** (re-projection / data-consistency alignment, cf. Gürsoy et al., Sci. Rep. 7, 11818, 2017): θ is
right when a reconstruction x from the data b, projected again with θ, explains b. The objective is the
relative misfit of the variable-projection problem (Golub & Pereyra, SIAM J. Numer. Anal. 10, 413, 1973)

    F(θ) = min_x ‖A(θ) x − b‖² / ‖b‖²

with A(θ) the lamino projector built from the geometry with θ substituted. It works coarse to fine:

1. **Coarse scan** on binned projections (:func:`~lamino.recon.preprocess.bin_projections`), every k-th view
   and a grid with ``coarse_bin`` times larger voxels: for each parameter in turn, ``points`` values around
   the current estimate, each scored by F with x from ``iterations`` CGLS iterations from zero; a parabola
   through the best value and its neighbours refines it. A second sweep, one grid step wide, follows.
   Scanning rather than descending steps over the local minima of F far from the optimum.
2. **Fine refinement** at full resolution: Gauss–Newton steps on F through the differentiable projector.
   The Jacobian J = ∂(A(θ) x)/∂θ comes from forward-mode ``jax.jvp`` through
   :class:`lamino.projector.Projector` with a geometry that holds JAX tracers. Because x follows θ,
   the step uses the reduced Jacobian (I − P_A) J of the variable-projection method (Kaufman, BIT 15, 49,
   1975), P_A J_j = A y_j with y_j from CGLS; with x held fixed instead (plain alternating minimisation)
   the steps are far too short and the estimate crawls. Each step also runs ``iterations`` more CGLS
   iterations on x (warm start), so x converges while θ does. It stops after two steps below ``tol``.

CGLS (Hestenes & Stiefel 1952; Björck, *Numerical Methods for Least Squares Problems*, 1996, §7.4) uses the
projector's exact adjoint. Everything that depends on θ is jitted with θ as an argument, once per level and
(geometry, grid) in a process, so scanning and stepping compile nothing new.

Parameters (``params``; all estimates are changes of the given, nominal ``geometry``):

- ``cor_offset``: rotation-axis offset along lab x at the object (mm); a pixel at the object is du / M.
- ``tilt_deg``: axis tilt α (degrees). Only the detector v-coordinate of in-plane structure depends on it
  (∝ sin α, u does not), so it is measured by features away from the axis: a larger lever arm gives a
  better estimate. Flat homogeneous layers sit in the missing cone and carry little information on α.
- ``det_roll_deg``: detector roll about the beam axis (degrees), about the detector centre.
- ``det_offset_u``: detector shift along lab x (mm). In parallel beam it is the same shift as
  ``−cor_offset`` (not allowed together); in cone beam the two differ only by parallax and are nearly
  degenerate: estimate one of them.

The reconstruction grid must hold the whole sample; signal from outside it, truncated views, and strong
model errors (e.g. sharp features much smaller than a voxel) bias F and hence θ. For a flat sample wider than
the field of view give ``sample_size``: x is then the sample's measured support (the grid enlarged to every
voxel of the sample box that measured rays cross, A restricted to it; :mod:`lamino.recon.truncation`), which
explains truncated rows, so F is unbiased again.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from lamino import _checks
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import Projector
from lamino.recon.preprocess import bin_projections
from lamino.recon.truncation import check_sample_size, measured_support

__all__ = ["PARAMS", "Calibration", "calibrate"]

PARAMS = ("cor_offset", "tilt_deg", "det_roll_deg", "det_offset_u")
_ANGLES = ("tilt_deg", "det_roll_deg")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The result of :func:`calibrate`.

    Attributes:
        geometry: the calibrated geometry (the nominal one with the estimated parameters substituted).
        params: estimated values by name: ``cor_offset`` and ``det_offset_u`` in mm, angles in degrees.
        history: one entry per evaluation, as columns: ``"level"`` ("coarse" / "fine"), ``"step"``
            ("scan" / "gauss-newton"), ``"objective"`` (relative misfit ‖A x − b‖² / ‖b‖² of that
            evaluation's reconstruction) and one column per parameter (its value there).
        report: a short human-readable summary (estimates, objective values, iterations, time).
    """

    geometry: Geometry
    params: dict[str, float]
    history: dict[str, list]
    report: str


# ---------------------------------------------------------------------------------------------- one level
@dataclasses.dataclass(frozen=True)
class _Model:
    """The θ-parametrised projector of one resolution level (hashable: a static argument of the jitted steps).

    θ holds the *changes* of ``names`` from the nominal ``geometry`` (mm or degrees). ``plan_for``: concrete
    geometries at the corners and centre of the search bounds, over which the projector plans once (see
    :class:`~lamino.projector.Projector`).
    """

    geometry: Geometry
    grid: VolumeGrid
    names: tuple[str, ...]
    plan_for: tuple[Geometry, ...]

    def geometry_at(self, theta) -> Geometry:
        """The nominal geometry with the changes θ substituted (traceable in θ)."""
        g0, changes = self.geometry, {}
        for i, n in enumerate(self.names):
            if n == "det_offset_u":
                changes["det_offset"] = (g0.det_offset[0], g0.det_offset[1] + theta[i])
            else:
                changes[n] = getattr(g0, n) + theta[i]
        return g0.replace(**changes)

    def projector(self, theta) -> Projector:
        """A(θ), with its exact adjoint."""
        return Projector(self.geometry_at(theta), self.grid, plan_for=self.plan_for)

    def forward(self, theta, x):
        """A(θ) x (traceable in θ and x)."""
        return self.projector(theta).forward(x)

    def operators(self, theta):
        """A(θ) and its exact transpose."""
        P = self.projector(theta)
        return P.forward, P.adjoint


def _cgls(fwd, adj, data, x0, iterations: int, batched: bool = False):
    """CGLS (Hestenes & Stiefel 1952; Björck 1996, §7.4) on min ‖A x − data‖² from ``x0``: (x, data − A x).

    ``batched``: independent problems along the first axis (``fwd``/``adj`` act on the whole batch).
    """
    axes = tuple(range(1, data.ndim)) if batched else None

    def dot(a, c):
        return jnp.sum(a * c, axis=axes)

    def scale(k, a):
        return k.reshape(k.shape + (1,) * (a.ndim - k.ndim)) * a

    r = data - fwd(x0)
    s = adj(r)
    gamma = dot(s, s)

    def body(_, state):
        x, r, p, gamma = state
        q = fwd(p)
        alpha = jnp.where(gamma > 0, gamma / jnp.maximum(dot(q, q), 1e-30), 0.0)
        x, r = x + scale(alpha, p), r - scale(alpha, q)
        s = adj(r)
        gamma_new = dot(s, s)
        p = s + scale(jnp.where(gamma > 0, gamma_new / jnp.maximum(gamma, 1e-30), 0.0), p)
        return x, r, p, gamma_new

    x, r, _, _ = jax.lax.fori_loop(0, iterations, body, (x0, r, s, gamma))
    return x, r


def _masked(fwd, adj, mask):
    """A M and M Aᵀ with M = diag(``mask``): unknowns only where ``mask`` is 1 (the measured support)."""
    return (lambda x: fwd(x * mask)), (lambda y: adj(y) * mask)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _misfit_at(model: _Model, theta, b, mask, iterations: int):
    """F(θ, x_θ) = ‖A(θ) M x_θ − b‖² / ‖b‖², x_θ from ``iterations`` CGLS iterations from zero (M: ``mask``)."""
    fwd, adj = _masked(*model.operators(theta), mask)
    _, r = _cgls(fwd, adj, b, jnp.zeros(model.grid.shape, jnp.float32), iterations)
    return jnp.vdot(r, r) / jnp.vdot(b, b)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _step(model: _Model, theta, x0, b, mask, iterations: int):
    """One alternation at θ: the variable-projection Gauss–Newton system of min_θ min_x ‖A(θ) x − b‖² at the
    current volume ``x0``, and ``iterations`` more CGLS iterations on x. Returns (x, misfit, H, g), misfit,
    H and g at ``x0`` and divided by ‖b‖².

    J = ∂(A(θ) x)/∂θ by ``jax.jacfwd`` through the projector. As x follows θ, the reduced Jacobian is
    Ĵ = (I − P_A) J, P_A the projector onto the range of A (Golub & Pereyra, SIAM J. Numer. Anal. 10, 413,
    1973; Kaufman, BIT 15, 49, 1975), with P_A J_j = A y_j from ``iterations`` CGLS iterations on J_j (A
    restricted to the voxels of ``mask``, which ``x0`` respects). Then
    H = Ĵᵀ Ĵ and g = Ĵᵀ r with r = A x − b, and the step is −H⁻¹ g. (With x held fixed, J alone overestimates
    the curvature and the alternation crawls.) The x update and the y_j solves run as one batched CGLS.
    """
    n = len(model.names)
    fwd, adj = _masked(*model.operators(theta), mask)
    # Jacobian columns one forward-mode derivative at a time (lax.map, not a batched jacfwd: compiles faster)
    jac = jax.lax.map(lambda e: jax.jvp(lambda th: model.forward(th, x0), (theta,), (e,))[1],
                      jnp.eye(n, dtype=theta.dtype))                                     # (n, *proj_shape)
    rhs = jnp.concatenate([b[None], jac])
    starts = jnp.concatenate([x0[None], jnp.zeros((n, *model.grid.shape), jnp.float32)])
    xs, rs = _cgls(lambda v: jax.lax.map(fwd, v), lambda y: jax.lax.map(adj, y), rhs, starts, iterations,
                   batched=True)
    r = (fwd(x0) - b).ravel()
    reduced = rs[1:].reshape(n, -1).T                                                   # columns J_j − A y_j
    b2 = jnp.vdot(b, b)
    return xs[0], jnp.vdot(r, r) / b2, reduced.T @ reduced / b2, reduced.T @ r / b2


@dataclasses.dataclass(frozen=True, eq=False)
class _Level:
    """Projections of one resolution level with their model and the bounds of θ."""

    model: _Model
    b: jax.Array
    bounds: dict[str, tuple[float, float]]
    mask: jax.Array

    @classmethod
    def make(cls, b, geometry: Geometry, grid: VolumeGrid, names: tuple[str, ...],
             bounds: dict[str, tuple[float, float]], mask=None) -> _Level:
        """``mask`` (grid.shape, 1 = unknown, 0 = fixed at 0): the measured support; None: the whole grid."""
        model = _Model(geometry, grid, names, _search_box(geometry, names, bounds))
        mask = jnp.ones(grid.shape, jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
        return cls(model, jnp.asarray(b, jnp.float32), bounds, mask)

    @property
    def names(self) -> tuple[str, ...]:
        return self.model.names

    @property
    def grid(self) -> VolumeGrid:
        return self.model.grid

    @property
    def geometry(self) -> Geometry:
        return self.model.geometry

    def misfit_at(self, theta: np.ndarray, iterations: int) -> float:
        return float(_misfit_at(self.model, jnp.asarray(theta, jnp.float32), self.b, self.mask, iterations))

    def step(self, theta: np.ndarray, x, iterations: int):
        return _step(self.model, jnp.asarray(theta, jnp.float32), x, self.b, self.mask, iterations)


def _search_box(geometry: Geometry, names: tuple[str, ...],
                bounds: dict[str, tuple[float, float]]) -> tuple[Geometry, ...]:
    """The nominal geometry and the corners of the search bounds in the parameters that move the rays (tilt,
    COR; the detector's roll and offset do not change the projector's plan)."""
    axes = [n for n in ("cor_offset", "tilt_deg") if n in names]
    corners = [geometry.replace(**{n: getattr(geometry, n) + c for n, c in zip(axes, combo, strict=True)})
               for combo in itertools.product(*[bounds[n] for n in axes])]
    return (geometry, *corners) if axes else (geometry,)


def _apply(geometry: Geometry, names: tuple[str, ...], theta: np.ndarray) -> Geometry:
    """The nominal geometry with the changes θ substituted (concrete)."""
    return _Model(geometry, None, names, ()).geometry_at([float(t) for t in np.asarray(theta, dtype=float)])


# ---------------------------------------------------------------------------------------------- search steps
def _parabola_min(xs: np.ndarray, fs: np.ndarray) -> float:
    """Vertex of the parabola through the best sample and its two neighbours (the best sample at an end)."""
    i = int(np.argmin(fs))
    if i == 0 or i == len(xs) - 1:
        return float(xs[i])
    (x0, x1, x2), (f0, f1, f2) = xs[i - 1:i + 2], fs[i - 1:i + 2]
    den = (x1 - x0) * (f1 - f2) - (x1 - x2) * (f1 - f0)
    if den == 0:
        return float(x1)
    vertex = x1 - 0.5 * ((x1 - x0) ** 2 * (f1 - f2) - (x1 - x2) ** 2 * (f1 - f0)) / den
    return float(np.clip(vertex, x0, x2))


class _Log:
    def __init__(self, names: tuple[str, ...], geometry: Geometry):
        self.names, self.geometry = names, geometry
        self.columns: dict[str, list] = {"level": [], "step": [], "objective": [], **{n: [] for n in names}}

    def add(self, level: str, step: str, theta, objective: float) -> None:
        self.columns["level"].append(level)
        self.columns["step"].append(step)
        self.columns["objective"].append(float(objective))
        for n, v in zip(self.names, _absolute(self.geometry, self.names, theta).values(), strict=True):
            self.columns[n].append(v)


def _absolute(geometry: Geometry, names: tuple[str, ...], theta) -> dict[str, float]:
    out = {}
    for n, t in zip(names, np.asarray(theta, dtype=float), strict=True):
        base = geometry.det_offset[1] if n == "det_offset_u" else getattr(geometry, n)
        out[n] = float(base) + float(t)
    return out


def _scan(level: _Level, theta: np.ndarray, half_width: dict[str, float], points: int, iterations: int,
          log: _Log) -> np.ndarray:
    """One sweep of 1-D scans, parameter by parameter, each value scored by F(θ, x_θ)."""
    theta = theta.copy()
    for i, name in enumerate(level.names):
        values = np.unique(np.clip(theta[i] + np.linspace(-half_width[name], half_width[name], points),
                                   *level.bounds[name]))
        scores = []
        for v in values:
            trial = theta.copy()
            trial[i] = v
            scores.append(level.misfit_at(trial, iterations))
            log.add("coarse", "scan", trial, scores[-1])
        theta[i] = _parabola_min(values, np.asarray(scores))
    return theta


def _refine(level: _Level, theta: np.ndarray, max_step: np.ndarray, tol: np.ndarray, iterations: int, outer: int,
            log: _Log) -> tuple[np.ndarray, float, int]:
    """Variable-projection Gauss–Newton steps, each with ``iterations`` more CGLS iterations on x, until θ
    moves less than ``tol`` twice in a row. Steps are clipped to ``max_step`` (the coarse scan's spacing)."""
    x, _, _, _ = level.step(theta, jnp.zeros(level.grid.shape, jnp.float32), iterations)   # first volume
    lo, hi = np.array([level.bounds[name] for name in level.names]).T
    steps, f, small = 0, math.nan, 0
    while steps < outer:
        steps += 1
        x_next, f, hess, grad = level.step(theta, x, iterations)
        hess, grad = np.asarray(hess, dtype=np.float64), np.asarray(grad, dtype=np.float64)
        log.add("fine", "gauss-newton", theta, float(f))
        step = np.linalg.lstsq(hess + 1e-9 * np.diag(np.diag(hess)), -grad, rcond=1e-10)[0]
        step = np.clip(step, -max_step, max_step)
        step = np.clip(theta + step, lo, hi) - theta
        theta, x = theta + step, x_next
        small = small + 1 if np.all(np.abs(step) < tol) else 0
        if small == 2:                        # x still improves between steps: wait for two small ones
            break
    return theta, float(f), steps


# ---------------------------------------------------------------------------------------------- public
def _check_params(params) -> tuple[str, ...]:
    names = (params,) if isinstance(params, str) else tuple(params)
    for n in names:
        if n not in PARAMS:
            raise ValueError(f"params entry {n!r} is not allowed: choose from {', '.join(PARAMS)}")
    if not names or len(set(names)) != len(names):
        raise ValueError(f"params={params!r} is not allowed: give one or more distinct names of {', '.join(PARAMS)}")
    return names


def _coarse_level(b: np.ndarray, geometry: Geometry, grid: VolumeGrid, names: tuple[str, ...],
                  bounds: dict[str, tuple[float, float]], factor: int, max_views: int, mask=None) -> _Level:
    """Binned projections, every k-th view (at most ``max_views``) and a grid with ``factor`` × larger voxels;
    ``mask`` (of ``grid``) resampled to it, a coarse voxel kept where it touches the fine mask."""
    step = max(1, math.ceil(geometry.n_views / max_views))
    if step > 1:
        geometry = geometry.replace(angles_deg=geometry.angles_deg[::step])
        b = b[::step]
    if factor > 1:
        b, geometry = bin_projections(b, geometry, factor)
        grid = VolumeGrid(tuple(max(1, math.ceil(n / factor)) for n in grid.shape),
                          tuple(s * factor for s in grid.voxel_size), grid.center)
        if mask is not None:
            mask = jax.image.resize(jnp.asarray(mask, jnp.float32), grid.shape, method="linear") > 0
    return _Level.make(b, geometry, grid, names, bounds, mask)


def calibrate(projections, geometry: Geometry, grid: VolumeGrid, params=("cor_offset", "tilt_deg"), *,
              search: dict[str, float] | None = None, points: int = 7, coarse_bin: int = 2,
              coarse_views: int = 20, iterations: int = 10, outer: int = 8,
              tol: dict[str, float] | None = None, sample_size=None) -> Calibration:
    """Estimate misaligned geometry parameters from the data by projection matching (see the module text).

    Args:
        projections: line integrals (n_views, rows, cols) of ``geometry`` (flat/dark corrected −log).
        geometry: the nominal geometry (built with :meth:`Geometry.parallel` or :meth:`Geometry.cone`);
            every parameter not estimated is taken as exact, and the search starts from it.
        grid: reconstruction grid of the fine level. It should contain the whole sample (unexplained
            signal biases the fit); a flat grid (nz < ny, nx) suits flat CL samples.
        params: names to estimate, from ``PARAMS`` = cor_offset, tilt_deg, det_roll_deg, det_offset_u.
        search: half-width of the coarse scan around the nominal value per parameter; defaults: 4 pixels
            for cor_offset (pixels at the object, du / M) and det_offset_u (du), 3° for tilt_deg, 2° for
            det_roll_deg.
        points: samples per coarse scan (odd, ≥ 3).
        coarse_bin: detector binning and voxel enlargement of the coarse level (1: scan at full resolution).
        coarse_views: at most this many views (every k-th) in the coarse level.
        iterations: CGLS iterations per reconstruction (coarse scan) and per Gauss–Newton step (fine).
        outer: maximum Gauss–Newton steps of the fine level.
        tol: stop after two steps below this, per parameter (mm or degrees); defaults: 0.02 pixel, 0.005°.
        sample_size: (z, y, x) mm of a flat sample wider than the field of view (a box centred on the origin,
            as in :func:`lamino.recon.fbp.fbp`): the reconstructions run on the measured support of ``grid``
            under the nominal geometry (:func:`lamino.recon.truncation.measured_support`, enlarged and masked),
            so truncated rows are explained. Without it a grid smaller than the sample biases θ.

    Returns:
        A :class:`Calibration` with the calibrated geometry, the estimates, the history and a report.
    """
    t_start = time.perf_counter()
    names = _check_params(params)
    if {"cor_offset", "det_offset_u"} <= set(names) and getattr(geometry, "beam", None) == "parallel":
        raise ValueError("params cor_offset and det_offset_u are not allowed together in parallel beam: they are "
                         "the same detector shift; estimate one of them")
    if not isinstance(geometry, Geometry) or geometry.custom_vectors is not None:
        raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a parametric lamino Geometry "
                         "(Geometry.parallel or Geometry.cone, not from_vectors)")
    if not geometry.is_concrete:
        raise ValueError("geometry is not allowed while traced: give concrete numbers")
    if not isinstance(grid, VolumeGrid):
        raise ValueError(f"grid={type(grid).__name__} is not allowed: give a lamino.geometry.VolumeGrid")
    b = np.asarray(projections, dtype=np.float32)
    check_sample_size(sample_size)
    expected = (geometry.n_views, *geometry.det_shape)
    if b.shape != expected:
        raise ValueError(f"projections with shape {b.shape} are not allowed: the geometry expects {expected}")
    if not np.all(np.isfinite(b)):
        raise ValueError("projections are not allowed: they contain NaN or infinite values")
    if not _checks.is_int(points) or points < 3 or points % 2 == 0:
        raise ValueError(f"points={points!r} is not allowed: give an odd integer ≥ 3")
    coarse_bin = _checks.count("coarse_bin", coarse_bin)
    coarse_views = _checks.count("coarse_views", coarse_views)
    iterations = _checks.count("iterations", iterations)
    outer = _checks.count("outer", outer)

    pixel = geometry.det_spacing[1] / geometry.magnification          # mm at the object
    widths = {"cor_offset": 4 * pixel, "det_offset_u": 4 * geometry.det_spacing[1], "tilt_deg": 3.0,
              "det_roll_deg": 2.0}
    tols = {"cor_offset": 0.02 * pixel, "det_offset_u": 0.02 * geometry.det_spacing[1], "tilt_deg": 0.005,
            "det_roll_deg": 0.005}
    for label, given, table in (("search", search, widths), ("tol", tol, tols)):
        if given is not None and not isinstance(given, dict):
            raise ValueError(f"{label}={given!r} is not allowed: give a dict {{param name: value}} or None")
        for k, v in (given or {}).items():
            if k not in names:
                raise ValueError(f"{label} key {k!r} is not allowed: give values for the estimated params "
                                 f"{', '.join(names)}")
            table[k] = _checks.positive(f"{label}[{k!r}]", v)

    # θ (changes from nominal) stays within 1.5 search widths, and the tilt within [0°, 89.9°]
    bounds = {n: (-1.5 * widths[n], 1.5 * widths[n]) for n in names}
    if "tilt_deg" in names:
        lo, hi = bounds["tilt_deg"]
        bounds["tilt_deg"] = (max(lo, -geometry.tilt_deg), min(hi, 89.9 - geometry.tilt_deg))
    log = _Log(names, geometry)
    theta = np.zeros(len(names))
    lines = [f"calibrate: {geometry.beam} beam, {geometry.n_views} views, detector {expected[1]}×{expected[2]}, "
             f"grid {'×'.join(map(str, grid.shape))}; params {', '.join(names)}"]
    mask = None
    if sample_size is not None:
        support = measured_support(geometry, grid, sample_size, peak_volumes=5 * (1 + len(names)),
                                   job="calibration")
        grid, mask = support.grid, support.mask
        lines.append(f"  measured support of the sample {list(map(float, sample_size))} mm: grid "
                     f"{'×'.join(map(str, grid.shape))}, {int(mask.sum())} voxels")

    # coarse level: binned projections, fewer views, larger voxels; a wide and a narrow sweep of 1-D scans
    f_bin = coarse_bin if min(geometry.det_shape) // coarse_bin >= 8 else 1
    coarse = _coarse_level(b, geometry, grid, names, bounds, f_bin, coarse_views, mask)
    f_nominal = coarse.misfit_at(np.zeros(len(names)), iterations)
    spacing = {n: 2.0 * widths[n] / (points - 1) for n in names}
    theta = _scan(coarse, theta, widths, points, iterations, log)
    theta = _scan(coarse, theta, spacing, points, iterations, log)
    f_coarse = coarse.misfit_at(theta, iterations)
    lines.append(f"  coarse (bin {f_bin}, {coarse.geometry.n_views} views, grid "
                 f"{'×'.join(map(str, coarse.grid.shape))}): {len(log.columns['level'])} scan reconstructions, "
                 f"misfit {f_nominal:.3e} (nominal) → {f_coarse:.3e}, {time.perf_counter() - t_start:.1f} s")
    t_fine = time.perf_counter()

    # fine level: variable-projection Gauss–Newton through the differentiable projector
    fine = _Level.make(b, geometry, grid, names, bounds, mask)
    theta, f_fine, n_steps = _refine(fine, theta, np.array([spacing[n] for n in names]),
                                     np.array([tols[n] for n in names]), iterations, outer, log)
    lines.append(f"  fine (full resolution): {n_steps} Gauss–Newton steps, misfit {f_fine:.3e}, "
                 f"{time.perf_counter() - t_fine:.1f} s")

    estimates = _absolute(geometry, names, theta)
    for n, value in estimates.items():
        nominal = value - theta[names.index(n)]
        if n in _ANGLES:
            lines.append(f"  {n:13s} = {value:+.4f}°   (nominal {nominal:+.4f}°, change {value - nominal:+.4f}°)")
        else:
            px = geometry.det_spacing[1] if n == "det_offset_u" else pixel
            lines.append(f"  {n:13s} = {value:+.5f} mm = {value / px:+.3f} px   (nominal {nominal:+.5f} mm, "
                         f"change {(value - nominal) / px:+.3f} px)")
    return Calibration(geometry=_apply(geometry, names, theta), params=estimates, history=log.columns,
                       report="\n".join(lines))

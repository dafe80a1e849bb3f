"""Isotropic total variation (TV) and its proximal operator by FGP (Beck & Teboulle, IEEE TIP 18(11), 2009).

Discrete gradient: forward differences along every array axis with a **Neumann** boundary (the difference
past the last sample is zero), optionally divided by the sample spacing::

    (D_d x)[.., i, ..] = (x[.., i+1, ..] − x[.., i, ..]) / s_d     for i < n_d − 1,   0 at i = n_d − 1

    TV(x) = Σ_voxels sqrt(Σ_d (D_d x)²)                              (isotropic)

With ``voxel_size=None`` the spacing is 1 (index space, as in CIL and TIGRE): TV then has the units of x and
the TV weight λ is independent of the voxel size in mm. Give ``voxel_size`` (one number or one per axis, mm)
for a physical gradient (units of x per mm); only the voxel size *ratios* matter for how the prox treats
anisotropic voxels, the absolute size rescales the weight.

:func:`tv_prox` solves the (optionally constrained) TV denoising problem

    prox(b) = argmin_{x ∈ C}  ½‖x − b‖² + weight · TV(x),      C = {lo ≤ x ≤ hi} (nonneg: lo ≥ 0)

with the fast gradient projection (FGP) of Beck & Teboulle 2009: FISTA on the dual, whose variable is a
pointwise unit-norm vector field p; x(p) = P_C(b − weight · Dᵀp); dual step 1 / (weight · ‖D‖²) with the
bound ‖D‖² ≤ 4 Σ_d 1 / s_d² (12 in 3-D index space). Without constraints the prox keeps the mean of b
(Dᵀp sums to zero); a constant b is returned unchanged. Everything is jnp and jitted; float32.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lamino import _checks

__all__ = ["tv_norm", "tv_prox", "fgp", "gradient", "gradient_adjoint"]


def _inv_spacing(ndim: int, voxel_size) -> tuple[float, ...]:
    """1 / s_d for every axis (all ones for ``voxel_size=None``)."""
    if voxel_size is None:
        return (1.0,) * ndim
    vs = np.atleast_1d(np.asarray(voxel_size, dtype=float))
    if vs.ndim != 1 or vs.size not in (1, ndim) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel_size={voxel_size!r} is not allowed: give None, one size > 0 or {ndim} sizes > 0")
    return tuple(float(1.0 / s) for s in np.broadcast_to(vs, (ndim,)))


def gradient(x: jax.Array, inv_spacing: tuple[float, ...]) -> tuple[jax.Array, ...]:
    """Forward differences D_d x with a Neumann boundary (zero in the last slice), one array per axis.

    Kept as a tuple of arrays rather than one stacked array: XLA fuses the FGP loop far better that way
    (2.5× faster on a 64³ CPU volume).
    """
    out = []
    for d, w in enumerate(inv_spacing):
        n = x.shape[d]
        ahead = jnp.concatenate([lax.slice_in_dim(x, 1, n, axis=d), lax.slice_in_dim(x, n - 1, n, axis=d)], axis=d)
        out.append((ahead - x) * w)
    return tuple(out)


def gradient_adjoint(p: tuple[jax.Array, ...], inv_spacing: tuple[float, ...]) -> jax.Array:
    """Dᵀp, the exact transpose of :func:`gradient` (= −div p): (Dᵀq)_i = q_{i−1} − q_i, q_{−1} = q_{n−1} = 0."""
    out = jnp.zeros_like(p[0])
    for d, (q, w) in enumerate(zip(p, inv_spacing, strict=True)):
        n = q.shape[d]
        q = jnp.where(lax.broadcasted_iota(jnp.int32, q.shape, d) < n - 1, q * w, 0.0)
        behind = jnp.concatenate([jnp.zeros_like(lax.slice_in_dim(q, 0, 1, axis=d)),
                                  lax.slice_in_dim(q, 0, n - 1, axis=d)], axis=d)
        out = out + behind - q
    return out


def _tv(x, inv_spacing):
    return jnp.sum(jnp.sqrt(sum(g * g for g in gradient(x, inv_spacing))))


def tv_norm(x, voxel_size=None) -> jax.Array:
    """Isotropic TV Σ sqrt(Σ_d (D_d x)²) with Neumann boundary (module docstring); a float32 scalar."""
    x = jnp.asarray(x, jnp.float32)
    return _tv_jit(x, _inv_spacing(x.ndim, voxel_size))


_tv_jit = jax.jit(_tv, static_argnums=1)


@functools.partial(jax.jit, static_argnames=("iterations", "inv_spacing"))
def fgp(b, weight, p0, lo, hi, *, iterations: int, inv_spacing: tuple[float, ...]):
    """FGP (Beck & Teboulle 2009, Alg. FGP with constraint set C = [lo, hi]) warm-started from dual ``p0``.

    ``p0``: a tuple of one array per axis (:func:`zero_dual` to start cold). Returns (x, p): the prox of
    ``weight · TV + ι_C`` at ``b`` and the final dual field (reuse it as ``p0`` of a following, similar problem,
    e.g. the next FISTA iteration).
    """
    lip = 4.0 * sum(w * w for w in inv_spacing)           # ‖D‖² bound
    positive = weight > 0
    w = jnp.where(positive, weight, 1.0)
    step = 1.0 / (w * lip)

    def primal(p):
        return jnp.clip(b - w * gradient_adjoint(p, inv_spacing), lo, hi)

    def body(_, state):
        p, r, t = state
        q = [ri + step * gi for ri, gi in zip(r, gradient(primal(r), inv_spacing), strict=True)]
        scale = jnp.maximum(1.0, jnp.sqrt(sum(qi * qi for qi in q)))     # pointwise onto the unit ball
        p_new = tuple(qi / scale for qi in q)
        t_new = (1.0 + jnp.sqrt(1.0 + 4.0 * t * t)) / 2.0
        r = tuple(a + ((t - 1.0) / t_new) * (a - c) for a, c in zip(p_new, p, strict=True))
        return p_new, r, t_new

    p, _, _ = lax.fori_loop(0, iterations, body, (p0, p0, jnp.float32(1.0)))
    x = jnp.where(positive, primal(p), jnp.clip(b, lo, hi))
    return x, p


def zero_dual(shape) -> tuple[jax.Array, ...]:
    """The FGP dual field p = 0 for a volume of ``shape`` (one array per axis)."""
    return tuple(jnp.zeros(shape, jnp.float32) for _ in shape)


def constraint_bounds(nonneg: bool, bounds) -> tuple[float, float]:
    """(lo, hi) of the box constraint from ``nonneg`` and ``bounds=(lo, hi)`` (None for no box); validated."""
    if not isinstance(nonneg, bool | np.bool_):
        raise ValueError(f"nonneg={nonneg!r} is not allowed: give True or False")
    lo, hi = -math.inf, math.inf
    if bounds is not None:
        a, b = _checks.pair("bounds", bounds)
        lo = _checks.number("bounds", a, lambda v: v < math.inf, "(lo, hi) with lo < hi (lo may be -inf)")
        hi = _checks.number("bounds", b, lambda v: v > -math.inf, "(lo, hi) with lo < hi (hi may be inf)")
        if not lo < hi:
            raise ValueError(f"bounds={bounds!r} is not allowed: give (lo, hi) with lo < hi")
    if nonneg:
        lo = max(lo, 0.0)
        if not lo < hi:
            raise ValueError(f"bounds={bounds!r} is not allowed with nonneg=True: the upper bound must be > 0")
    return lo, hi


def tv_prox(x, weight: float, iterations: int = 20, *, nonneg: bool = False, bounds=None,
            voxel_size=None) -> jax.Array:
    """argmin_{z ∈ C} ½‖z − x‖² + weight · TV(z) by FGP (Beck & Teboulle 2009), float32, same shape as ``x``.

    ``nonneg`` adds z ≥ 0, ``bounds=(lo, hi)`` adds lo ≤ z ≤ hi (both are the constrained FGP: the
    projection is applied inside the iterations, not afterwards). ``iterations`` FGP (dual FISTA) steps,
    ``voxel_size`` as in :func:`tv_norm`. ``weight = 0`` gives the projection of ``x`` onto the constraints.
    """
    w = _checks.non_negative("weight", weight)
    it = _checks.count("iterations", iterations)
    lo, hi = constraint_bounds(nonneg, bounds)
    x = jnp.asarray(x, jnp.float32)
    if x.ndim < 1:
        raise ValueError(f"x with shape {x.shape} is not allowed: give an array with ≥ 1 dimension")
    inv = _inv_spacing(x.ndim, voxel_size)
    z, _ = fgp(x, jnp.float32(w), zero_dual(x.shape), jnp.float32(lo), jnp.float32(hi), iterations=it, inv_spacing=inv)
    return z

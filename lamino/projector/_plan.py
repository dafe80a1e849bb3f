"""Static plan of the shear-warp projector: slice stacks, intermediate-plane sizes, view groups.

The volume (nz, ny, nx) is read as a stack of slices perpendicular to the axis most parallel to each view's
rays (its *dominant* axis, measured in voxel units), as in shear-warp rendering (Lacroute & Levoy,
SIGGRAPH 1994) and Joseph's method (IEEE TMI 1, 192, 1982). Stack ``k`` puts array axis ``k`` first:

    k = 0: (nz, ny, nx), slice axes (a, b) = (y, x)
    k = 1: (ny, nz, nx), slice axes (a, b) = (z, x)
    k = 2: (nx, nz, ny), slice axes (a, b) = (z, y)

Each slice is shifted (parallel beam) or shifted and zoomed (cone beam) onto an *intermediate plane* through
the grid centre, perpendicular to the stack axis; a 2-D warp then maps that plane to the detector. This
module computes, in numpy and before any tracing, everything whose size must be static (:func:`make_plan`),
and the grouping of concrete views by stack (:func:`view_order`), which the compiled projector receives as
data. Parallel-beam sizes (and cone-beam ones on request) hold for every tilt, so a tilt sweep compiles the
projector once per view count.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend.core import concrete_or_error

from lamino.geometry import Geometry, VolumeGrid
from lamino.geometry.acquisition import is_concrete

STACK_AXES = ((0, 1, 2), (1, 0, 2), (2, 0, 1))  # (c, a, b) array axes of stack k
GROUP_ORDER = (2, 0, 1)     # stacks in the order their views are processed (see ``view_order``)


@dataclasses.dataclass(frozen=True)
class StackPlan:
    """Sizes for one stack orientation (all in intermediate-plane pixels)."""

    k: int
    n: tuple[int, int, int]        # (n_c, n_a, n_b)
    s: tuple[float, float, float]  # voxel sizes (s_c, s_a, s_b) mm
    ctr: tuple[float, float, float]  # grid centre along (c, a, b) mm
    pad: tuple[int, int]           # (P_a, P_b): intermediate index of slice index 0 when unsheared
    inter: tuple[int, int]         # (H_a, H_b): intermediate plane shape
    region: tuple[int, int]        # (R_a, R_b): per-slice footprint on the plane (cone beam)


@dataclasses.dataclass(frozen=True)
class Plan:
    beam: str
    stacks: tuple[StackPlan, ...]                 # one per k in 0, 1, 2


class ViewOrder(NamedTuple):
    """Concrete views grouped by stack: ``order`` lists the view indices of stack 2, then 0, then 1 (each
    ascending); ``counts`` the number of views in each of those groups. int32 arrays, passed as data."""

    order: Any
    counts: Any


def view_order(vectors: np.ndarray, grid: VolumeGrid, beam: str) -> ViewOrder:
    """The views of concrete 12-vectors grouped by their stack (:func:`dominant_axes`)."""
    return group_views(dominant_axes(vectors, grid, beam))


def has_x_views(views: ViewOrder) -> bool:
    """Whether concrete ``views`` include x-dominant ones (stack 2, which reads the swapped volume)."""
    return bool(np.asarray(views.counts)[GROUP_ORDER.index(2)] > 0)


def group_views(stack_of_view) -> ViewOrder:
    """Views grouped by a given stack index per view."""
    k = np.asarray(stack_of_view)
    order = np.concatenate([np.nonzero(k == g)[0] for g in GROUP_ORDER]).astype(np.int32)
    return ViewOrder(order, np.array([np.sum(k == g) for g in GROUP_ORDER], dtype=np.int32))


def to_zyx(v):
    """Reverse the last axis: sample-frame (x, y, z) → array order (z, y, x)."""
    return v[..., ::-1]


def _ray_steps(vectors: np.ndarray, grid: VolumeGrid, beam: str) -> np.ndarray:
    """|central ray| per array axis in voxels per mm, (n_views, 3) in (z, y, x) order."""
    vec = np.asarray(vectors, dtype=float)
    ray = np.asarray(grid.center)[::-1] - vec[:, 0:3] if beam == "cone" else vec[:, 0:3]   # (x, y, z)
    return np.abs(to_zyx(ray)) / np.asarray(grid.voxel_size)


def dominant_axes(vectors: np.ndarray, grid: VolumeGrid, beam: str) -> np.ndarray:
    """Per-view stack index k: the array axis along which the central ray advances most voxels per mm."""
    return np.argmax(_ray_steps(vectors, grid, beam), axis=1)


def _may_use(vectors: np.ndarray, grid: VolumeGrid, beam: str, k: int) -> np.ndarray:
    """Views that stack k may serve: dominant along k, or within float32 rounding of it (a near tie that
    the projector, in float32, may decide either way). Plan sizes cover all of them."""
    d = _ray_steps(vectors, grid, beam)
    return d[:, k] >= d.max(axis=1) * (1 - 1e-5)


def _stack_basics(grid: VolumeGrid, k: int):
    c, a, b = STACK_AXES[k]
    n = (grid.shape[c], grid.shape[a], grid.shape[b])
    s = (grid.voxel_size[c], grid.voxel_size[a], grid.voxel_size[b])
    ctr = (grid.center[c], grid.center[a], grid.center[b])
    return n, s, ctr


def cone_slice_maps(src_cab: np.ndarray, n, s, ctr, xp=np):
    """Per-slice affine maps of cone beam: slice index i = λ·(plane index − P) + κ0, per in-plane axis.

    ``src_cab``: source positions along (c, a, b), shape (..., 3). Returns λ (..., n_c) and κ0 for a and b,
    where κ0 is the offset for pad P = 0 (add −λ·P for a padded plane).
    """
    n_c, n_a, n_b = n
    c_s = (xp.arange(n_c) - (n_c - 1) / 2) * s[0] + ctr[0]
    sc = src_cab[..., 0:1]
    lam = (c_s - sc) / (ctr[0] - sc)
    k_a = (n_a - 1) / 2 + (1 - lam) * (src_cab[..., 1:2] - ctr[1]) / s[1] - lam * (n_a - 1) / 2
    k_b = (n_b - 1) / 2 + (1 - lam) * (src_cab[..., 2:3] - ctr[2]) / s[2] - lam * (n_b - 1) / 2
    return lam, k_a, k_b


def _parallel_stack(grid: VolumeGrid, k: int, vectors: np.ndarray | None = None) -> StackPlan:
    """Sizes for parallel beam; the largest slice shift is |β|·(n_c − 1)/2 with β = (d_a/d_c)(s_c/s_a) ≤ 1."""
    n, s, ctr = _stack_basics(grid, k)
    beta = np.ones(2)                # worst case: the stack axis is dominant, so |β| ≤ 1
    if vectors is not None and len(vectors):
        c, a, b = STACK_AXES[k]
        ray = to_zyx(np.asarray(vectors, dtype=float)[:, 0:3])
        beta = np.array([np.max(np.abs(ray[:, a] / ray[:, c])) * s[0] / s[1],
                         np.max(np.abs(ray[:, b] / ray[:, c])) * s[0] / s[2]])
    pad = tuple(int(math.ceil(bt * (n[0] - 1) / 2 - 1e-9)) + 2 for bt in beta)
    return StackPlan(k, n, s, ctr, pad, (n[1] + 2 * pad[0] + 1, n[2] + 2 * pad[1] + 1), (n[1] + 1, n[2] + 1))


def _cone_stack(grid: VolumeGrid, k: int, vectors: np.ndarray) -> StackPlan | None:
    """Sizes for cone beam from the views of stack k (None when there are none)."""
    if not len(vectors):
        return None
    n, s, ctr = _stack_basics(grid, k)
    c, a, b = STACK_AXES[k]
    src = to_zyx(np.asarray(vectors, dtype=float)[:, 0:3])[:, [c, a, b]]
    lam, k_a, k_b = cone_slice_maps(src, n, s, ctr)
    if np.any(lam <= 0.05):
        raise ValueError("the cone-beam source is inside or too close to the volume grid: "
                         "increase sod or shrink the grid")
    pads, inters, regions = [], [], []
    for kap, n_ax in ((k_a, n[1]), (k_b, n[2])):
        lo = (-1 - kap) / lam          # plane index (P = 0) where the slice footprint starts and ends
        hi = (n_ax - kap) / lam
        p = int(math.ceil(max(0.0, -lo.min()))) + 2
        pads.append(p)
        inters.append(int(math.ceil(hi.max())) + p + 3)
        regions.append(int(math.ceil((hi - lo).max())) + 3)
    return StackPlan(k, n, s, ctr, tuple(pads), tuple(inters), tuple(regions))


def make_plan(geometry: Geometry, grid: VolumeGrid, *, any_tilt: bool = False) -> Plan:
    """Static sizes valid for every view of ``geometry``.

    For a geometry from ``Geometry.parallel`` the sizes are the worst case over all tilts (this costs
    nothing measurable), so geometries that differ only in tilt share one plan and one compilation. Cone
    beam does the same (sampling the tilts every degree at COR 0 and widening by 8 plane pixels) when the
    tilt is traced or ``any_tilt`` is set; otherwise its sizes are exact, because the cone-beam forward and
    adjoint cost grows with the slice footprint. Custom vectors get exact sizes when concrete.

    A traced geometry is planned from the values JAX knows behind its tracers (``jax.grad`` outside
    ``jit``); under ``jit`` a parallel beam takes the worst case and a cone beam the tilt sweep, which needs
    ``sod`` and the view angles concrete (else give :func:`family_plan` concrete geometries to cover).
    """
    custom = geometry.custom_vectors is not None
    known = geometry if geometry.is_concrete else nominal_geometry(geometry)
    if geometry.beam == "parallel":
        if not custom or known is None:      # |β| ≤ 1 for every view (the stack axis is dominant)
            return Plan("parallel", tuple(_parallel_stack(grid, k) for k in range(3)))
        vec = np.asarray(known.vectors(), dtype=float)
        return Plan("parallel", tuple(_parallel_stack(grid, k, vec[_may_use(vec, grid, "parallel", k)])
                                      for k in range(3)))
    own = [np.asarray(known.vectors(), dtype=float)] if known is not None else []
    sweep = not custom and (any_tilt or not geometry.is_concrete)
    samples = _tilt_sweep(geometry) if sweep else []
    if not own and not samples:
        raise ValueError("a traced cone-beam from_vectors geometry is not allowed under jax.jit without plan_for: "
                         "give Projector(..., plan_for=[concrete geometries around the traced one])")
    stacks = []
    for k in range(3):
        swept = _merge([_cone_stack(grid, k, v[_may_use(v, grid, "cone", k)]) for v in samples])
        merged = _merge([_widen(swept, 8) if swept is not None else None]
                        + [_cone_stack(grid, k, v[_may_use(v, grid, "cone", k)]) for v in own])
        stacks.append(merged if merged is not None else _parallel_stack(grid, k))   # no view uses stack k
    return Plan("cone", tuple(stacks))


def _tilt_sweep(geometry: Geometry) -> list[np.ndarray]:
    """Vectors of the sources of a cone-beam ``geometry`` at every tilt 0°, 1°, …, 89° and COR 0 (the detector,
    which the plan does not depend on, is a placeholder)."""
    sod, angles = (_known_value(geometry.sod), _known_value(geometry.angles_deg))
    if sod is None or angles is None:
        raise ValueError("a cone-beam geometry with traced sod or angles_deg is not allowed under jax.jit without "
                         "plan_for: give Projector(..., plan_for=[concrete geometries around the traced one])")
    base = Geometry.cone(0.0, sod=float(sod), sdd=2.0 * float(sod), det_shape=geometry.det_shape,
                         angles_deg=np.asarray(angles, dtype=float))
    return [base.replace(tilt_deg=t).vectors() for t in np.linspace(0.0, 89.0, 90)]


def _known_value(x):
    """The value behind ``x``: ``x`` when concrete, the primal value JAX knows behind a tracer (``jax.grad``
    outside ``jit``), or None."""
    try:
        return jax.tree.map(lambda leaf: leaf if is_concrete(leaf) else concrete_or_error(np.asarray, leaf), x)
    except jax.errors.ConcretizationTypeError:
        return None


def nominal_geometry(geometry: Geometry) -> Geometry | None:
    """The concrete geometry behind a traced one where JAX knows every value, else None."""
    values = _known_value(geometry)
    return values if values is not None and values.is_concrete else None


@functools.lru_cache(maxsize=64)
def family_plan(geometries: tuple[Geometry, ...], grid: VolumeGrid) -> tuple[Plan, ViewOrder | None]:
    """One plan valid for every geometry of a family of concrete geometries of one scan (same beam, detector
    and view count: e.g. the corners and centre of a calibration search box), and the views grouped by stack
    when every view keeps its stack over the family (else None: the stacks are decided per view at run time).

    With the grouping fixed the projector needs no per-view switch and keeps its exact adjoint; it then
    serves a traced geometry anywhere inside the family (the plan depends on the rays, not on the detector).
    """
    first = geometries[0]
    for g in geometries:
        if not g.is_concrete or (g.beam, g.det_shape, g.n_views) != (first.beam, first.det_shape, first.n_views):
            raise ValueError("plan_for is not allowed to mix geometries: give concrete geometries of one beam, "
                             "detector shape and view count")
    vectors = [np.asarray(g.vectors(), dtype=float) for g in geometries]
    groups = [dominant_axes(v, grid, first.beam) for v in vectors]
    union = make_plan(Geometry.from_vectors(np.concatenate(vectors), first.det_shape, first.beam), grid)
    if all(np.array_equal(g, groups[0]) for g in groups):
        return union, group_views(groups[0])
    # stacks change inside the family: plan for every tilt (views in between may take either stack)
    return (make_plan(first, grid, any_tilt=True) if first.custom_vectors is None else union), None


def _merge(plans: list[StackPlan | None]) -> StackPlan | None:
    plans = [p for p in plans if p is not None]
    if not plans:
        return None
    first = plans[0]
    pad = tuple(max(p.pad[i] for p in plans) for i in range(2))
    extra = tuple(max(p.inter[i] - p.pad[i] for p in plans) for i in range(2))
    region = tuple(max(p.region[i] for p in plans) for i in range(2))
    return dataclasses.replace(first, pad=pad, inter=(pad[0] + extra[0], pad[1] + extra[1]), region=region)


def _widen(p: StackPlan, margin: int) -> StackPlan:
    return dataclasses.replace(p, pad=(p.pad[0] + margin, p.pad[1] + margin),
                               inter=(p.inter[0] + 2 * margin, p.inter[1] + 2 * margin),
                               region=(p.region[0] + margin, p.region[1] + margin))

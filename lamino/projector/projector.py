"""The X-ray transform of a CT/CL geometry on a voxel grid: ``forward``, exact ``adjoint``, fast ``backproject``.

``forward`` gives line integrals ∫μ dl (dimensionless for μ in 1/mm) by a Joseph-type shear-warp projector
(see ``_shearwarp``). ``adjoint`` is its exact transpose (⟨A x, y⟩ = ⟨x, Aᵀ y⟩). ``backproject`` is a
voxel-driven gather for FBP/FDK: each voxel takes the (bilinearly interpolated) detector value where it
projects, weighted by V_voxel / (pixel area ⟂ ray) at that voxel, which equals the adjoint on smooth data.

Views are processed one at a time inside compiled loops (several side by side on a GPU), so memory stays near
the size of the volume and the projections: slices are read in the volume's own layout (only x-dominant views
need one swapped copy) and each view's image is written straight to its place in the output. The grouping of
views by slice stack is passed to the compiled functions as data, and the plane sizes of parallel beam (and
of every backprojection) hold for any tilt, so a tilt sweep compiles once per view count. On a multi-core CPU
the views are split over JAX CPU devices (see ``lamino.config``), and cone beam runs its slice loops and warps in
native kernels (``_native``), a few views per call, for concrete inputs; traced inputs take the XLA kernels,
which are differentiable. On a GPU everything runs on the default device.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lamino import config
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import _native
from lamino.projector import _shearwarp as sw
from lamino.projector._plan import GROUP_ORDER, Plan, ViewOrder, family_plan, has_x_views, make_plan, view_order


def _dominant_k(vec, grid: VolumeGrid, beam: str):
    """Traced version of ``_plan.dominant_axes`` for one view."""
    ray = jnp.asarray(grid.center[::-1], jnp.float32) - vec[0:3] if beam == "cone" else vec[0:3]
    return jnp.argmax(jnp.abs(ray[::-1]) / jnp.asarray(grid.voxel_size, jnp.float32))


def forward_project(vol, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1,
                    views: ViewOrder | None = None, swapped=None, has_x: bool = True, native: bool = False):
    """Line integrals (n_views, rows, cols) of ``vol`` for per-view 12-vectors (traceable in both).

    ``views``: the views grouped by stack (:func:`_plan.view_order`); None decides each view's stack at run
    time (a traced geometry). ``swapped``: the volume's (nz, nx, ny) copy that x-dominant views read, if
    made already. ``has_x``: False when ``views`` has no x-dominant view (that copy is then not made).
    ``native``: cone beam on CPU devices, ``batch`` views at a time through the native slice kernels
    (concrete inputs only).
    """
    vol = jnp.asarray(vol, jnp.float32)
    vectors = jnp.asarray(vectors, jnp.float32)
    view = functools.partial(sw.forward_view, beam=plan.beam, det_shape=det_shape)
    if views is None:
        sources = [sw.slice_source(vol, k) for k in range(3)]
        branches = [functools.partial(lambda v, k: view(sources[k], v, plan.stacks[k]), k=k) for k in range(3)]
        return lax.map(lambda v: lax.switch(_dominant_k(v, grid, plan.beam), branches, v), vectors)
    views, has_x = _traceable_views(views, has_x)
    # each view is written straight into the output at its own index: no per-group buffers
    out = jnp.zeros((vectors.shape[0], *det_shape), jnp.float32)
    for k, lo, hi in _groups(views):
        if k == 2 and not has_x:
            continue
        src = (swapped if swapped is not None else sw.slice_source(vol, 2)) if k == 2 else vol
        project = functools.partial(view, src, st=plan.stacks[k])
        project_batch = (functools.partial(sw.forward_views_native, src, st=plan.stacks[k], det_shape=det_shape)
                         if native else jax.vmap(project))
        if batch <= 1 and not native:
            def one(i, out, project=project):
                j = views.order[i]
                return lax.dynamic_update_index_in_dim(out, project(vectors[j]), j, 0)

            out = lax.fori_loop(lo, hi, one, out)
            continue

        def step(t, out, project_batch=project_batch, lo=lo, hi=hi):    # ``batch`` views at a time
            j, valid = _batch_views(views, lo, hi, t, batch)
            return out.at[jnp.where(valid, j, out.shape[0])].set(project_batch(vectors[j]), mode="drop")

        out = lax.fori_loop(0, _n_batches(lo, hi, batch), step, out)
    return out


def _traceable_views(views: ViewOrder, has_x: bool) -> tuple[ViewOrder, bool]:
    """``views`` with the order as a JAX array (numpy counts stay numpy: see :func:`_groups`); ``has_x``
    also False when concrete counts show no x-dominant view."""
    if isinstance(views.counts, np.ndarray):
        has_x = has_x and has_x_views(views)
    return ViewOrder(jnp.asarray(views.order, jnp.int32), views.counts), has_x


def _groups(views: ViewOrder):
    """(k, first, end) positions in ``views.order`` of each stack's views, in ``GROUP_ORDER``.

    Python ints when the counts are numpy, so that the view loops have static bounds and reverse-mode
    differentiation works under ``jax.jit`` too; traced values when the counts are data (compiled Projector).
    """
    counts = views.counts
    if isinstance(counts, np.ndarray):
        ends = np.cumsum(counts)
        return [(k, int(ends[g] - counts[g]), int(ends[g])) for g, k in enumerate(GROUP_ORDER)]
    counts = jnp.asarray(counts, jnp.int32)
    ends = jnp.cumsum(counts)
    return [(k, ends[g] - counts[g], ends[g]) for g, k in enumerate(GROUP_ORDER)]


def _n_batches(lo, hi, batch: int):
    """Steps of ``batch`` views that cover positions [lo, hi) of a view order."""
    return (hi - lo + batch - 1) // batch


def _batch_views(views: ViewOrder, lo, hi, t, batch: int):
    """View indices of batch step ``t`` over positions [lo, hi), and which are real (the tail repeats the last)."""
    i = lo + t * batch + jnp.arange(batch)
    return views.order[jnp.minimum(i, hi - 1)], i < hi


def _accumulate(proj, vectors, plan: Plan, grid: VolumeGrid, per_view, views: ViewOrder, batch: int = 1,
                has_x: bool = True, per_batch=None):
    """Σ over views of ``per_view(acc, proj_v, vec_v, stack_plan)``, returned as a (nz, ny, nx) volume.

    ``acc`` is laid out as the view's slice source (:func:`_shearwarp.slice_source`). The x-dominant views
    (k = 2, swapped layout) are summed first and swapped once; the others then add into that volume in
    place, so at most two volume-sized buffers are live. With ``batch`` > 1, each step adds the contributions
    of ``batch`` views computed side by side (GPU). ``per_batch(acc, projs, vecs, stack_plan)``, if given,
    adds a whole batch in place instead (the native CPU kernels).
    """
    views, has_x = _traceable_views(views, has_x)
    vol = None
    for k, lo, hi in _groups(views):
        if k == 2 and not has_x:
            continue
        st = plan.stacks[k]
        shape = grid.shape if k != 2 else (grid.shape[0], grid.shape[2], grid.shape[1])
        start = vol if vol is not None else jnp.zeros(shape, jnp.float32)
        if per_batch is not None:   # ``batch`` views per step, added in place; views past the end add zero
            def step(t, acc, st=st, lo=lo, hi=hi):
                j, valid = _batch_views(views, lo, hi, t, batch)
                return per_batch(acc, jnp.where(valid[:, None, None], proj[j], 0.0), vectors[j], st)

            acc = lax.fori_loop(0, _n_batches(lo, hi, batch), step, start)
        elif batch <= 1:    # one view per step, its projection read in place
            def one(i, acc, st=st):
                j = views.order[i]
                return per_view(acc, proj[j], vectors[j], st)

            acc = lax.fori_loop(lo, hi, one, start)
        else:               # ``batch`` views side by side (GPU); views past the group's end add zero
            def step(t, acc, st=st, shape=shape, lo=lo, hi=hi):
                j, valid = _batch_views(views, lo, hi, t, batch)
                p = jnp.where(valid[:, None, None], proj[j], 0.0)
                parts = jax.vmap(lambda p, v: per_view(jnp.zeros(shape, jnp.float32), p, v, st))(p, vectors[j])
                return acc + jnp.sum(parts, axis=0)

            acc = lax.fori_loop(0, _n_batches(lo, hi, batch), step, start)
        vol = sw.volume_from_source(acc, k)
    return vol if vol is not None else jnp.zeros(grid.shape, jnp.float32)


def _concrete_views(views: ViewOrder | None, vectors, plan: Plan, grid: VolumeGrid, what: str) -> ViewOrder:
    if views is not None:
        return views
    if isinstance(vectors, jax.core.Tracer):
        raise ValueError(f"{what} with traced geometry vectors is not allowed: give views=view_order(...) of "
                         "the nominal geometry, or use jax.vjp of forward_project")
    return view_order(np.asarray(vectors), grid, plan.beam)


def adjoint_project(proj, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1,
                    views: ViewOrder | None = None, has_x: bool = True, native: bool = False):
    """Exact transpose of :func:`forward_project` (views grouped by stack, given or from concrete vectors)."""
    views = _concrete_views(views, vectors, plan, grid, "adjoint_project")
    per_view = functools.partial(_adjoint_view, beam=plan.beam, det_shape=det_shape)
    per_batch = functools.partial(sw.adjoint_views_native, det_shape=det_shape) if native else None
    return _accumulate(jnp.asarray(proj, jnp.float32), jnp.asarray(vectors, jnp.float32), plan, grid,
                       per_view, views, batch=batch, has_x=has_x, per_batch=per_batch)


def _adjoint_view(acc, p, v, st, beam, det_shape):
    return sw.adjoint_view(acc, p, v, st, beam, det_shape)


def backproject(proj, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1,
                views: ViewOrder | None = None, has_x: bool = True, native: bool = False):
    """Voxel-driven backprojection (views as in :func:`adjoint_project`); equals the adjoint on smooth data."""
    views = _concrete_views(views, vectors, plan, grid, "backproject")
    voxel_volume = float(np.prod(grid.voxel_size))

    def per_view(acc, p, v, st):
        return sw.backproject_view(acc, p, v, st, plan.beam, det_shape, voxel_volume)

    def per_batch(acc, p, v, st):
        return sw.backproject_views_native(acc, p, v, st, det_shape, voxel_volume)

    return _accumulate(jnp.asarray(proj, jnp.float32), jnp.asarray(vectors, jnp.float32), plan, grid,
                       per_view, views, batch=batch, has_x=has_x, per_batch=per_batch if native else None)


NATIVE_VIEWS_PER_BATCH = 4     # cone beam on CPU: views per native call (the volume is read once per call)


class _Shard(NamedTuple):
    device: Any
    vectors: jax.Array      # this device's views (contiguous in view order)
    views: ViewOrder        # … grouped by stack, on the device
    has_x: bool             # whether any of them is x-dominant (reads the swapped volume)
    fns: tuple              # compiled forward, adjoint, backproject


class Projector:
    """Forward, adjoint and backprojection for one :class:`Geometry` on one :class:`VolumeGrid`; a linear
    operator ``P @ vol``, ``P.T @ proj`` (the exact adjoint), ``P.shape`` = (projection shape, volume shape).

    Compiled once per (geometry, grid); parallel-beam geometries that differ only in tilt share their
    compilations, and so do the backprojectors of any beam. Inputs may be numpy or JAX arrays (numpy arrays
    are read in place on CPU devices); outputs are float32 JAX arrays. Volumes are μ in 1/mm with shape
    ``grid.shape``; projections have shape (n_views, rows, cols).

    The geometry may hold JAX tracers (``jax.grad`` or ``jax.jit`` with respect to any of its parameters);
    the projector then runs the differentiable XLA kernels. ``plan_for``: concrete geometries whose plan
    covers such a traced geometry (e.g. the corners of a search box) — needed under ``jit`` for a traced
    cone-beam ``sod``, angles or vectors; when every view keeps its slice stack over them the compiled
    code has no per-view switch and ``backproject`` works too.
    """

    def __init__(self, geometry: Geometry, grid: VolumeGrid, *, plan_for=None, devices=None,
                 views_per_batch: int | None = None):
        if not isinstance(geometry, Geometry):
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino.geometry.Geometry")
        if not isinstance(grid, VolumeGrid):
            raise ValueError(f"grid={type(grid).__name__} is not allowed: give a lamino.geometry.VolumeGrid")
        self.geometry = geometry
        self.grid = grid
        self.vol_shape = tuple(grid.shape)
        self.proj_shape = (geometry.n_views, *geometry.det_shape)
        all_vectors = geometry.vectors()
        self._vectors = jnp.asarray(all_vectors, jnp.float32)
        self._native = False
        if not geometry.is_concrete:        # a traced geometry: the XLA kernels, compiled by the caller
            self._shards = None
            self._plan, self._views = (family_plan(_concrete_family(plan_for, geometry), grid) if plan_for
                                       else (make_plan(geometry, grid), None))
            return
        self._plan = make_plan(geometry, grid)
        # the backprojector's cost does not grow with the plane sizes: plan it for any tilt, so that
        # FBP / FDK of a tilt sweep compile once per view count
        bp_plan = make_plan(geometry, grid, any_tilt=True)
        vectors = np.asarray(all_vectors, dtype=np.float32)
        self._views = view_order(vectors, grid, geometry.beam)     # for traced inputs (jax.grad of a caller)
        devices = list(devices) if devices is not None else config.compute_devices()
        on_cpu = all(d.platform == "cpu" for d in devices)
        # cone beam on CPU: the native slice kernels, when built. They serve the concrete inputs of the
        # compiled functions (traced inputs take the differentiable XLA kernels), several views per call.
        native = self._native = geometry.beam == "cone" and on_cpu and _native.available()
        if views_per_batch is None:
            views_per_batch = (NATIVE_VIEWS_PER_BATCH if native else 1) if on_cpu else 16
        if isinstance(views_per_batch, bool) or not isinstance(views_per_batch, int) or views_per_batch < 1:
            raise ValueError(f"views_per_batch={views_per_batch!r} is not allowed: give an integer ≥ 1")
        parts = [p for p in np.array_split(np.arange(geometry.n_views), len(devices)) if p.size]
        self._shards = []
        for dev, idx in zip(devices, parts, strict=False):
            views = view_order(vectors[idx], grid, geometry.beam)
            has_x = has_x_views(views)
            self._shards.append(_Shard(dev, jax.device_put(vectors[idx], dev),
                                       ViewOrder(*(jax.device_put(a, dev) for a in views)), has_x,
                                       _compiled(self._plan, bp_plan, grid, geometry.det_shape, views_per_batch,
                                                 has_x, native)))

    # ----------------------------------------------------------------------------------- linear operator
    @property
    def shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(output shape, input shape) of :meth:`forward`: ((n_views, rows, cols), (nz, ny, nx))."""
        return (self.proj_shape, self.vol_shape)

    @property
    def T(self) -> Adjoint:  # noqa: N802  (the operator-algebra name)
        """The exact adjoint as an operator: ``P.T @ proj`` is :meth:`adjoint`."""
        return Adjoint(self)

    def __matmul__(self, vol):
        return self.forward(vol)

    # ----------------------------------------------------------------------------------- checks
    def _check(self, arr, shape, name):
        if tuple(np.shape(arr)) != shape:
            raise ValueError(f"{name} with shape {tuple(np.shape(arr))} is not allowed: expected {shape}")

    # ----------------------------------------------------------------------------------- operators
    def forward(self, vol):
        """Line integrals ∫μ dl, (n_views, rows, cols), for a μ volume (nz, ny, nx) in 1/mm."""
        self._check(vol, self.vol_shape, "volume")
        if self._shards is None or isinstance(vol, jax.core.Tracer):
            return forward_project(vol, self._vectors, self._plan, self.grid, self.geometry.det_shape,
                                   views=self._views)
        user_array = not isinstance(vol, jax.Array)
        host = _host_view(vol)
        vol = host if host is not None else vol
        # all copies before any compute. A host array is shared by the CPU devices without copying, and so
        # is the one swapped copy that x-dominant views read (made once, not once per device).
        swapped = None
        if any(s.has_x for s in self._shards):
            swapped = _swap_last_axes(jax.device_put(vol, self._shards[0].device))
            if host is not None and len(self._shards) > 1:
                swapped = np.asarray(swapped)
        inputs = [(jax.device_put(vol, s.device), jax.device_put(swapped, s.device) if s.has_x else None)
                  for s in self._shards]
        outs = [s.fns[0](x, s.vectors, views=s.views, swapped=xs)
                for (x, xs), s in zip(inputs, self._shards, strict=True)]
        _wait_if_shared(outs, user_array)
        del inputs, swapped
        return _gather(outs, concat=True)

    def adjoint(self, proj):
        """Exact transpose of :meth:`forward`: a (nz, ny, nx) volume."""
        self._check(proj, self.proj_shape, "projections")
        return self._per_shard(proj, 1)

    def backproject(self, proj):
        """Fast voxel-driven backprojection (nz, ny, nx); agrees with :meth:`adjoint` on smooth data."""
        self._check(proj, self.proj_shape, "projections")
        return self._per_shard(proj, 2)

    def __call__(self, vol):
        return self.forward(vol)

    def _per_shard(self, proj, which: int):
        if self._shards is None and self._views is None:      # traced geometry, stacks decided per view
            if which == 2:
                raise ValueError("backproject() is not allowed on a traced geometry without a fixed view grouping: "
                                 "give Projector(..., plan_for=[concrete geometries]) or use adjoint()")
            transpose = jax.linear_transpose(self.forward, jax.ShapeDtypeStruct(self.vol_shape, jnp.float32))
            return transpose(jnp.asarray(proj, jnp.float32))[0]
        if self._shards is None or isinstance(proj, jax.core.Tracer):
            fn = (adjoint_project, backproject)[which - 1]
            return fn(proj, self._vectors, self._plan, self.grid, self.geometry.det_shape, views=self._views)
        user_array = not isinstance(proj, jax.Array)
        host = _host_view(proj)
        proj = host if host is not None else proj
        # slice and place every shard's views before launching any shard: a slice of a device array queued
        # behind a running shard on that device would serialise the devices (host slices are not copied)
        inputs, start = [], 0
        for s in self._shards:
            inputs.append(jax.device_put(proj[start:start + s.vectors.shape[0]], s.device))
            start += s.vectors.shape[0]
        outs = [s.fns[which](x, s.vectors, views=s.views) for x, s in zip(inputs, self._shards, strict=True)]
        _wait_if_shared(outs, user_array)
        del inputs
        return _gather(outs, concat=False)


class Adjoint:
    """The exact adjoint of a :class:`Projector` as an operator: ``P.T @ proj``; ``P.T.T`` is ``P``."""

    def __init__(self, projector: Projector):
        self.projector = projector

    @property
    def shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """((nz, ny, nx), (n_views, rows, cols))."""
        return self.projector.shape[::-1]

    @property
    def T(self) -> Projector:  # noqa: N802
        return self.projector

    def __matmul__(self, proj):
        return self.projector.adjoint(proj)

    def __call__(self, proj):
        return self.projector.adjoint(proj)


def _concrete_family(plan_for, geometry: Geometry) -> tuple[Geometry, ...]:
    """``plan_for`` as a tuple of concrete geometries of ``geometry``'s beam, detector and view count."""
    family = (plan_for,) if isinstance(plan_for, Geometry) else tuple(plan_for)
    for g in family:
        if not isinstance(g, Geometry) or not g.is_concrete:
            raise ValueError("plan_for is not allowed to hold anything but concrete lamino Geometry objects")
        if (g.beam, g.det_shape, g.n_views) != (geometry.beam, geometry.det_shape, geometry.n_views):
            raise ValueError(f"plan_for is not allowed to hold a {g.beam}-beam geometry of {g.n_views} views on "
                             f"{g.det_shape}: give geometries of the projector's beam ({geometry.beam}), "
                             f"view count ({geometry.n_views}) and detector shape {geometry.det_shape}")
    return family


def _wait_if_shared(outs, user_array: bool) -> None:
    """Wait for the shards when they read a caller's numpy array in place (CPU devices do not copy it), so
    that changing that array after the call cannot change the result."""
    if user_array:
        jax.block_until_ready(outs)


def _host_view(arr) -> np.ndarray | None:
    """``arr`` as a float32 numpy array without copying where possible (numpy input, or a JAX array on CPU).

    None for arrays on an accelerator, which are placed device to device instead.
    """
    if not isinstance(arr, jax.Array):
        return np.asarray(arr, dtype=np.float32)
    if arr.dtype == jnp.float32 and all(d.platform == "cpu" for d in arr.devices()):
        return np.asarray(arr)          # a view of the CPU buffer
    return None


def _gather(outs, concat: bool):
    """Shard results on the first shard's device: projections concatenated, volumes summed.

    Each remote result is freed as soon as it is copied, and the sum is computed in place.
    """
    if len(outs) == 1:
        return outs[0]
    dev = outs[0].devices().pop()
    local = [outs[0]]
    for i in range(1, len(outs)):
        local.append(jax.device_put(outs[i], dev))
        outs[i] = None
    if concat:
        return jnp.concatenate(local, axis=0)
    total = local[0]
    for part in local[1:]:
        total = _add_in_place(total, part)
    return total


@functools.partial(jax.jit, donate_argnums=0)
def _add_in_place(a, b):
    return a + b


@jax.jit
def _swap_last_axes(vol):
    return sw.slice_source(vol, 2)


def _compiled(plan: Plan, bp_plan: Plan, grid: VolumeGrid, det_shape, batch: int, has_x: bool, native: bool):
    """Jitted forward / adjoint (``plan``) and backproject (``bp_plan``)."""
    args = (grid, det_shape, batch, has_x, native)
    return (_jitted(forward_project, plan, *args), _jitted(adjoint_project, plan, *args),
            _jitted(backproject, bp_plan, *args))


@functools.lru_cache(maxsize=192)
def _jitted(fn, plan: Plan, grid: VolumeGrid, det_shape, batch: int, has_x: bool, native: bool):
    """``fn`` jitted for one plan (cached: equal plans share one function and its compilations)."""
    return jax.jit(functools.partial(fn, plan=plan, grid=grid, det_shape=det_shape, batch=batch, has_x=has_x,
                                     native=native))

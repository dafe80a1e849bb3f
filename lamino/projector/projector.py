"""The X-ray transform of a CT/CL geometry on a voxel grid: ``forward``, exact ``adjoint``, fast ``backproject``.

``forward`` gives line integrals ∫μ dl (dimensionless for μ in 1/mm) by a Joseph-type shear-warp projector
(see ``_shearwarp``). ``adjoint`` is its exact transpose (⟨A x, y⟩ = ⟨x, Aᵀ y⟩). ``backproject`` is a
voxel-driven gather for FBP/FDK: each voxel takes the (bilinearly interpolated) detector value where it
projects, weighted by V_voxel / (pixel area ⟂ ray) at that voxel, which equals the adjoint on smooth data.

Views are processed one at a time inside compiled loops, so memory stays near the size of the volume and the
projections. On a multi-core CPU the views are split over JAX CPU devices (see ``lamino._jax``); on a GPU
everything runs on the default device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lamino import _jax
from lamino.geometry import Geometry, VolumeGrid
from lamino.projector import _shearwarp as sw
from lamino.projector._plan import Plan, make_plan


def _dominant_k(vec, grid: VolumeGrid, beam: str):
    """Traced version of ``_plan.dominant_axes`` for one view."""
    ray = jnp.asarray(grid.center[::-1], jnp.float32) - vec[0:3] if beam == "cone" else vec[0:3]
    return jnp.argmax(jnp.abs(ray[::-1]) / jnp.asarray(grid.voxel_size, jnp.float32))


def _view_batches(a, batch: int, zeros: bool = False):
    """(n, …) per-view array → (⌈n / batch⌉, batch, …), padded with zeros or copies of the last view."""
    n = a.shape[0]
    extra = -(-n // batch) * batch - n
    fill = jnp.zeros((extra, *a.shape[1:]), a.dtype) if zeros else jnp.repeat(a[-1:], extra, axis=0)
    return jnp.concatenate([a, fill]).reshape(-1, batch, *a.shape[1:])


def _map_views(fn, views, batch: int):
    """``lax.map`` of ``fn`` over per-view ``views``, ``batch`` views at a time via ``vmap``.

    Batching fills a GPU (each slice step becomes one kernel over many views); on a CPU one view at a time
    is fastest. Padded views' results are dropped.
    """
    if batch <= 1:
        return lax.map(fn, views)
    out = lax.map(jax.vmap(fn), _view_batches(views, batch))
    return out.reshape(-1, *out.shape[2:])[:views.shape[0]]


def forward_project(vol, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1, swapped=None):
    """Line integrals (n_views, rows, cols) of ``vol`` for per-view 12-vectors (traceable in both).

    ``swapped``: the volume with its last two axes swapped, if already made (else it is made when needed).
    """
    vol = jnp.asarray(vol, jnp.float32)
    vectors = jnp.asarray(vectors, jnp.float32)
    view = functools.partial(sw.forward_view, beam=plan.beam, det_shape=det_shape)
    if plan.groups is not None:
        # each view is written straight into the output, in view order, with no per-group buffers
        out = jnp.zeros((vectors.shape[0], *det_shape), jnp.float32)
        for k, idx in enumerate(plan.groups):
            if not idx:
                continue
            src = swapped if k == 2 and swapped is not None else sw.slice_source(vol, k)
            st, sel = plan.stacks[k], jnp.asarray(idx, jnp.int32)
            if batch > 1:
                imgs = _map_views(lambda v, src=src, st=st: view(src, v, st), vectors[sel], batch)
                out = out.at[sel].set(imgs, unique_indices=True, indices_are_sorted=True)
                continue

            def one(i, out, src=src, st=st, sel=sel):
                return lax.dynamic_update_index_in_dim(out, view(src, vectors[sel[i]], st), sel[i], 0)

            out = lax.fori_loop(0, len(idx), one, out)
        return out
    sources = [sw.slice_source(vol, k) for k in range(3)]
    branches = [functools.partial(lambda v, k: view(sources[k], v, plan.stacks[k]), k=k) for k in range(3)]
    return lax.map(lambda v: lax.switch(_dominant_k(v, grid, plan.beam), branches, v), vectors)


def _accumulate(proj, vectors, plan: Plan, grid: VolumeGrid, per_view, batch: int = 1):
    """Σ over views of ``per_view(acc, proj_v, vec_v, stack_plan)``, returned as a (nz, ny, nx) volume.

    ``acc`` is laid out as the view's stack source (:func:`_shearwarp.slice_source`). The x-dominant group
    (k = 2, swapped layout) is summed first and swapped once; the other groups then add into that volume in
    place, so at most two volume-sized buffers are live. With ``batch`` > 1, each step adds the contributions
    of ``batch`` views computed side by side (GPU).
    """
    vol = None
    for k in (2, 0, 1):
        idx = plan.groups[k]
        if not idx:
            continue
        st = plan.stacks[k]
        shape = grid.shape if k != 2 else (grid.shape[0], grid.shape[2], grid.shape[1])
        start = vol if vol is not None else jnp.zeros(shape, jnp.float32)
        if batch <= 1:      # one view per step, read in place (no copy of the group's projections)
            def body(acc, j, st=st):
                return per_view(acc, proj[j], vectors[j], st), None

            acc, _ = lax.scan(body, start, jnp.asarray(idx, jnp.int32))
        else:               # ``batch`` views side by side (GPU); zero projections of padded views add nothing
            def one(p, v, st=st, shape=shape):
                return per_view(jnp.zeros(shape, jnp.float32), p, v, st)

            def body_batch(acc, pv):
                return acc + jnp.sum(jax.vmap(one)(pv[0], pv[1]), axis=0), None

            sel = np.array(idx)
            pv = (_view_batches(proj[sel], batch, zeros=True), _view_batches(vectors[sel], batch))
            acc, _ = lax.scan(body_batch, start, pv)
        vol = sw.volume_from_source(acc, k)
    return vol if vol is not None else jnp.zeros(grid.shape, jnp.float32)


def adjoint_project(proj, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1):
    """Exact transpose of :func:`forward_project` (concrete geometry)."""
    per_view = functools.partial(_adjoint_view, beam=plan.beam, det_shape=det_shape)
    return _accumulate(jnp.asarray(proj, jnp.float32), jnp.asarray(vectors, jnp.float32), plan, grid,
                       per_view, batch=batch)


def _adjoint_view(acc, p, v, st, beam, det_shape):
    return sw.adjoint_view(acc, p, v, st, beam, det_shape)


def backproject(proj, vectors, plan: Plan, grid: VolumeGrid, det_shape, batch: int = 1):
    """Voxel-driven backprojection (concrete geometry); equals the adjoint on smooth data."""
    voxel_volume = float(np.prod(grid.voxel_size))

    def per_view(acc, p, v, st):
        return sw.backproject_view(acc, p, v, st, plan.beam, det_shape, voxel_volume)

    return _accumulate(jnp.asarray(proj, jnp.float32), jnp.asarray(vectors, jnp.float32), plan, grid,
                       per_view, batch=batch)


class Projector:
    """Forward, adjoint and backprojection for one :class:`Geometry` on one :class:`VolumeGrid`.

    Compiled once per (geometry, grid). Inputs may be numpy or JAX arrays; outputs are float32 JAX arrays.
    Volumes are μ in 1/mm with shape ``grid.shape``; projections have shape (n_views, rows, cols).
    """

    def __init__(self, geometry: Geometry, grid: VolumeGrid, *, devices=None, views_per_batch: int | None = None):
        if not isinstance(geometry, Geometry):
            raise ValueError(f"geometry={type(geometry).__name__} is not allowed: give a lamino.geometry.Geometry")
        if not isinstance(grid, VolumeGrid):
            raise ValueError(f"grid={type(grid).__name__} is not allowed: give a lamino.geometry.VolumeGrid")
        self.geometry = geometry
        self.grid = grid
        self.vol_shape = tuple(grid.shape)
        self.proj_shape = (geometry.n_views, *geometry.det_shape)
        # the whole geometry as one plan: used inside traces (jax.grad / jit of the caller); for a traced
        # geometry the dominant axes are decided per view at run time
        self._plan = make_plan(geometry, grid)
        all_vectors = geometry.vectors()
        self._vectors = jnp.asarray(all_vectors, jnp.float32)
        if not geometry.is_concrete:
            self._shards = None
            return
        vectors = np.asarray(all_vectors, dtype=np.float32)
        devices = list(devices) if devices is not None else _jax.compute_devices()
        if views_per_batch is None:
            views_per_batch = 1 if devices[0].platform == "cpu" else 16
        if isinstance(views_per_batch, bool) or not isinstance(views_per_batch, int) or views_per_batch < 1:
            raise ValueError(f"views_per_batch={views_per_batch!r} is not allowed: give an integer ≥ 1")
        parts = [p for p in np.array_split(np.arange(geometry.n_views), len(devices)) if p.size]
        self._shards = []
        for dev, views in zip(devices, parts, strict=False):
            sub = Geometry.from_vectors(all_vectors[views], geometry.det_shape, geometry.beam)
            plan = make_plan(sub, grid)
            self._shards.append((dev, jax.device_put(vectors[views], dev),
                                 _compiled(plan, grid, geometry.det_shape, views_per_batch)))
        self._swapped_shards = sum(_uses_swapped(fns) for _, _, fns in self._shards)

    # ----------------------------------------------------------------------------------- checks
    def _check(self, arr, shape, name):
        if tuple(np.shape(arr)) != shape:
            raise ValueError(f"{name} with shape {tuple(np.shape(arr))} is not allowed: expected {shape}")

    # ----------------------------------------------------------------------------------- operators
    def forward(self, vol):
        """Line integrals ∫μ dl, (n_views, rows, cols), for a μ volume (nz, ny, nx) in 1/mm."""
        self._check(vol, self.vol_shape, "volume")
        if self._shards is None or isinstance(vol, jax.core.Tracer):
            return forward_project(vol, self._vectors, self._plan, self.grid, self.geometry.det_shape)
        host = _host_view(vol)
        # all copies before any compute; a host array is shared by the CPU devices without copying, and so
        # is the one swapped copy that x-dominant views read (made once, not once per device)
        swapped = None
        if host is not None and self._swapped_shards > 1:
            swapped = np.asarray(_swap_last_axes(jax.device_put(host, self._shards[0][0])))
        inputs = [(jax.device_put(host if host is not None else vol, dev),
                   jax.device_put(swapped, dev) if swapped is not None and _uses_swapped(fns) else None)
                  for dev, _, fns in self._shards]
        outs = [fns[0](x, vec, swapped=xs) for (x, xs), (_, vec, fns) in zip(inputs, self._shards, strict=True)]
        del inputs, swapped
        return _gather(outs, concat=True)

    def adjoint(self, proj):
        """Exact transpose of :meth:`forward`: a (nz, ny, nx) volume."""
        self._check(proj, self.proj_shape, "projections")
        self._need_concrete("adjoint")
        return self._per_shard(proj, 1)

    def backproject(self, proj):
        """Fast voxel-driven backprojection (nz, ny, nx); agrees with :meth:`adjoint` on smooth data."""
        self._check(proj, self.proj_shape, "projections")
        self._need_concrete("backproject")
        return self._per_shard(proj, 2)

    def __call__(self, vol):
        return self.forward(vol)

    def _need_concrete(self, what):
        if self._shards is None:
            raise ValueError(f"{what}() is not allowed on a traced geometry: use jax.vjp of forward, "
                             "or build the Projector from a concrete geometry")

    def _per_shard(self, proj, which: int):
        if isinstance(proj, jax.core.Tracer):
            fn = (adjoint_project, backproject)[which - 1]
            return fn(proj, self._vectors, self._plan, self.grid, self.geometry.det_shape)
        host = _host_view(proj)
        proj = host if host is not None else proj
        # slice and place every shard's views before launching any shard: a slice of a device array queued
        # behind a running shard on that device would serialise the devices (host slices are not copied)
        inputs, start = [], 0
        for dev, vec, _ in self._shards:
            inputs.append(jax.device_put(proj[start:start + vec.shape[0]], dev))
            start += vec.shape[0]
        outs = [fns[which](x, vec) for x, (_, vec, fns) in zip(inputs, self._shards, strict=True)]
        del inputs
        return _gather(outs, concat=False)


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


def _uses_swapped(fns) -> bool:
    """Whether a shard's compiled functions have x-dominant views (stack k = 2)."""
    return bool(fns[3].groups[2])


@functools.lru_cache(maxsize=64)
def _compiled(plan: Plan, grid: VolumeGrid, det_shape, batch: int):
    """Jitted forward / adjoint / backproject for one plan, and the plan (cached: equal plans share compilations)."""
    kw = dict(plan=plan, grid=grid, det_shape=det_shape, batch=batch)
    fwd = jax.jit(functools.partial(forward_project, **kw))
    adj = jax.jit(functools.partial(adjoint_project, **kw))
    bp = jax.jit(functools.partial(backproject, **kw))
    return fwd, adj, bp, plan

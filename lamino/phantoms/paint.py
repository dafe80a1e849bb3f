"""The jitted kernels of the exact ray tracer: ray–part intervals and the painter's rule along each ray.

Kernel 1 (:func:`slot_intervals`) intersects rays with parts: each convex part (a row of a :class:`ConvexTable`)
gives one interval (t0, t1) per ray, a mesh one per interval slot. Kernel 2 (:func:`painted_lengths`) turns the
intervals of a ray, in painter's order, into per-material path lengths: every elementary segment between interval
ends belongs to the latest part covering it (void parts own nothing). Lengths are in units of the ray parameter
t; the caller scales them by |d| to mm. Which parts each tile of rays meets is decided by
:mod:`lamino.phantoms.raytrace`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamino.phantoms.parts import Part
from lamino.phantoms.shapes import BIG

__all__ = ["ConvexTable", "convex_table", "painted_lengths", "slot_intervals"]

_FAST_K = 16                # up to this many slots crossed per ray: the fast painter's rule (bit masks)
_CHAIN_SLOTS = 16           # up to this many candidate slots: compacted by selects, fused (beyond: a scatter)


@dataclasses.dataclass(frozen=True)
class ConvexTable:
    """Convex parts as arrays, one row per part and a last empty row for padding: ``arrays`` holds ``flat``
    (n + 1, L) shape numbers, ``rot`` (n + 1, 3, 3), ``shift`` (n + 1, 3) and ``group`` (n + 1,) (−1: padding);
    ``groups`` lists (shape class, [(key, shape, offset)]) per group."""

    arrays: dict
    groups: tuple


def convex_table(parts: list[Part]) -> ConvexTable:
    """The table of convex ``parts``; parts of one kind (shape class and array sizes) form a group."""
    layouts: dict[tuple, int] = {}
    groups: list = []
    rows, group = [], []
    for part in parts:
        arrs = part.shape.arrays() | part.shape.cut_arrays()
        key = (type(part.shape), tuple((k, np.shape(v)) for k, v in sorted(arrs.items())))
        if key not in layouts:
            offsets = np.cumsum([0] + [int(np.prod(s)) for _, s in key[1]])
            layouts[key] = len(groups)
            groups.append((key[0], tuple((k, s, int(off)) for (k, s), off in zip(key[1], offsets, strict=False))))
        group.append(layouts[key])
        rows.append(np.concatenate([np.ravel(arrs[k]) for k, _ in key[1]] + [np.zeros(0)]))
    width = max([len(r) for r in rows] + [1])
    flat = np.zeros((len(parts) + 1, width))
    for i, r in enumerate(rows):
        flat[i, :len(r)] = r
    rot = np.array([p.matrix for p in parts]).reshape(-1, 3, 3)
    shift = np.array([p.translation for p in parts], float).reshape(-1, 3)
    arrays = {"flat": flat, "rot": np.concatenate([rot, np.eye(3)[None]]),
              "shift": np.concatenate([shift, np.zeros((1, 3))]), "group": np.array(group + [-1], np.int32)}
    arrays = {k: jnp.asarray(v, jnp.float32 if v.dtype.kind == "f" else jnp.int32) for k, v in arrays.items()}
    return ConvexTable(arrays, tuple(groups))


def slot_intervals(groups, parts, others, table, o, d, tile, row):
    """Kernel 1: intervals along tiles of rays o, d (n, P, 3). Convex parts: (t0, t1), each (N, P), of the
    (tile, convex-table row) pairs ``tile``, ``row`` (N,); the other parts (meshes), on every ray: (t0, t1),
    each (M, n, P) for their M slots, or ``None``.

    One shape for all tile widths: one compilation. Nothing else happens here: XLA would fuse any further use
    of the intervals with their computation and compute them again for each use.
    """
    convex = _convex_intervals(groups, table, o[tile], d[tile], row)
    if not others:
        return convex, None
    t0s, t1s = [], []
    for i in others:
        part = parts[i]
        m = jnp.asarray(part.matrix, jnp.float32)
        a, b = part.shape.intervals((o.reshape(-1, 3) - jnp.asarray(part.translation, jnp.float32)) @ m,
                                    d.reshape(-1, 3) @ m)
        t0s.append(a.reshape(-1, *o.shape[:2]))
        t1s.append(b.reshape(-1, *o.shape[:2]))
    return convex, (jnp.concatenate(t0s), jnp.concatenate(t1s))


def painted_lengths(n_mat: int, convex, others, mat, valid, perm, *, k: int) -> tuple:
    """Kernel 2: per-material path lengths in t units (n_mat tuple of (n · P,)) of n tiles of width c from the
    intervals of :func:`slot_intervals` (the first n · c convex pairs, tile by tile, then the other parts'
    slots), put in painter's order by ``perm`` (n, S) (``None``: they are), with the slots' materials ``mat``
    (n, S) in that order (``n_mat``: void or padding); and the most slots a ``valid`` (n, P) ray crosses. The
    lengths are right if that is at most ``k``.

    (Scaling the lengths by |d| here would make XLA take ~10× longer to compile the kernel.)
    """
    (n, p), s = valid.shape, mat.shape[1]
    c = s - (0 if others is None else others[0].shape[0])
    t0, t1 = (x[:n * c].reshape(n, c, p) for x in convex)
    if others is not None:
        t0, t1 = (jnp.concatenate([a, b[:, :n].transpose(1, 0, 2)], 1) for a, b in zip((t0, t1), others,
                                                                                        strict=True))
    if perm is not None:
        t0, t1 = (jnp.take_along_axis(x, perm[..., None], 1) for x in (t0, t1))
    hits = jnp.max(jnp.where(valid, jnp.sum(t1 > t0, axis=1), 0))
    t0, t1 = (x.transpose(1, 0, 2).reshape(s, n * p) for x in (t0, t1))
    mat = jnp.broadcast_to(mat.T[..., None], (s, n, p)).reshape(s, n * p)
    owned = _owned_lengths if k <= _FAST_K else _owned_lengths_dense
    return owned(t0, t1, t1 > t0, mat, n_mat, k), hits


def _convex_intervals(groups, table, o, d, row):
    """(t0, t1), each (N, P): intervals of the convex-table rows ``row`` (N,) along rays o, d (N, P, 3)."""
    flat, rot, shift, group = (table[k][row] for k in ("flat", "rot", "shift", "group"))
    t0 = t1 = jnp.full(o.shape[:2], BIG, jnp.float32)
    for g, (cls, layout) in enumerate(groups):
        def one(f, m, t, o_, d_, cls=cls, layout=layout):
            a = {key: f[off:off + int(np.prod(shape))].reshape(shape) for key, shape, off in layout}
            rel = [o_[:, i] - t[i] for i in range(3)]          # world → local: q = Rᵀ(p − t), per component
            lo_ = tuple(rel[0] * m[0, j] + rel[1] * m[1, j] + rel[2] * m[2, j] for j in range(3))
            ld_ = tuple(d_[:, 0] * m[0, j] + d_[:, 1] * m[1, j] + d_[:, 2] * m[2, j] for j in range(3))
            return cls.cut_interval_arrays(a, lo_, ld_, jnp)

        a, b = jax.vmap(one)(flat, rot, shift, o, d)
        mine = (group == g)[:, None]
        t0, t1 = jnp.where(mine, a, t0), jnp.where(mine, b, t1)
    return t0, t1


def _owned_lengths(t0, t1, hit, mat, n_mat: int, k: int) -> tuple:
    """Per-material Σ of elementary segment lengths (in t units) owned by the latest covering slot.

    ``t0``, ``t1``, ``hit``, ``mat`` (S, R): each ray's candidate slots in painter's order, their intervals, whether
    they are crossed and their materials (``n_mat``: void). At most ``k`` (≤ 32, the bits of a mask) slots of a
    ray are crossed.

    The crossed slots are compacted into k rows (unless S ≤ k: by selects, or a scatter for S above
    ``_CHAIN_SLOTS``) and their 2k ends sorted by a fixed network, each carrying its slot's bit; a sweep along
    the sorted ends then knows the set of slots covering each segment as a bit mask, whose highest bit is the
    owner. No (k, 2k, R) cover tensor and no XLA sort (slow on CPU): a fixed sequence of per-row element-wise
    operations, which XLA fuses into one loop. Returns a tuple of n_mat (R,) arrays.
    """
    if t0.shape[0] > max(k, _CHAIN_SLOTS):
        t0, t1, hit, mat = _scatter_compact(t0, t1, hit, mat, n_mat, k)
    rows = [(t0[s], t1[s], hit[s], mat[s]) for s in range(t0.shape[0])]
    ends0, ends1, masks = _compact(rows, n_mat, k)
    bits = [jnp.full(ends0[0].shape, 1 << j, jnp.uint32) for j in range(len(ends0))]
    ends, flips = _sort_network(ends0 + ends1, bits + bits)
    cover = jnp.zeros(ends[0].shape, jnp.uint32)
    out = [jnp.zeros(ends[0].shape, jnp.float32) for _ in range(n_mat)]
    for i in range(len(ends) - 1):
        cover = cover ^ flips[i]                        # the slots covering (ends[i], ends[i + 1])
        seg = jnp.where(ends[i + 1] < BIG / 2, ends[i + 1] - ends[i], 0.0)
        for j, mine in enumerate(masks):                # the highest bit of cover is material j's
            out[j] = out[j] + jnp.where((cover & mine) > (cover & ~mine), seg, 0.0)
    return tuple(out)


def _scatter_compact(t0, t1, hit, mat, n_mat: int, k: int):
    """The crossed slots of (S, R) rows, in order, into k rows (one scatter; empty rows: BIG, not crossed)."""
    row = jnp.where(hit, jnp.cumsum(hit, axis=0) - 1, k)                # missed slots: row k, dropped
    col = jnp.broadcast_to(jnp.arange(t0.shape[1])[None], t0.shape)

    def compact(values, fill):
        return jnp.full((k, t0.shape[1]), fill, values.dtype).at[row, col].set(
            values, mode="drop", unique_indices=True)

    t0, t1 = compact(t0, BIG), compact(t1, BIG)
    return t0, t1, t1 > t0, compact(mat, n_mat)


def _compact(rows, n_mat: int, k: int):
    """Crossed slots of per-slot rows (t0, t1, hit, mat) → ([t0], [t1]) of k rows (empty: BIG) and per material
    the bit mask of the compacted rows it owns. With at most k rows, none are moved."""
    if len(rows) <= k:
        t0 = [jnp.where(h, a, BIG) for a, _, h, _ in rows]
        t1 = [jnp.where(h, b, BIG) for _, b, h, _ in rows]
        pos = [jnp.full(rows[0][0].shape, s, jnp.uint32) for s in range(len(rows))]
    else:
        pos, n = [], jnp.zeros(rows[0][0].shape, jnp.uint32)
        for _, _, h, _ in rows:
            pos.append(n)
            n = n + h.astype(jnp.uint32)
        t0, t1 = [], []
        for j in range(k):                              # row j: the slot crossed after j others
            a = b = jnp.full(rows[0][0].shape, BIG, jnp.float32)
            for s in range(j, len(rows)):
                take = rows[s][2] & (pos[s] == j)
                a, b = jnp.where(take, rows[s][0], a), jnp.where(take, rows[s][1], b)
            t0.append(a)
            t1.append(b)
    masks = []
    for j in range(n_mat):
        mask = jnp.zeros(rows[0][0].shape, jnp.uint32)
        for (_, _, h, m), p in zip(rows, pos, strict=True):
            mask = mask | jnp.where(h & (m == j), jnp.left_shift(jnp.uint32(1), p), jnp.uint32(0))
        masks.append(mask)
    return t0, t1, masks


def _sort_network(keys: list, payload: list) -> tuple[list, list]:
    """Sort rows ``keys`` element-wise (ascending, Batcher's odd–even merge network), moving ``payload`` along."""
    keys, payload = list(keys), list(payload)
    for a, b in _batcher_pairs(len(keys)):
        swap = keys[b] < keys[a]
        keys[a], keys[b] = jnp.where(swap, keys[b], keys[a]), jnp.where(swap, keys[a], keys[b])
        payload[a], payload[b] = jnp.where(swap, payload[b], payload[a]), jnp.where(swap, payload[a], payload[b])
    return keys, payload


@functools.lru_cache(maxsize=64)
def _batcher_pairs(n: int) -> tuple[tuple[int, int], ...]:
    """Comparators (a < b) of Batcher's odd–even merge sort of n items (the network for the next power of two,
    less the comparators that touch the missing items, which would sit above all others)."""
    pairs, size, p = [], 1 << max(0, (n - 1).bit_length()), 1
    while p < size:
        q = p
        while q >= 1:
            for j in range(q % p, size - q, 2 * q):
                for i in range(min(q, size - j - q)):
                    if (i + j) // (2 * p) == (i + j + q) // (2 * p) and i + j + q < n:
                        pairs.append((i + j, i + j + q))
            q //= 2
        p *= 2
    return tuple(pairs)


def _owned_lengths_dense(t0, t1, hit, mat, n_mat: int, k: int) -> tuple:
    """:func:`_owned_lengths` for any k, from a (k, 2k − 1, R) cover tensor: slower, for many crossings."""
    if k < t0.shape[0]:
        t0, t1, hit, mat = _scatter_compact(t0, t1, hit, mat, n_mat, k)
    t0 = jnp.where(hit, t0, BIG)
    t1 = jnp.where(hit, t1, BIG)
    ends = jnp.sort(jnp.concatenate([t0, t1], 0), axis=0)               # (2k, R)
    mid = (ends[:-1] + ends[1:]) / 2
    seg = ends[1:] - ends[:-1]
    cover = (t0[:, None] <= mid[None]) & (mid[None] < t1[:, None])        # (k, 2k-1, R)
    rows = jnp.arange(t0.shape[0])[:, None, None]
    owner = jnp.max(jnp.where(cover, rows, -1), axis=0)                   # latest covering slot
    owned = jnp.where(owner >= 0, jnp.take_along_axis(mat, jnp.maximum(owner, 0), 0), n_mat)
    seg = jnp.where(seg < BIG / 2, seg, 0.0)
    return tuple(jnp.sum(jnp.where(owned == j, seg, 0.0), axis=0) for j in range(n_mat))

"""The exact ray tracer of a scene: per-material path lengths (mm) of every detector ray, with no voxels.

Each ray meets each part in an interval (convex shapes) or several (meshes); along the ray the elementary
segments between all interval ends go to the latest part covering them (the painter's rule of
:mod:`lamino.phantoms.scene`, computed by the kernels of :mod:`lamino.phantoms.paint`).

The detector is traced in tiles of 8 × 8 pixels (:class:`_Tiling`). Each part's projected outline (the
projection of points whose convex hull holds it, :func:`_hull_points`) decides which tiles it may touch, so a tile
is traced against its candidate parts only; tiles with about as many candidates, from all views, are traced
together in batches of fixed shapes (:class:`_Run`). Pixel centres and the projection of points come from the
detector frame (:mod:`lamino.geometry.frame`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from lamino.geometry import Geometry, frame
from lamino.phantoms.paint import convex_table, painted_lengths, slot_intervals
from lamino.phantoms.parts import VOID, Part
from lamino.phantoms.shapes import Cylinder, Ellipsoid, Frustum, Prism

__all__ = ["trace_path_lengths"]


_TILE = 8                   # the detector is traced in tiles of up to _TILE × _TILE pixels
_AXES = 8                   # directions of the projected outlines that decide which parts may touch a tile
_PAIRS_PER_BLOCK = 1 << 16  # (view, tile) pairs culled at a time
_SLOT_RAYS = 1 << 19        # (interval slots × rays) per kernel call: bounds its temporaries
_MIN_SLOTS = 4              # tiles touched by fewer parts get this many slots: few kernel shapes
_K_START = 8                # first guess of the most slots any ray crosses (grows when a ray crosses more)


def _outline_axes() -> np.ndarray:
    """(_AXES, 2) unit directions in the detector's (row, col) plane: the rows first, the columns halfway."""
    a = np.pi * np.arange(_AXES) / _AXES
    return np.stack([np.cos(a), np.sin(a)], -1)


@dataclasses.dataclass(frozen=True)
class _Tiling:
    """The detector (rows, cols) cut into tiles of (tr, tc) pixels, numbered row-major; the last tiles may
    reach past the detector's edge."""

    rows: int
    cols: int
    tr: int
    tc: int

    @classmethod
    def of(cls, det_shape: tuple[int, int]) -> _Tiling:
        rows, cols = det_shape
        return cls(rows, cols, min(_TILE, rows), min(_TILE, cols))

    @property
    def grid(self) -> tuple[int, int]:
        """Tiles along the rows and the columns."""
        return -(-self.rows // self.tr), -(-self.cols // self.tc)

    @property
    def n_tiles(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def pixels_per_tile(self) -> int:
        return self.tr * self.tc

    def pixels(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices (n, tr · tc) of the pixels of ``tiles`` (n,)."""
        tr, tc = np.divmod(tiles, self.grid[1])
        r = tr[:, None, None] * self.tr + np.arange(self.tr)[None, :, None]
        c = tc[:, None, None] * self.tc + np.arange(self.tc)[None, None, :]
        return (np.broadcast_to(r, (len(tiles), self.tr, self.tc)).reshape(len(tiles), -1),
                np.broadcast_to(c, (len(tiles), self.tr, self.tc)).reshape(len(tiles), -1))

    def touching(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (view, tile, part) triples, sorted, whose pixel centres and outline overlap along every axis.

        ``lo``, ``hi`` (V, n_parts, _AXES): each part's outline, its extent along each of :func:`_outline_axes`.
        The tiles inside an outline's row and column extents are listed, then tested against the other axes.
        """
        (nr, nc), half = self.grid, _AXES // 2
        first = [np.ceil((lo[..., a] - (size - 1)) / size) for a, size in ((0, self.tr), (half, self.tc))]
        last = [np.floor(hi[..., a] / size) for a, size in ((0, self.tr), (half, self.tc))]
        r0, c0 = (np.clip(x, 0, n).astype(np.int64) for x, n in zip(first, (nr, nc), strict=True))
        r1, c1 = (np.clip(x, -1, n - 1).astype(np.int64) for x, n in zip(last, (nr, nc), strict=True))
        wide = np.maximum(c1 - c0 + 1, 0)
        area = (np.maximum(r1 - r0 + 1, 0) * wide).ravel()
        box = np.repeat(np.arange(area.size), area)                          # (view, part) of each pair
        step = np.arange(box.size) - np.repeat(np.cumsum(area) - area, area)
        tr = r0.ravel()[box] + step // wide.ravel()[box]
        tc = c0.ravel()[box] + step % wide.ravel()[box]
        keep = np.ones(box.size, bool)
        for a, (ar, ac) in enumerate(_outline_axes()):
            if a in (0, half):
                continue
            base = ar * tr * self.tr + ac * tc * self.tc
            t_lo = base + min(0.0, ar * (self.tr - 1)) + min(0.0, ac * (self.tc - 1))
            t_hi = base + max(0.0, ar * (self.tr - 1)) + max(0.0, ac * (self.tc - 1))
            keep &= (t_lo <= hi[..., a].ravel()[box]) & (t_hi >= lo[..., a].ravel()[box])
        view, part = np.divmod(box[keep], lo.shape[1])
        tile = (tr * nc + tc)[keep]
        order = np.lexsort((part, tile, view))
        return view[order], tile[order], part[order]


def _hull_points(part: Part) -> np.ndarray:
    """World points (m, 3) whose convex hull holds the part: a prism's corners, octagons around a cylinder's or a
    frustum's end circles, a 32-corner polytope around an ellipsoid, else the corners of its bounding box."""
    shape = part.shape
    octagon = np.exp(2j * np.pi * (np.arange(8) + 0.5) / 8) / np.cos(np.pi / 8)    # around the unit circle
    if isinstance(shape, Prism):
        xy, h = np.asarray(shape.vertices), shape.height / 2
        local = np.concatenate([np.c_[xy, np.full(len(xy), z)] for z in (-h, h)])
    elif isinstance(shape, (Cylinder, Frustum)):
        radii = (shape.radius,) * 2 if isinstance(shape, Cylinder) else (shape.radius_bottom, shape.radius_top)
        h = shape.height / 2
        local = np.concatenate([np.c_[r * octagon.real, r * octagon.imag, np.full(8, z)]
                                for r, z in zip(radii, (-h, h), strict=True)])
    elif isinstance(shape, Ellipsoid):
        # around the unit ball: |x|, |y|, |z| ≤ 1 and |x| + |y|, |y| + |z|, |x| + |z| ≤ √2
        s, h = np.sqrt(2) - 1, np.sqrt(0.5)
        signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
        ball = np.concatenate([signs * np.roll([1.0, s, s], i) for i in range(3)] + [signs * h])
        local = ball * np.asarray(shape.semi_axes)
    else:
        lo, hi = (np.asarray(b, float) for b in shape.bounds_local())
        local = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    return local @ part.matrix.T + np.asarray(part.translation)


def _outlines(points: np.ndarray, geometry: Geometry, vec: np.ndarray, margin: float = 1.0):
    """Extents (lo, hi), each (V, n_parts, _AXES), of the projected ``points`` (n_parts, m, 3) along
    :func:`_outline_axes` in the views with ASTRA vectors ``vec`` (V, 12), widened by ``margin`` pixels; a part
    that cannot be projected (behind a cone source, rays parallel to the detector) covers every tile."""
    views = Geometry.from_vectors(vec, geometry.det_shape, geometry.beam)
    with np.errstate(all="ignore"):
        rc = views.project_points(points.reshape(-1, 3)).reshape(len(vec), *points.shape[:2], 2)
        along = rc @ _outline_axes().T                                        # (V, n_parts, m, _AXES)
        lo, hi = along.min(2) - margin, along.max(2) + margin
    bad = ~np.all(np.isfinite(lo) & np.isfinite(hi), axis=-1)
    lo[bad], hi[bad] = -np.inf, np.inf
    return lo, hi


def _tile_rays(geometry: Geometry, vec: np.ndarray, rows: np.ndarray, cols: np.ndarray, centre: np.ndarray):
    """Rays (o, d), each (n, P, 3) float32, and |d| (n, P) float32 of pixels (rows, cols) (n, P) of the views with
    ASTRA vectors ``vec`` (n, 12). Each ray starts at its point nearest ``centre``: small |t|, good float32
    precision.

    Computed in float64 per component; a parallel beam's starting points are an affine map of (row, col). The
    pixels' offsets from the detector centre are the frame's; pixels of tiles that reach past the detector's edge
    (dropped later, see ``_Batch.keep``) get those of the edge pixels.
    """
    r_off, c_off = frame.pixel_offsets(geometry.det_shape)
    r, c = np.take(r_off, rows, mode="clip"), np.take(c_off, cols, mode="clip")
    src, det, u, v = (vec[:, None, i:i + 3] for i in (0, 3, 6, 9))     # (n, 1, 3) each
    o = np.empty((*rows.shape, 3), np.float32)
    d = np.empty((*rows.shape, 3), np.float32)
    if geometry.beam == "cone":
        dc = [det[..., i] - src[..., i] + c * u[..., i] + r * v[..., i] for i in range(3)]
        e = centre - src
        t = sum(e[..., i] * dc[i] for i in range(3)) / sum(x * x for x in dc)
        for i in range(3):
            d[..., i] = dc[i]
            o[..., i] = src[..., i] + t * dc[i]
        norm = np.sqrt(sum(x * x for x in dc))
    else:
        # o = pix + t d with t = (centre - pix)·d / d·d, pix = det + c u + r v: affine in (c, r)
        dd = np.sum(src * src, -1)
        base = det + (np.sum((centre - det) * src, -1) / dd)[..., None] * src
        du = u - (np.sum(u * src, -1) / dd)[..., None] * src
        dv = v - (np.sum(v * src, -1) / dd)[..., None] * src
        for i in range(3):
            o[..., i] = base[..., i] + c * du[..., i] + r * dv[..., i]
        d[:] = src
        norm = np.broadcast_to(np.sqrt(dd), rows.shape)
    return o, d, norm.astype(np.float32)


def _padded(a: np.ndarray, size: int, fill=0) -> np.ndarray:
    """``a`` with rows of ``fill`` added up to ``size`` rows."""
    return np.concatenate([a, np.full((size - len(a), *a.shape[1:]), fill, a.dtype)])


def _bucket(n: int) -> int:
    """The smallest power of two ≥ n."""
    return 1 << (max(n, 1) - 1).bit_length()


def _floor_pow2(n: int) -> int:
    """The largest power of two ≤ n (1 for n < 1)."""
    return 1 << max(0, int(n).bit_length() - 1)


class _Tracer:
    """The jitted kernels of a phantom's exact path lengths and what they need to know of its parts.

    Convex parts (shapes with ``arrays()``) are gathered per tile from a table of flattened shape numbers, one
    row per part; other shapes (meshes) are traced on every tile. Part ``i`` owns interval slots from
    ``start[i]`` on (one per convex part): the painter's rule ranks slots by this number.
    """

    def __init__(self, parts: tuple[Part, ...], mats: tuple[str, ...]):
        self.parts = parts
        self.n_mat = len(mats)
        n_int = [int(getattr(p.shape, "n_intervals", 1)) for p in parts]
        start = np.concatenate([[0], np.cumsum(n_int)[:-1]]).astype(np.int32)
        slot_mat = [mats.index(p.material) if p.material != VOID else len(mats)
                    for p, n in zip(parts, n_int, strict=True) for _ in range(n)]
        self.slot_mat = np.array(slot_mat + [len(mats)], np.int32)           # last: padding, owns nothing
        convex = np.array([hasattr(p.shape, "arrays") for p in parts])
        self.n_convex = int(convex.sum())
        self.table_row = np.where(convex, np.cumsum(convex) - 1, -1)          # part → convex-table row
        self.convex_rank = np.append(start[convex], len(slot_mat))            # convex-table row → rank
        self.others = np.nonzero(~convex)[0]
        self.other_ranks = np.array([start[i] + j for i in self.others for j in range(n_int[i])], np.int32)
        hulls = [_hull_points(p) for p in parts]
        m = max(len(h) for h in hulls)
        self.hulls = np.stack([np.concatenate([h, np.repeat(h[:1], m - len(h), 0)]) for h in hulls])
        self.k = _K_START
        table = convex_table([p for p, c in zip(parts, convex, strict=True) if c])
        self.table = table.arrays
        self.intervals = jax.jit(functools.partial(slot_intervals, table.groups, parts, tuple(self.others)))
        self.paint = jax.jit(functools.partial(painted_lengths, self.n_mat), static_argnames="k")

    @classmethod
    @functools.lru_cache(maxsize=16)
    def of(cls, parts: tuple[Part, ...], mats: tuple[str, ...]) -> _Tracer:
        return cls(parts, mats)

    def trace(self, geometry: Geometry, centre: np.ndarray, out: np.ndarray, max_hits: int, bar) -> int:
        """Fill ``out`` (n_mat, n_views, rows, cols) with the path lengths; returns the most slots a ray crosses,
        stopping (``out`` unfinished) as soon as that exceeds ``max_hits``. ``bar``: a tqdm bar over views."""
        tiling = _Tiling.of(geometry.det_shape)
        vec = np.asarray(geometry.vectors())
        block = max(1, _PAIRS_PER_BLOCK // tiling.n_tiles)
        run = None
        for v0 in range(0, geometry.n_views, block):
            views = np.arange(v0, min(v0 + block, geometry.n_views))
            found = self.candidates(tiling, geometry, vec[views])
            if run is None:                     # (tile, part) pairs of all views, guessed from the first ones
                pairs = sum(c * len(idx) for c, (_, idx) in found.items()) * geometry.n_views / len(views)
                run = _Run(self, geometry, tiling, vec, centre, out, max_hits, pairs)
            for c, ((view, tile), idx) in found.items():
                run.add(c, views[view], tile, idx)
            if run.most > max_hits:
                return run.most
            bar.update(len(views))
        run.finish()
        return run.most

    def candidates(self, tiling: _Tiling, geometry: Geometry, vec: np.ndarray) -> dict[int, tuple]:
        """The tiles that any part may touch in the views with ASTRA vectors ``vec`` (V, 12), by width c (slots,
        see :meth:`width`): {c: ((view positions, tiles) each (n,), candidate convex-table rows (n, c) in part
        order, then padding rows)}."""
        view, tile, part = tiling.touching(*_outlines(self.hulls, geometry, vec))
        key = view * tiling.n_tiles + tile
        pairs = np.unique(key)
        row = self.table_row[part]
        convex = row >= 0
        count = np.bincount(np.searchsorted(pairs, key[convex]), minlength=len(pairs))
        start = np.cumsum(count) - count
        rows = np.append(row[convex], self.n_convex).astype(np.int32)       # by tile, in part order; padding
        width = np.array([self.width(n) for n in range(count.max(initial=0) + 1)])[count]
        found = {}
        for c in map(int, np.unique(width)):
            sel = np.nonzero(width == c)[0]
            j = np.arange(c)
            at = np.where(j < count[sel, None], start[sel, None] + j, len(rows) - 1)
            found[c] = (np.divmod(pairs[sel], tiling.n_tiles), rows[at])
        return found

    def width(self, count: int) -> int:
        """Candidate slots of a tile that ``count`` convex parts may touch: a power of two ≥ count, at least
        ``_MIN_SLOTS`` and at most all (≥ 1)."""
        return max(1, min(max(_bucket(count), _MIN_SLOTS), self.n_convex))

    def slot_order(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Materials (n, S) of each tile's slots in painter's order, and that order (``None``: as they come)."""
        ranks = self.convex_rank[idx]
        if not len(self.other_ranks):
            return self.slot_mat[ranks], None
        ranks = np.concatenate([ranks, np.broadcast_to(self.other_ranks, (len(idx), len(self.other_ranks)))], 1)
        perm = np.argsort(ranks, axis=1, kind="stable").astype(np.int32)
        return self.slot_mat[np.take_along_axis(ranks, perm, 1)], perm


@dataclasses.dataclass
class _Batch:
    """Tiles in flight: their views (n,), pixels (n, P) (``keep``: on the detector) and ray lengths |d| (n, P),
    the inputs of kernel 2, the k it assumed and its result as it comes (device arrays)."""

    views: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    keep: np.ndarray
    norm: np.ndarray
    slots: tuple
    k: int
    result: tuple


class _Run:
    """One path-length computation: tiles queued by width, sent in batches of a fixed size per width (one kernel
    shape each); the kernels of a batch run while the host prepares the next. Results go into ``out``.

    (XLA already spreads each kernel over the CPU cores: one JAX device per core, round-robin, was slower.)"""

    def __init__(self, tracer: _Tracer, geometry: Geometry, tiling: _Tiling, vec: np.ndarray, centre: np.ndarray,
                 out: np.ndarray, max_hits: int, pairs: float):
        self.tracer, self.geometry, self.tiling, self.vec = tracer, geometry, tiling, vec
        self.centre, self.out, self.max_hits = centre, out, max_hits
        # kernel 1 takes the same number of (tile, part) pairs from batches of every width (one shape): up to
        # ``_SLOT_RAYS`` slots × rays, fewer for fewer ``pairs`` in all (the last batch of each width is padded)
        most = _floor_pow2(_SLOT_RAYS // tiling.pixels_per_tile)
        self.pairs = max(min(most, _bucket(int(pairs) // 16)), tracer.width(tracer.n_convex))
        self.tiles = self.size(tracer.width(0))
        self.queues: dict[int, list] = {}
        self.pending: collections.deque[_Batch] = collections.deque()
        self.most = 0

    def size(self, c: int) -> int:
        """Tiles per batch of width c: a power of two, such that the batch has at most ``self.pairs`` (tile, part)
        pairs."""
        return _floor_pow2(self.pairs // c)

    def add(self, c: int, views: np.ndarray, tiles: np.ndarray, idx: np.ndarray) -> None:
        """Queue tiles of width c (views, tiles (n,), candidate rows (n, c)); launch every full batch."""
        queue = self.queues.setdefault(c, [])
        queue.append((views, tiles, idx))
        queued = sum(len(q[0]) for q in queue)
        size = self.size(c)
        if queued < size:
            return
        views, tiles, idx = (np.concatenate(x) for x in zip(*queue, strict=True))
        full = queued - queued % size
        for a in range(0, full, size):
            self.launch(views[a:a + size], tiles[a:a + size], idx[a:a + size], size)
        queue[:] = [(views[full:], tiles[full:], idx[full:])] if full < queued else []

    def finish(self) -> None:
        """Launch what is queued, padded to full batches, and collect everything."""
        for c, queue in self.queues.items():
            if queue and self.most <= self.max_hits:
                self.launch(*(np.concatenate(x) for x in zip(*queue, strict=True)), self.size(c))
        while self.pending and self.most <= self.max_hits:
            self.collect(self.pending.popleft())

    def launch(self, views, tiles, idx, size: int) -> None:
        """Start both kernels on a batch of tiles (views, tiles (n,), candidate rows (n, c)) padded to ``size``
        tiles; kernel 2 assumes the current guess of k. JAX runs them while the host goes on: the batch before
        is collected only then."""
        if self.most > self.max_hits:
            return
        tracer, tiling = self.tracer, self.tiling
        rows, cols = tiling.pixels(tiles)
        keep = (rows < tiling.rows) & (cols < tiling.cols)
        o, d, norm = _tile_rays(self.geometry, self.vec[views], rows, cols, self.centre)
        n, c = idx.shape
        pair_tile = np.zeros(self.pairs, np.int32)
        pair_tile[:n * c] = np.repeat(np.arange(n), c)
        pair_row = np.full(self.pairs, tracer.n_convex, np.int32)
        pair_row[:n * c] = idx.ravel()
        intervals = tracer.intervals(tracer.table, _padded(o, self.tiles), _padded(d, self.tiles, 1.0),
                                     jnp.asarray(pair_tile), jnp.asarray(pair_row))
        mat, perm = tracer.slot_order(_padded(idx, size, tracer.n_convex))
        slots = (*intervals, jnp.asarray(mat), jnp.asarray(_padded(keep, size)),
                 None if perm is None else jnp.asarray(perm))
        k = min(tracer.k, mat.shape[1])                                      # (one kernel for all k ≥ S)
        self.pending.append(_Batch(views, rows, cols, keep, norm, slots, k, tracer.paint(*slots, k=k)))
        while len(self.pending) > 1 and self.most <= self.max_hits:
            self.collect(self.pending.popleft())

    def collect(self, batch: _Batch) -> None:
        """Wait for a batch and write its lengths into ``out``, first running kernel 2 again if a ray crosses
        more than the k it assumed (nothing written once a ray crosses more than ``max_hits``)."""
        lengths, hits = batch.result
        hits = int(hits)
        self.most = max(self.most, hits)
        if hits > self.max_hits:
            return
        if hits > batch.k:
            self.tracer.k = max(self.tracer.k, _bucket(hits))
            lengths, _ = self.tracer.paint(*batch.slots, k=min(self.tracer.k, batch.slots[2].shape[1]))
        keep = batch.keep
        views = np.broadcast_to(batch.views[:, None], keep.shape)
        for j, x in enumerate(lengths):
            x = np.asarray(x)[:keep.size].reshape(keep.shape) * batch.norm
            self.out[j, views[keep], batch.rows[keep], batch.cols[keep]] = x[keep]


def trace_path_lengths(parts: tuple[Part, ...], materials: tuple[str, ...], geometry: Geometry, centre: np.ndarray,
                       max_hits: int, bar) -> tuple[np.ndarray, int]:
    """Exact path lengths (mm) of every detector ray of ``geometry`` through the scene of ``parts``:
    (n_mat, n_views, rows, cols) float32, materials in the order of ``materials``, and the most interval slots a
    ray crosses. Tracing stops (lengths unfinished) as soon as that exceeds ``max_hits``.

    ``centre`` (x, y, z) mm: rays start at their point nearest it (good float32 precision near the scene);
    ``bar``: a tqdm bar, advanced by views.
    """
    out = np.zeros((len(materials), geometry.n_views, *geometry.det_shape), np.float32)
    hits = _Tracer.of(tuple(parts), tuple(materials)).trace(geometry, centre, out, max_hits, bar)
    return out, hits

"""Convex primitive shapes of lamino phantoms, in their own (local) frame, lengths in mm: :class:`Box`,
:class:`Cylinder`, :class:`Ellipsoid` (spheres), :class:`Prism` (extruded convex polygon) and
:class:`Frustum` (truncated cone). Triangle meshes live in ``mesh.py``.

Every shape answers three questions, vectorised over points or rays:

- ``bounds_local()``: its axis-aligned bounding box ``(lo, hi)``, each (x, y, z);
- ``contains(q)``: which local points ``q`` (..., 3) lie inside (numpy or jax arrays);
- ``intervals(o, d)``: where the line ``o + t·d`` is inside, as ``(t0, t1)`` of shape (1, ...) — one slot,
  because the shapes are convex; an empty slot has ``t0 ≥ t1``. ``d`` need not be a unit vector.

Any shape may be cut by half-spaces ``n·q ≤ c`` (``cuts``), which keeps it convex. Intersections follow
the slab method (Kay & Kajiya, SIGGRAPH 1986) for planes and the quadratic for quadrics.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

BIG = 1e30          # "infinite" ray parameter that stays finite in float32 arithmetic


def _xp(*arrays: Any):
    """numpy for numpy inputs, jax.numpy as soon as one input is a jax array."""
    import jax

    if any(isinstance(a, jax.Array) for a in arrays):
        import jax.numpy as jnp

        return jnp
    return np


def _positive(value, name: str) -> float:
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite length > 0 mm")
    return v


def _slab(o_i, d_i, lo, hi, xp):
    """Parameter interval where lo ≤ o_i + t·d_i ≤ hi (one coordinate)."""
    safe = xp.where(d_i == 0, 1.0, d_i)
    ta, tb = (lo - o_i) / safe, (hi - o_i) / safe
    t0 = xp.where(d_i == 0, xp.where((o_i >= lo) & (o_i <= hi), -BIG, BIG), xp.minimum(ta, tb))
    t1 = xp.where(d_i == 0, xp.where((o_i >= lo) & (o_i <= hi), BIG, -BIG), xp.maximum(ta, tb))
    return t0, t1


def _half_space(o, d, normal, offset, xp):
    """Parameter interval where normal·(o + t·d) ≤ offset (o, d as (x, y, z) component tuples)."""
    no = o[0] * normal[0] + o[1] * normal[1] + o[2] * normal[2]
    nd = d[0] * normal[0] + d[1] * normal[1] + d[2] * normal[2]
    safe = xp.where(nd == 0, 1.0, nd)
    t = (offset - no) / safe
    inside0 = no <= offset
    t0 = xp.where(nd > 0, -BIG, xp.where(nd < 0, t, xp.where(inside0, -BIG, BIG)))
    t1 = xp.where(nd > 0, t, xp.where(nd < 0, BIG, xp.where(inside0, BIG, -BIG)))
    return t0, t1


def _quadric(a, b, c, xp):
    """Interval where a t² + 2 b t + c ≤ 0 for a > 0 (inside of an ellipsoid or an infinite cylinder)."""
    disc = b * b - a * c
    ok = (disc > 0) & (a > 0)
    root = xp.sqrt(xp.where(ok, disc, 0.0))
    safe_a = xp.where(a > 0, a, 1.0)
    t0 = xp.where(ok, (-b - root) / safe_a, BIG)
    t1 = xp.where(ok, (-b + root) / safe_a, -BIG)
    # a == 0 (ray parallel to a cylinder axis): inside everywhere or nowhere
    par = a <= 0
    t0 = xp.where(par, xp.where(c <= 0, -BIG, BIG), t0)
    t1 = xp.where(par, xp.where(c <= 0, BIG, -BIG), t1)
    return t0, t1


@dataclasses.dataclass(frozen=True)
class Shape:
    """Base class: a convex solid, optionally cut by half-spaces ``n·q ≤ c`` (local frame, mm)."""

    cuts: tuple[tuple[tuple[float, float, float], float], ...] = dataclasses.field(default=(), kw_only=True)

    n_intervals = 1

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _contains(self, q, xp):  # pragma: no cover - abstract
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        """The shape's numbers as arrays (for evaluating many shapes of one kind at once)."""
        raise NotImplementedError

    @staticmethod
    def interval_arrays(a: dict, o, d, xp):  # pragma: no cover - abstract
        """(t0, t1) of the uncut shape described by ``arrays()`` for rays o + t·d.

        ``o`` and ``d`` are (x, y, z) tuples of component arrays: XLA handles these far better than
        arrays with a trailing axis of 3.
        """
        raise NotImplementedError

    def cut_arrays(self) -> dict[str, np.ndarray]:
        """The cuts as arrays: normals (C, 3) and offsets (C,)."""
        return {"cut_n": np.array([n for n, _ in self.cuts], float).reshape(-1, 3),
                "cut_c": np.array([c for _, c in self.cuts], float)}

    @classmethod
    def cut_interval_arrays(cls, a: dict, o, d, xp):
        """(t0, t1) of the cut shape from ``arrays() | cut_arrays()``."""
        t0, t1 = cls.interval_arrays(a, o, d, xp)
        for i in range(a["cut_n"].shape[0]):
            c0, c1 = _half_space(o, d, a["cut_n"][i], a["cut_c"][i], xp)
            t0, t1 = xp.maximum(t0, c0), xp.minimum(t1, c1)
        return t0, t1

    def bounds_local(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (lo, hi) of the uncut solid, (x, y, z) mm."""
        return self._bounds()

    def contains(self, q):
        """Boolean mask of local points q (..., 3) inside the (cut) solid."""
        xp = _xp(q)
        inside = self._contains(q, xp)
        for normal, offset in self.cuts:
            inside = inside & (q @ np.asarray(normal, dtype=float) <= offset)
        return inside

    def intervals(self, o, d):
        """(t0, t1), each (1, ...): the line o + t·d is inside for t0 ≤ t ≤ t1 (empty if t0 ≥ t1)."""
        xp = _xp(o, d)
        oc = tuple(o[..., i] for i in range(3))
        dc = tuple(xp.broadcast_to(d, xp.broadcast_shapes(o.shape, d.shape))[..., i] for i in range(3))
        t0, t1 = self.cut_interval_arrays(self.arrays() | self.cut_arrays(), oc, dc, xp)
        return t0[None], t1[None]

    def cut(self, normal, offset: float):
        """A copy also cut by the half-space normal·q ≤ offset."""
        n = tuple(float(x) for x in np.asarray(normal, dtype=float))
        if len(n) != 3 or not np.any(n):
            raise ValueError(f"normal={normal!r} is not allowed: give a non-zero (x, y, z) vector")
        return dataclasses.replace(self, cuts=self.cuts + ((n, float(offset)),))


@dataclasses.dataclass(frozen=True)
class Box(Shape):
    """Rectangular box centred on the origin with edge lengths ``size`` = (x, y, z) mm."""

    size: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(_positive(s, "size") for s in np.broadcast_to(self.size, 3)))

    def _bounds(self):
        h = np.asarray(self.size) / 2
        return -h, h

    def _contains(self, q, xp):
        h = np.asarray(self.size) / 2
        return xp.all(xp.abs(q) <= h, axis=-1)

    def arrays(self):
        return {"half": np.asarray(self.size) / 2}

    @staticmethod
    def interval_arrays(a, o, d, xp):
        h = a["half"]
        t0, t1 = -BIG, BIG
        for i in range(3):
            lo, hi = _slab(o[i], d[i], -h[i], h[i], xp)
            t0, t1 = xp.maximum(t0, lo), xp.minimum(t1, hi)
        return t0, t1


@dataclasses.dataclass(frozen=True)
class Cylinder(Shape):
    """Circular cylinder about the local z axis, centred on the origin: ``radius``, ``height`` mm."""

    radius: float = 1.0
    height: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "radius", _positive(self.radius, "radius"))
        object.__setattr__(self, "height", _positive(self.height, "height"))

    def _bounds(self):
        h = np.array([self.radius, self.radius, self.height / 2])
        return -h, h

    def _contains(self, q, xp):
        return (q[..., 0] ** 2 + q[..., 1] ** 2 <= self.radius**2) & (xp.abs(q[..., 2]) <= self.height / 2)

    def arrays(self):
        return {"radius": np.asarray(self.radius), "half_height": np.asarray(self.height / 2)}

    @staticmethod
    def interval_arrays(a, o, d, xp):
        qa = d[0] ** 2 + d[1] ** 2
        qb = o[0] * d[0] + o[1] * d[1]
        qc = o[0] ** 2 + o[1] ** 2 - a["radius"] ** 2
        t0, t1 = _quadric(qa, qb, qc, xp)
        z0, z1 = _slab(o[2], d[2], -a["half_height"], a["half_height"], xp)
        return xp.maximum(t0, z0), xp.minimum(t1, z1)


@dataclasses.dataclass(frozen=True)
class Ellipsoid(Shape):
    """Axis-aligned ellipsoid centred on the origin with ``semi_axes`` = (x, y, z) mm (a sphere if equal)."""

    semi_axes: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self):
        axes = tuple(_positive(s, "semi_axes") for s in np.broadcast_to(self.semi_axes, 3))
        object.__setattr__(self, "semi_axes", axes)

    def _bounds(self):
        h = np.asarray(self.semi_axes)
        return -h, h

    def _contains(self, q, xp):
        return xp.sum((q / np.asarray(self.semi_axes)) ** 2, axis=-1) <= 1.0

    def arrays(self):
        return {"semi_axes": np.asarray(self.semi_axes)}

    @staticmethod
    def interval_arrays(a, o, d, xp):
        s_ = a["semi_axes"]
        os_ = [o[i] / s_[i] for i in range(3)]
        ds = [d[i] / s_[i] for i in range(3)]
        qa = ds[0] * ds[0] + ds[1] * ds[1] + ds[2] * ds[2]
        qb = os_[0] * ds[0] + os_[1] * ds[1] + os_[2] * ds[2]
        qc = os_[0] * os_[0] + os_[1] * os_[1] + os_[2] * os_[2] - 1.0
        return _quadric(qa, qb, qc, xp)


@dataclasses.dataclass(frozen=True)
class Prism(Shape):
    """A convex polygon in the local xy plane (vertices in mm, either winding) extruded over ``height`` along z,
    centred on z = 0. Non-convex outlines are built from several prisms."""

    vertices: tuple[tuple[float, float], ...] = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))
    height: float = 1.0

    def __post_init__(self):
        v = np.asarray(self.vertices, dtype=float)
        if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3 or not np.all(np.isfinite(v)):
            raise ValueError(f"vertices with shape {v.shape} are not allowed: give ≥ 3 finite (x, y) points in mm")
        e = np.roll(v, -1, axis=0) - v
        cross = e[:, 0] * np.roll(e, -1, axis=0)[:, 1] - e[:, 1] * np.roll(e, -1, axis=0)[:, 0]
        if not (np.all(cross >= -1e-12) or np.all(cross <= 1e-12)) or abs(cross).max() == 0:
            raise ValueError("vertices are not allowed: the polygon must be convex and non-degenerate")
        if np.sum(cross) < 0:
            v = v[::-1]
        object.__setattr__(self, "vertices", tuple(map(tuple, v)))
        object.__setattr__(self, "height", _positive(self.height, "height"))

    def _edges(self):
        """Outward half-spaces n·(x, y) ≤ c of the counter-clockwise polygon."""
        v = np.asarray(self.vertices)
        e = np.roll(v, -1, axis=0) - v
        normals = np.stack([e[:, 1], -e[:, 0]], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return normals, np.sum(normals * v, axis=1)

    def _bounds(self):
        v = np.asarray(self.vertices)
        return (np.array([*v.min(0), -self.height / 2]), np.array([*v.max(0), self.height / 2]))

    def _contains(self, q, xp):
        normals, offsets = self._edges()
        inside = xp.abs(q[..., 2]) <= self.height / 2
        for n, c in zip(normals, offsets, strict=True):
            inside = inside & (q[..., 0] * n[0] + q[..., 1] * n[1] <= c)
        return inside

    def arrays(self):
        normals, offsets = self._edges()
        return {"edge_n": normals, "edge_c": offsets, "half_height": np.asarray(self.height / 2)}

    @staticmethod
    def interval_arrays(a, o, d, xp):
        t0, t1 = _slab(o[2], d[2], -a["half_height"], a["half_height"], xp)
        for i in range(a["edge_n"].shape[0]):
            n = a["edge_n"][i]
            lo, hi = _half_space(o, d, (n[0], n[1], 0.0), a["edge_c"][i], xp)
            t0, t1 = xp.maximum(t0, lo), xp.minimum(t1, hi)
        return t0, t1


@dataclasses.dataclass(frozen=True)
class Frustum(Shape):
    """Truncated circular cone about the local z axis, centred on z = 0: radius ``radius_bottom`` at
    z = −height/2 and ``radius_top`` at z = +height/2 (mm; one radius may be 0, giving a cone)."""

    radius_bottom: float = 1.0
    radius_top: float = 0.5
    height: float = 1.0

    def __post_init__(self):
        for name in ("radius_bottom", "radius_top"):
            v = float(getattr(self, name))
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: give a finite radius ≥ 0 mm")
            object.__setattr__(self, name, v)
        if self.radius_bottom == 0 and self.radius_top == 0:
            raise ValueError("radius_bottom=0 and radius_top=0 are not allowed: one radius must be > 0 mm")
        object.__setattr__(self, "height", _positive(self.height, "height"))

    def _bounds(self):
        r = max(self.radius_bottom, self.radius_top)
        h = np.array([r, r, self.height / 2])
        return -h, h

    def _contains(self, q, xp):
        a, b = self.arrays()["r_mid"], self.arrays()["slope"]
        r = a + b * q[..., 2]
        return (xp.abs(q[..., 2]) <= self.height / 2) & (r >= 0) & (q[..., 0] ** 2 + q[..., 1] ** 2 <= r * r)

    def arrays(self):
        return {"r_mid": np.asarray((self.radius_bottom + self.radius_top) / 2),
                "slope": np.asarray((self.radius_top - self.radius_bottom) / self.height),
                "half_height": np.asarray(self.height / 2)}

    @staticmethod
    def interval_arrays(a, o, d, xp):
        # x² + y² ≤ (r_mid + slope·z)² on the nappe where r_mid + slope·z ≥ 0, within the z slab
        r0, b = a["r_mid"], a["slope"]
        rz = r0 + b * o[2]
        qa = d[0] ** 2 + d[1] ** 2 - (b * d[2]) ** 2
        qb = o[0] * d[0] + o[1] * d[1] - b * rz * d[2]
        qc = o[0] ** 2 + o[1] ** 2 - rz * rz
        h0, h1 = _slab(o[2], d[2], -a["half_height"], a["half_height"], xp)
        n0, n1 = _half_space(o, d, (0.0, 0.0, -b), r0, xp)
        h0, h1 = xp.maximum(h0, n0), xp.minimum(h1, n1)
        disc = qb * qb - qa * qc
        root = xp.sqrt(xp.maximum(disc, 0.0))
        safe = xp.where(qa == 0, 1e-30, qa)
        ra, rb = (-qb - root) / safe, (-qb + root) / safe
        lo, hi = xp.minimum(ra, rb), xp.maximum(ra, rb)
        # qa > 0: inside between the roots; qa < 0: outside between them (the line meets both nappes)
        pos0, pos1 = xp.where(disc >= 0, xp.maximum(lo, h0), BIG), xp.where(disc >= 0, xp.minimum(hi, h1), -BIG)
        left0, left1 = h0, xp.minimum(lo, h1)
        right0, right1 = xp.maximum(hi, h0), h1
        use_left = left1 > left0
        neg0 = xp.where(disc < 0, h0, xp.where(use_left, left0, right0))
        neg1 = xp.where(disc < 0, h1, xp.where(use_left, left1, right1))
        return xp.where(qa > 0, pos0, neg0), xp.where(qa > 0, pos1, neg1)

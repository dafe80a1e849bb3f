"""Acquisition geometry of CT and computed laminography (CL) scans, and the volume grid.

One convention for all of lamino (``design.md``). Lengths in mm, angles in degrees.

Lab frame, right-handed, beam along **+y**. Cone beam: source at ``(0, -SOD, 0)``, detector centre at
``(0, SDD - SOD, 0)``. Detector column axis ``u = +x``, row axis ``v = +z`` (row index grows upward).

The rotation axis is tilted by ``tilt_deg`` = α from the detector vertical towards the source::

    a = (0, -sin α, cos α)          α = 0 is CT, 0 < α < 90 is CL

and the laminographic angle is θ = 90° − α (``lamino_angle_deg``). A sample point ``p`` (sample frame,
whose z axis is the rotation axis) sits in the lab, at view angle φᵢ, at::

    q = R_x(α) · R_z(φᵢ) · p + (cor_offset, 0, 0)

Misalignments: ``cor_offset`` (mm along lab x at the object), ``det_offset`` = (v, u) shift of the detector
centre in its plane (mm), ``det_roll_deg`` (detector rotated right-handedly about the beam axis +y).

:meth:`Geometry.vectors` expresses every view in the **sample frame** as ASTRA ``parallel3d_vec`` /
``cone_vec`` 12-vectors ``(ray or source, detector centre, u step, v step)``: the volume is fixed and the
source and detector move. Pixel (r, c) of a view has centre ``d + (c - (cols-1)/2)·u + (r - (rows-1)/2)·v``.

Geometries are immutable and hashable. Their parameters may be JAX tracers (for ``jax.grad`` with respect to
``tilt_deg`` or ``cor_offset``); validation then checks only what is concrete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from typing import Any, Literal

import numpy as np

Beam = Literal["parallel", "cone"]


def _is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a JAX tracer)."""
    try:
        import jax.core

        return not isinstance(x, jax.core.Tracer)
    except ImportError:  # pragma: no cover - jax is a hard dependency
        return True


def _xp(*values: Any):
    """numpy for concrete values, jax.numpy as soon as one value is traced."""
    if all(_is_concrete(v) for v in values):
        return np
    import jax.numpy as jnp

    return jnp


def _pair(value: Any, name: str) -> tuple[float, float]:
    """A scalar or (v, u) / (first, second) pair as a tuple of two floats."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.shape == (1,):
        return (float(arr[0]), float(arr[0]))
    if arr.shape != (2,):
        raise ValueError(f"{name}={value!r} is not allowed: give one number or two (v, u)")
    return (float(arr[0]), float(arr[1]))


def _check_positive(value: float, name: str) -> None:
    if _is_concrete(value) and not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number > 0")


def _check_finite(value: Any, name: str) -> None:
    if _is_concrete(value) and not np.all(np.isfinite(np.asarray(value, dtype=float))):
        raise ValueError(f"{name}={value!r} is not allowed: it must be finite")


def rotation_x(angle_rad, xp=np):
    """Right-handed rotation about x: (…, 3, 3)."""
    c, s = xp.cos(angle_rad), xp.sin(angle_rad)
    one, zero = xp.ones_like(c), xp.zeros_like(c)
    return xp.stack(
        [xp.stack([one, zero, zero], -1), xp.stack([zero, c, -s], -1), xp.stack([zero, s, c], -1)], -2
    )


def rotation_z(angle_rad, xp=np):
    """Right-handed rotation about z: (…, 3, 3)."""
    c, s = xp.cos(angle_rad), xp.sin(angle_rad)
    one, zero = xp.ones_like(c), xp.zeros_like(c)
    return xp.stack(
        [xp.stack([c, -s, zero], -1), xp.stack([s, c, zero], -1), xp.stack([zero, zero, one], -1)], -2
    )


def rotation_y(angle_rad, xp=np):
    """Right-handed rotation about y: (…, 3, 3)."""
    c, s = xp.cos(angle_rad), xp.sin(angle_rad)
    one, zero = xp.ones_like(c), xp.zeros_like(c)
    return xp.stack(
        [xp.stack([c, zero, s], -1), xp.stack([zero, one, zero], -1), xp.stack([-s, zero, c], -1)], -2
    )


@dataclasses.dataclass(frozen=True, eq=True)
class Geometry:
    """A CT/CL acquisition: beam, tilt, view angles, detector and misalignments (mm, degrees).

    Build it with :meth:`parallel`, :meth:`cone` or :meth:`from_vectors`, not directly.
    """

    beam: Beam
    det_shape: tuple[int, int]
    det_spacing: tuple[float, float] = (1.0, 1.0)
    tilt_deg: Any = 0.0
    angles_deg: tuple[float, ...] | None = None
    sod: float | None = None
    sdd: float | None = None
    cor_offset: Any = 0.0
    det_offset: tuple[float, float] = (0.0, 0.0)
    det_roll_deg: float = 0.0
    custom_vectors: tuple[tuple[float, ...], ...] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def parallel(
        cls,
        tilt_deg: float = 0.0,
        n_views: int | None = None,
        det_shape: tuple[int, int] = (256, 256),
        det_spacing: float | tuple[float, float] = 1.0,
        *,
        angles_deg=None,
        cor_offset: float = 0.0,
        det_offset: tuple[float, float] = (0.0, 0.0),
        det_roll_deg: float = 0.0,
    ) -> Geometry:
        """Parallel beam (synchrotron) CT/CL. ``det_shape`` = (rows, cols), ``det_spacing`` = d or (dv, du) mm."""
        return cls._build("parallel", tilt_deg, n_views, det_shape, det_spacing, angles_deg,
                          None, None, cor_offset, det_offset, det_roll_deg)

    @classmethod
    def cone(
        cls,
        tilt_deg: float = 0.0,
        n_views: int | None = None,
        sod: float = 500.0,
        sdd: float = 1000.0,
        det_shape: tuple[int, int] = (256, 256),
        det_spacing: float | tuple[float, float] = 0.2,
        *,
        angles_deg=None,
        cor_offset: float = 0.0,
        det_offset: tuple[float, float] = (0.0, 0.0),
        det_roll_deg: float = 0.0,
    ) -> Geometry:
        """Cone beam (lab source) CT/CL; ``sod`` source–object and ``sdd`` source–detector distances in mm."""
        _check_positive(sod, "sod")
        _check_positive(sdd, "sdd")
        if _is_concrete(sod) and _is_concrete(sdd) and sdd <= sod:
            raise ValueError(f"sdd={sdd!r} is not allowed: the detector must lie beyond the object, sdd > sod={sod!r}")
        return cls._build("cone", tilt_deg, n_views, det_shape, det_spacing, angles_deg,
                          sod, sdd, cor_offset, det_offset, det_roll_deg)

    @classmethod
    def _build(cls, beam, tilt_deg, n_views, det_shape, det_spacing, angles_deg, sod, sdd,
               cor_offset, det_offset, det_roll_deg) -> Geometry:
        if _is_concrete(tilt_deg):
            if not (np.isfinite(tilt_deg) and 0.0 <= float(tilt_deg) < 90.0):
                raise ValueError(f"tilt_deg={tilt_deg!r} is not allowed: it must lie in [0, 90) degrees")
            tilt_deg = float(tilt_deg)
        angles = _angles(n_views, angles_deg)
        shape = _det_shape(det_shape)
        spacing = _pair(det_spacing, "det_spacing")
        _check_positive(spacing[0], "det_spacing")
        _check_positive(spacing[1], "det_spacing")
        _check_finite(cor_offset, "cor_offset")
        offset = _pair(det_offset, "det_offset")
        _check_finite(offset, "det_offset")
        _check_finite(det_roll_deg, "det_roll_deg")
        if _is_concrete(cor_offset):
            cor_offset = float(cor_offset)
        return cls(beam=beam, det_shape=shape, det_spacing=spacing, tilt_deg=tilt_deg, angles_deg=angles,
                   sod=None if sod is None else float(sod), sdd=None if sdd is None else float(sdd),
                   cor_offset=cor_offset, det_offset=offset, det_roll_deg=float(det_roll_deg))

    @classmethod
    def from_vectors(cls, vectors, det_shape: tuple[int, int], beam: Beam = "parallel") -> Geometry:
        """Any trajectory from per-view ASTRA 12-vectors in the sample frame (mm), shape (n_views, 12)."""
        if beam not in ("parallel", "cone"):
            raise ValueError(f"beam={beam!r} is not allowed: use 'parallel' or 'cone'")
        vec = np.asarray(vectors, dtype=float)
        if vec.ndim != 2 or vec.shape[1] != 12 or vec.shape[0] < 1:
            raise ValueError(f"vectors with shape {vec.shape} are not allowed: give an (n_views ≥ 1, 12) array")
        _check_finite(vec, "vectors")
        if np.any(np.linalg.norm(np.cross(vec[:, 6:9], vec[:, 9:12]), axis=1) <= 0):
            raise ValueError("vectors are not allowed: detector u and v steps must be non-zero and not parallel")
        if beam == "parallel" and np.any(np.linalg.norm(vec[:, 0:3], axis=1) <= 0):
            raise ValueError("vectors are not allowed: parallel-beam ray directions must be non-zero")
        spacing = (float(np.linalg.norm(vec[0, 9:12])), float(np.linalg.norm(vec[0, 6:9])))
        return cls(beam=beam, det_shape=_det_shape(det_shape), det_spacing=spacing,
                   custom_vectors=tuple(tuple(float(x) for x in row) for row in vec))

    # ------------------------------------------------------------------ properties
    @property
    def n_views(self) -> int:
        return len(self.custom_vectors) if self.custom_vectors is not None else len(self.angles_deg)

    @property
    def lamino_angle_deg(self):
        """Synchrotron laminographic angle θ = 90° − tilt (θ = 90° is CT), degrees."""
        return 90.0 - self.tilt_deg

    @property
    def magnification(self) -> float:
        """SDD / SOD for cone beam, 1 for parallel beam."""
        return self.sdd / self.sod if self.beam == "cone" and self.sod else 1.0

    @property
    def is_concrete(self) -> bool:
        """False when a parameter is a JAX tracer (inside jax.grad / jit)."""
        return _is_concrete(self.tilt_deg) and _is_concrete(self.cor_offset)

    # ------------------------------------------------------------------ vectors
    def vectors(self):
        """Per-view ASTRA 12-vectors in the sample frame (mm): (n_views, 12).

        numpy float64 for a concrete geometry; a jax array when a parameter is traced.
        """
        if self.custom_vectors is not None:
            return np.asarray(self.custom_vectors, dtype=float)
        xp = _xp(self.tilt_deg, self.cor_offset)
        dv, du = self.det_spacing
        v_off, u_off = self.det_offset
        roll = math.radians(self.det_roll_deg)
        u_lab = np.array([math.cos(roll), 0.0, -math.sin(roll)]) * du   # R_y(roll) · x̂ · du
        v_lab = np.array([math.sin(roll), 0.0, math.cos(roll)]) * dv    # R_y(roll) · ẑ · dv
        if self.beam == "cone":
            src_lab = np.array([0.0, -self.sod, 0.0])
            det_lab = np.array([u_off, self.sdd - self.sod, v_off])
        else:
            src_lab = np.array([0.0, 1.0, 0.0])                           # ray direction
            det_lab = np.array([u_off, 0.0, v_off])
        shift = xp.asarray(self.cor_offset, dtype=float) * xp.asarray([1.0, 0.0, 0.0])
        # lab = R p + shift  =>  p = Rᵀ (lab - shift), with R = R_x(α) R_z(φ)
        phi = xp.asarray(np.radians(np.asarray(self.angles_deg, dtype=float)))
        alpha = xp.asarray(self.tilt_deg, dtype=float) * (np.pi / 180.0)
        rot = rotation_x(alpha, xp)[None] @ rotation_z(phi, xp)            # (n, 3, 3)
        rot_t = xp.swapaxes(rot, -1, -2)

        def to_sample(vec, is_point):
            return rot_t @ (xp.asarray(vec) - (shift if is_point else 0.0))

        src = to_sample(src_lab, self.beam == "cone")
        det = to_sample(det_lab, True)
        u = to_sample(u_lab, False)
        v = to_sample(v_lab, False)
        return xp.concatenate([src, det, u, v], axis=1)

    def pixel_positions(self):
        """Detector pixel centres in the sample frame (mm): (n_views, rows, cols, 3)."""
        vec = np.asarray(self.vectors())
        rows, cols = self.det_shape
        r = np.arange(rows) - (rows - 1) / 2
        c = np.arange(cols) - (cols - 1) / 2
        return (vec[:, None, None, 3:6] + c[None, None, :, None] * vec[:, None, None, 6:9]
                + r[None, :, None, None] * vec[:, None, None, 9:12])

    def project_points(self, points) -> np.ndarray:
        """Detector (row, col) coordinates of sample-frame points (mm): (n_views, n_points, 2), fractional.

        Row/column 0 is the first pixel's centre. Points behind a cone source give NaN.
        """
        pts = np.asarray(points, dtype=float).reshape(-1, 3)
        vec = np.asarray(self.vectors())
        d, u, v = vec[:, None, 3:6], vec[:, None, 6:9], vec[:, None, 9:12]
        normal = np.cross(u, v)
        if self.beam == "cone":
            src = vec[:, None, 0:3]
            ray = pts[None] - src
            denom = np.sum(ray * normal, -1)
            with np.errstate(divide="ignore", invalid="ignore"):
                lam = np.sum((d - src) * normal, -1) / denom
            lam = np.where(lam > 0, lam, np.nan)
            hit = src + lam[..., None] * ray
        else:
            ray = vec[:, None, 0:3]
            lam = np.sum((d - pts[None]) * normal, -1) / np.sum(ray * normal, -1)
            hit = pts[None] + lam[..., None] * ray
        rel = hit - d
        # solve rel = a·u + b·v in the detector plane (least squares on the 2×2 normal equations)
        uu, vv, uv = np.sum(u * u, -1), np.sum(v * v, -1), np.sum(u * v, -1)
        ru, rv = np.sum(rel * u, -1), np.sum(rel * v, -1)
        det = uu * vv - uv * uv
        a = (ru * vv - rv * uv) / det
        b = (rv * uu - ru * uv) / det
        rows, cols = self.det_shape
        return np.stack([b + (rows - 1) / 2, a + (cols - 1) / 2], axis=-1)

    def field_of_view(self, grid: VolumeGrid, margin: float = 1.0) -> np.ndarray:
        """Voxels (nz, ny, nx) bool whose centres project at least ``margin`` pixels inside the detector in every
        view: the region the scan measures completely (CL of a wide flat sample is truncated outside it).

        Same projection as :meth:`project_points`, written per view as a ratio of linear forms of the point
        (detector coordinate = c₀ + λ·(linear form), λ the ray parameter), evaluated slice by slice."""
        vec = np.asarray(self.vectors(), dtype=float)
        first, d, u, v = vec[:, 0:3], vec[:, 3:6], vec[:, 6:9], vec[:, 9:12]
        normal = np.cross(u, v)
        uu, vv, uv = np.sum(u * u, 1), np.sum(v * v, 1), np.sum(u * v, 1)
        det = uu * vv - uv * uv
        dual_u = (vv[:, None] * u - uv[:, None] * v) / det[:, None]      # rel · dual_u = column offset
        dual_v = (uu[:, None] * v - uv[:, None] * u) / det[:, None]      # rel · dual_v = row offset
        rows, cols = self.det_shape
        z, y, x = (grid.axis(k) for k in range(3))

        def form(w, z_k, const):                                   # w · (x, y, z_k) + const on the (ny, nx) grid
            return (w[:, 0, None, None] * x[None, None, :] + w[:, 1, None, None] * y[None, :, None]
                    + (w[:, 2] * z_k + const)[:, None, None])

        # per-view constants: cone  a = a0 + λ·(dual_u·p + au), λ = lam_num / (n·p + n0);
        #                     parallel  a = dual_u·p + au + λ·ru, λ = (lam_num − n·p) / rn   (likewise b)
        cone = self.beam == "cone"
        rn = np.sum(first * normal, 1)
        if cone:
            lam_num, n0 = np.sum((d - first) * normal, 1), -rn
            a0, b0 = np.sum((first - d) * dual_u, 1), np.sum((first - d) * dual_v, 1)
            au, bv = -np.sum(first * dual_u, 1), -np.sum(first * dual_v, 1)
        else:
            lam_num = np.sum(d * normal, 1)
            au, bv = -np.sum(d * dual_u, 1), -np.sum(d * dual_v, 1)
            ru, rv = np.sum(first * dual_u, 1), np.sum(first * dual_v, 1)
        col3 = (slice(None), None, None)
        out = np.empty(grid.shape, bool)
        for k, z_k in enumerate(z):
            if cone:
                with np.errstate(divide="ignore", invalid="ignore"):
                    lam = lam_num[col3] / form(normal, z_k, n0)
                    a = a0[col3] + lam * form(dual_u, z_k, au)
                    b = b0[col3] + lam * form(dual_v, z_k, bv)
                valid = lam > 0
            else:
                lam = (lam_num[col3] - form(normal, z_k, 0.0)) / rn[col3]
                a = form(dual_u, z_k, au) + lam * ru[col3]
                b = form(dual_v, z_k, bv) + lam * rv[col3]
                valid = True
            col, row = a + (cols - 1) / 2, b + (rows - 1) / 2
            with np.errstate(invalid="ignore"):
                ok = (valid & (row >= margin - 0.5) & (row <= rows - 0.5 - margin)
                      & (col >= margin - 0.5) & (col <= cols - 0.5 - margin))
            out[k] = np.all(ok, axis=0)
        return out

    def truncation(self, grid: VolumeGrid) -> float:
        """Fraction of (view, grid-corner) projections that fall outside the detector (0 = never truncated)."""
        rc = self.project_points(grid.corners())
        rows, cols = self.det_shape
        inside = ((rc[..., 0] >= -0.5) & (rc[..., 0] <= rows - 0.5)
                  & (rc[..., 1] >= -0.5) & (rc[..., 1] <= cols - 0.5))
        return float(1.0 - np.mean(inside))

    # ------------------------------------------------------------------ interchange
    def to_dict(self) -> dict:
        """JSON-safe dictionary; :meth:`from_dict` rebuilds an equal geometry."""
        if not self.is_concrete:
            raise ValueError("to_dict() is not allowed on a traced geometry: build it from concrete numbers")
        d = dataclasses.asdict(self)
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
        if self.custom_vectors is not None:
            d["custom_vectors"] = [list(r) for r in self.custom_vectors]
        d["lamino_geometry"] = 1
        json.dumps(d)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d.pop("lamino_geometry", None)
        beam = d.get("beam")
        if d.get("custom_vectors") is not None:
            return cls.from_vectors(d["custom_vectors"], det_shape=d["det_shape"], beam=beam)
        common = dict(tilt_deg=d["tilt_deg"], det_shape=d["det_shape"], det_spacing=d["det_spacing"],
                      angles_deg=d["angles_deg"], cor_offset=d.get("cor_offset", 0.0),
                      det_offset=d.get("det_offset", (0.0, 0.0)), det_roll_deg=d.get("det_roll_deg", 0.0))
        if beam == "cone":
            return cls.cone(sod=d["sod"], sdd=d["sdd"], **common)
        if beam == "parallel":
            return cls.parallel(**common)
        raise ValueError(f"beam={beam!r} is not allowed: use 'parallel' or 'cone'")

    def replace(self, **changes) -> Geometry:
        """A copy with some parameters changed (validated again)."""
        if self.custom_vectors is not None:
            raise ValueError("replace() is not allowed on a from_vectors geometry: build new vectors instead")
        fields = dict(tilt_deg=self.tilt_deg, det_shape=self.det_shape, det_spacing=self.det_spacing,
                      angles_deg=self.angles_deg, cor_offset=self.cor_offset, det_offset=self.det_offset,
                      det_roll_deg=self.det_roll_deg)
        if self.beam == "cone":
            fields.update(sod=self.sod, sdd=self.sdd)
        fields.update(changes)
        return (Geometry.cone if self.beam == "cone" else Geometry.parallel)(**fields)

    def to_cil(self) -> dict:
        """Arguments for CIL's ``AcquisitionGeometry.create_Parallel3D`` / ``create_Cone3D`` (lab frame, mm).

        Use as ``AcquisitionGeometry.create_Parallel3D(**d['create']).set_panel(**d['panel'])
        .set_angles(**d['angles'])``. CIL and lamino share the lab frame (beam +y, detector x/+z, axis
        ``(0, -sin α, cos α)``). The angles are lamino's φ negated, on the assumption that CIL turns the
        sample the other way round for positive angles; this sign has not yet been checked against CIL itself.
        """
        if self.custom_vectors is not None:
            raise ValueError("to_cil() is not allowed on a from_vectors geometry: CIL needs an axis and angles")
        alpha = math.radians(self.tilt_deg)
        roll = math.radians(self.det_roll_deg)
        v_off, u_off = self.det_offset
        create = {
            "detector_direction_x": [math.cos(roll), 0.0, -math.sin(roll)],
            "detector_direction_y": [math.sin(roll), 0.0, math.cos(roll)],
            "rotation_axis_position": [self.cor_offset, 0.0, 0.0],
            "rotation_axis_direction": [0.0, -math.sin(alpha), math.cos(alpha)],
            "units": "mm",
        }
        if self.beam == "cone":
            create["source_position"] = [0.0, -self.sod, 0.0]
            create["detector_position"] = [u_off, self.sdd - self.sod, v_off]
        else:
            create["ray_direction"] = [0.0, 1.0, 0.0]
            create["detector_position"] = [u_off, 0.0, v_off]
        rows, cols = self.det_shape
        dv, du = self.det_spacing
        return {
            "beam": self.beam,
            "create": create,
            "panel": {"num_pixels": [cols, rows], "pixel_size": [du, dv]},
            "angles": {"angles": [-a for a in self.angles_deg], "angle_unit": "degree"},
        }


def _angles(n_views, angles_deg) -> tuple[float, ...]:
    if angles_deg is None:
        if n_views is None:
            raise ValueError("n_views=None is not allowed without angles_deg: give n_views ≥ 1 or angles_deg")
        if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
            raise ValueError(f"n_views={n_views!r} is not allowed: it must be an integer ≥ 1")
        return tuple(float(a) for a in np.linspace(0.0, 360.0, int(n_views), endpoint=False))
    arr = np.asarray(angles_deg, dtype=float)
    if arr.ndim != 1 or arr.size < 1:
        raise ValueError(f"angles_deg with shape {arr.shape} is not allowed: give a 1-D list of ≥ 1 angles")
    if not np.all(np.isfinite(arr)):
        raise ValueError("angles_deg is not allowed: every angle must be finite (degrees)")
    if n_views is not None and n_views != arr.size:
        raise ValueError(f"n_views={n_views!r} is not allowed: angles_deg has {arr.size} angles")
    return tuple(float(a) for a in arr)


def _det_shape(det_shape) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in det_shape)
        ok = all(float(x) == int(x) for x in det_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or rows < 1 or cols < 1:
        raise ValueError(f"det_shape={det_shape!r} is not allowed: give (rows, cols), integers ≥ 1")
    return (rows, cols)


@dataclasses.dataclass(frozen=True)
class VolumeGrid:
    """Reconstruction/phantom voxel grid: ``shape`` (nz, ny, nx), ``voxel_size`` (sz, sy, sx) mm, ``center`` mm.

    Voxel (k, j, i) has centre ((i − (nx−1)/2)·sx + cx, (j − (ny−1)/2)·sy + cy, (k − (nz−1)/2)·sz + cz).
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __init__(self, shape, voxel_size=1.0, center=(0.0, 0.0, 0.0)):
        try:
            shp = tuple(int(s) for s in shape)
            ok = len(shp) == 3 and all(float(s) == int(s) and int(s) >= 1 for s in shape)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"shape={shape!r} is not allowed: give (nz, ny, nx), integers ≥ 1")
        vs = np.broadcast_to(np.asarray(voxel_size, dtype=float), (3,)) if np.ndim(voxel_size) <= 1 else None
        if vs is None or np.size(voxel_size) not in (1, 3) or not np.all(np.isfinite(vs)) or np.any(vs <= 0):
            raise ValueError(f"voxel_size={voxel_size!r} is not allowed: give one or three (sz, sy, sx) sizes > 0 mm")
        ctr = np.asarray(center, dtype=float)
        if ctr.shape != (3,) or not np.all(np.isfinite(ctr)):
            raise ValueError(f"center={center!r} is not allowed: give three finite numbers (cz, cy, cx) in mm")
        object.__setattr__(self, "shape", shp)
        object.__setattr__(self, "voxel_size", tuple(float(x) for x in vs))
        object.__setattr__(self, "center", tuple(float(x) for x in ctr))

    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the grid box (z, y, x) in mm."""
        return tuple(n * s for n, s in zip(self.shape, self.voxel_size, strict=True))

    def axis(self, dim: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along array axis ``dim`` (0 = z, 1 = y, 2 = x)."""
        n, s, c = self.shape[dim], self.voxel_size[dim], self.center[dim]
        return (np.arange(n) - (n - 1) / 2) * s + c

    def corners(self) -> np.ndarray:
        """The 8 corners of the grid box as sample-frame (x, y, z) points in mm: (8, 3)."""
        lo = [c - e / 2 for c, e in zip(self.center, self.extent, strict=True)]
        hi = [c + e / 2 for c, e in zip(self.center, self.extent, strict=True)]
        zz, yy, xx = np.meshgrid(*[[lo[i], hi[i]] for i in range(3)], indexing="ij")
        return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], -1)

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "voxel_size": list(self.voxel_size), "center": list(self.center)}

    @classmethod
    def from_dict(cls, d: dict) -> VolumeGrid:
        return cls(d["shape"], d["voxel_size"], d.get("center", (0.0, 0.0, 0.0)))

    @classmethod
    def fit(cls, geometry: Geometry, voxel_size: float | None = None,
            sample_size: tuple[float, float, float] | None = None) -> VolumeGrid:
        """A grid centred on the axis that covers what the detector sees in every view.

        ``voxel_size`` defaults to the detector pixel size at the object (du / magnification).
        ``sample_size`` (z, y, x) mm sizes the grid to a sample instead; a warning says when part of that
        sample leaves the detector in some views (truncated data).
        """
        du = geometry.det_spacing[1] / geometry.magnification
        vs = float(voxel_size) if voxel_size is not None else du
        _check_positive(vs, "voxel_size")
        if sample_size is not None:
            size = np.asarray(sample_size, dtype=float)
            if size.shape != (3,) or np.any(~np.isfinite(size)) or np.any(size <= 0):
                raise ValueError(f"sample_size={sample_size!r} is not allowed: give (z, y, x) sizes > 0 mm")
            shape = tuple(max(1, int(math.ceil(s / vs - 1e-9))) for s in size)
            grid = cls(shape, vs)
            outside = geometry.truncation(grid)
            if outside > 0:
                warnings.warn(f"the sample ({size.tolist()} mm) leaves the detector in some views: "
                              f"{outside:.0%} of its corner projections fall outside; data will be truncated",
                              stacklevel=2)
            return grid
        rows, cols = geometry.det_shape
        dv = geometry.det_spacing[0] / geometry.magnification
        half_w = cols * du / 2 - abs(float(geometry.cor_offset))
        half_h = rows * dv / 2
        # largest in-plane square and height whose every point stays on the detector (parallel estimate)
        a = math.radians(float(geometry.tilt_deg))
        radius = half_w
        if math.sin(a) > 0:                  # leave room for at least one voxel layer in the row band
            radius = min(radius, (half_h - vs * math.cos(a) / 2) / math.sin(a))
        if radius <= vs:
            raise ValueError(f"voxel_size={vs!r} is not allowed: the detector sees less than one voxel")
        nxy = max(1, int(math.floor(2 * radius / math.sqrt(2) / vs)))
        half_z = (half_h - radius * math.sin(a)) / math.cos(a)
        nz = max(1, int(math.floor(2 * half_z / vs)))
        return cls((nz, nxy, nxy), vs)


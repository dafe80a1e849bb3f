"""Acquisition geometry of CT and computed laminography (CL) scans: :class:`Geometry`.

One convention for all of lamino (``docs/architecture.md``). Lengths in mm, angles in degrees.

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
source and detector move. Pixels, rays and point projections follow from them in :mod:`lamino.geometry.frame`.

A geometry is immutable, hashable when concrete, and a **JAX pytree**: every continuous parameter
(``det_spacing``, ``tilt_deg``, ``angles_deg``, ``sod``, ``sdd``, ``cor_offset``, ``det_offset``,
``det_roll_deg``, and the vectors of a :meth:`Geometry.from_vectors` geometry) is a leaf, while the beam and
the detector shape are static. So ``jax.grad`` of a loss through ``Projector(g, grid).forward`` with respect
to any of them works; validation then checks only what is concrete.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import TYPE_CHECKING, Any, Literal

import jax
import numpy as np

from lamino.geometry import frame

if TYPE_CHECKING:
    from lamino.geometry.grid import VolumeGrid

Beam = Literal["parallel", "cone"]

# the continuous parameters, in pytree-leaf order (the beam and the detector shape are static)
LEAVES = ("det_spacing", "tilt_deg", "angles_deg", "sod", "sdd", "cor_offset", "det_offset", "det_roll_deg",
          "custom_vectors")


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (no JAX tracer in it)."""
    if isinstance(x, (tuple, list)):
        return all(is_concrete(v) for v in x)
    return not isinstance(x, jax.core.Tracer)


def _xp(*values: Any):
    """numpy for concrete values, jax.numpy as soon as one value is traced."""
    if all(is_concrete(v) for v in values):
        return np
    import jax.numpy as jnp

    return jnp


def _scalar(value: Any, name: str):
    """A concrete number as a float, a traced scalar as it is."""
    if not is_concrete(value):
        if np.ndim(value) != 0:
            raise ValueError(f"{name} with shape {np.shape(value)} is not allowed: give one number")
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not allowed: give one number") from None


def _pair(value: Any, name: str) -> tuple[Any, Any]:
    """A scalar or (v, u) / (first, second) pair as a tuple of two floats (or traced scalars)."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_scalar(value[0], name), _scalar(value[1], name))
    if not is_concrete(value):
        if np.ndim(value) == 0:
            return (value, value)
        if np.shape(value) == (2,):
            return (value[0], value[1])
        raise ValueError(f"{name} with shape {np.shape(value)} is not allowed: give one number or two (v, u)")
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.shape == (1,):
        return (float(arr[0]), float(arr[0]))
    if arr.shape != (2,):
        raise ValueError(f"{name}={value!r} is not allowed: give one number or two (v, u)")
    return (float(arr[0]), float(arr[1]))


def _check_positive(value: Any, name: str) -> None:
    if is_concrete(value) and not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name}={value!r} is not allowed: it must be a finite number > 0")


def _check_finite(value: Any, name: str) -> None:
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value, dtype=float))):
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


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True, eq=True)
class Geometry:
    """A CT/CL acquisition: beam, tilt, view angles, detector and misalignments (mm, degrees).

    Build it with :meth:`parallel`, :meth:`cone` or :meth:`from_vectors`, not directly. A JAX pytree whose
    leaves are the continuous parameters (``LEAVES``).
    """

    beam: Beam
    det_shape: tuple[int, int]
    det_spacing: tuple[Any, Any] = (1.0, 1.0)
    tilt_deg: Any = 0.0
    angles_deg: Any = None
    sod: Any = None
    sdd: Any = None
    cor_offset: Any = 0.0
    det_offset: tuple[Any, Any] = (0.0, 0.0)
    det_roll_deg: Any = 0.0
    custom_vectors: Any = None

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self):
        """Leaves in ``LEAVES`` order (angles and custom vectors as one array each); beam and shape static."""
        children = tuple(np.asarray(getattr(self, n)) if n in ("angles_deg", "custom_vectors")
                         and isinstance(getattr(self, n), tuple) else getattr(self, n) for n in LEAVES)
        return children, (self.beam, self.det_shape)

    @classmethod
    def tree_unflatten(cls, aux, children) -> Geometry:
        """Rebuild without validation (leaves may be tracers, cotangents or placeholders); concrete numbers
        go back to the hashable floats and tuples of a built geometry."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "beam", aux[0])
        object.__setattr__(obj, "det_shape", aux[1])
        for name, value in zip(LEAVES, children, strict=True):
            object.__setattr__(obj, name, _hashable(value))
        return obj

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
        sod, sdd = _scalar(sod, "sod"), _scalar(sdd, "sdd")
        _check_positive(sod, "sod")
        _check_positive(sdd, "sdd")
        if is_concrete(sod) and is_concrete(sdd) and sdd <= sod:
            raise ValueError(f"sdd={sdd!r} is not allowed: the detector must lie beyond the object, sdd > sod={sod!r}")
        return cls._build("cone", tilt_deg, n_views, det_shape, det_spacing, angles_deg,
                          sod, sdd, cor_offset, det_offset, det_roll_deg)

    @classmethod
    def _build(cls, beam, tilt_deg, n_views, det_shape, det_spacing, angles_deg, sod, sdd,
               cor_offset, det_offset, det_roll_deg) -> Geometry:
        tilt_deg = _scalar(tilt_deg, "tilt_deg")
        if is_concrete(tilt_deg) and not (np.isfinite(tilt_deg) and 0.0 <= tilt_deg < 90.0):
            raise ValueError(f"tilt_deg={tilt_deg!r} is not allowed: it must lie in [0, 90) degrees")
        angles = _angles(n_views, angles_deg)
        shape = _det_shape(det_shape)
        spacing = _pair(det_spacing, "det_spacing")
        _check_positive(spacing[0], "det_spacing")
        _check_positive(spacing[1], "det_spacing")
        cor_offset = _scalar(cor_offset, "cor_offset")
        _check_finite(cor_offset, "cor_offset")
        offset = _pair(det_offset, "det_offset")
        _check_finite(offset, "det_offset")
        det_roll_deg = _scalar(det_roll_deg, "det_roll_deg")
        _check_finite(det_roll_deg, "det_roll_deg")
        return cls(beam=beam, det_shape=shape, det_spacing=spacing, tilt_deg=tilt_deg, angles_deg=angles,
                   sod=sod, sdd=sdd, cor_offset=cor_offset, det_offset=offset, det_roll_deg=det_roll_deg)

    @classmethod
    def from_vectors(cls, vectors, det_shape: tuple[int, int], beam: Beam = "parallel") -> Geometry:
        """Any trajectory from per-view ASTRA 12-vectors in the sample frame (mm), shape (n_views, 12).

        The vectors may be traced (``jax.grad`` with respect to them); checks then cover only their shape."""
        if beam not in ("parallel", "cone"):
            raise ValueError(f"beam={beam!r} is not allowed: use 'parallel' or 'cone'")
        concrete = is_concrete(vectors)
        vec = np.asarray(vectors, dtype=float) if concrete else vectors
        if vec.ndim != 2 or vec.shape[1] != 12 or vec.shape[0] < 1:
            raise ValueError(f"vectors with shape {vec.shape} are not allowed: give an (n_views ≥ 1, 12) array")
        xp = _xp(vec)
        spacing = (xp.linalg.norm(vec[0, 9:12]), xp.linalg.norm(vec[0, 6:9]))
        if not concrete:
            return cls(beam=beam, det_shape=_det_shape(det_shape), det_spacing=spacing, custom_vectors=vec)
        _check_finite(vec, "vectors")
        if np.any(np.linalg.norm(np.cross(vec[:, 6:9], vec[:, 9:12]), axis=1) <= 0):
            raise ValueError("vectors are not allowed: detector u and v steps must be non-zero and not parallel")
        if beam == "parallel" and np.any(np.linalg.norm(vec[:, 0:3], axis=1) <= 0):
            raise ValueError("vectors are not allowed: parallel-beam ray directions must be non-zero")
        return cls(beam=beam, det_shape=_det_shape(det_shape), det_spacing=tuple(float(s) for s in spacing),
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
    def magnification(self):
        """SDD / SOD for cone beam, 1 for parallel beam."""
        return self.sdd / self.sod if self.beam == "cone" and self.sod is not None else 1.0

    @property
    def is_concrete(self) -> bool:
        """False when a parameter is a JAX tracer (inside jax.grad / jit)."""
        return all(is_concrete(getattr(self, n)) for n in LEAVES)

    # ------------------------------------------------------------------ vectors
    def vectors(self):
        """Per-view ASTRA 12-vectors in the sample frame (mm): (n_views, 12).

        numpy float64 for a concrete geometry; a jax array when a parameter is traced.
        """
        xp = _xp(*(getattr(self, n) for n in LEAVES))
        if self.custom_vectors is not None:
            return xp.asarray(self.custom_vectors, dtype=float)
        dv, du = self.det_spacing
        v_off, u_off = self.det_offset
        roll = xp.asarray(self.det_roll_deg, dtype=float) * (np.pi / 180.0)
        u_lab = xp.stack([xp.cos(roll), 0.0 * roll, -xp.sin(roll)]) * du    # R_y(roll) · x̂ · du
        v_lab = xp.stack([xp.sin(roll), 0.0 * roll, xp.cos(roll)]) * dv     # R_y(roll) · ẑ · dv
        zero = 0.0 * xp.asarray(u_off, dtype=float)
        if self.beam == "cone":
            src_lab = xp.stack([zero, -xp.asarray(self.sod, dtype=float), zero])
            det_lab = xp.stack([u_off + zero, xp.asarray(self.sdd - self.sod, dtype=float), v_off + zero])
        else:
            src_lab = xp.asarray([0.0, 1.0, 0.0])                          # ray direction
            det_lab = xp.stack([u_off + zero, zero, v_off + zero])
        shift = xp.asarray(self.cor_offset, dtype=float) * xp.asarray([1.0, 0.0, 0.0])
        # lab = R p + shift  =>  p = Rᵀ (lab - shift), with R = R_x(α) R_z(φ)
        phi = xp.asarray(self.angles_deg, dtype=float) * (np.pi / 180.0)
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
        return frame.pixel_centres(np.asarray(self.vectors()), self.det_shape)

    def project_points(self, points) -> np.ndarray:
        """Detector (row, col) coordinates of sample-frame points (mm): (n_views, n_points, 2), fractional.

        Row/column 0 is the first pixel's centre. Points behind a cone source give NaN.
        """
        return frame.project_points(points, self.vectors(), self.beam, self.det_shape)

    def field_of_view(self, grid: VolumeGrid, margin: float = 1.0) -> np.ndarray:
        """Voxels (nz, ny, nx) bool whose centres project at least ``margin`` pixels inside the detector in every
        view: the region the scan measures completely (CL of a wide flat sample is truncated outside it)."""
        return frame.field_of_view(self.vectors(), self.beam, self.det_shape, grid, margin)

    def measured_fraction(self, grid: VolumeGrid, margin: float = 0.5, step: int = 1) -> np.ndarray:
        """Fraction (nz, ny, nx) float32 of the views in which each voxel centre projects at least ``margin``
        pixels inside the detector: 1 in the :meth:`field_of_view`, less where a flat sample wider than the
        detector, or the top and bottom of a tall grid, leave it for part of the turn. ``step`` > 1 evaluates
        it every ``step`` voxels and interpolates (cost n_views × voxels / step³)."""
        return frame.measured_fraction(self.vectors(), self.beam, self.det_shape, grid, margin, step=step)

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
        """Inverse of :meth:`to_dict`; a missing, unknown or wrong-typed key is a ValueError naming it."""
        if not isinstance(d, dict):
            raise ValueError(f"geometry of type {type(d).__name__} is not allowed: give a dict from Geometry.to_dict()")
        d = dict(d)
        d.pop("lamino_geometry", None)
        unknown = sorted(str(k) for k in d if k not in _DICT_KEYS)
        if unknown:
            raise ValueError(f"geometry key {unknown[0]!r} is not allowed: the keys are {', '.join(_DICT_KEYS)}")
        beam = d.get("beam")
        if beam not in ("parallel", "cone"):
            what = "missing" if "beam" not in d else f"{beam!r}"
            raise ValueError(f"geometry key 'beam' is {what}: give 'parallel' or 'cone'")
        vectors = d.get("custom_vectors") is not None
        required = ("det_shape",) if vectors else _REQUIRED[beam]
        missing = [k for k in required if d.get(k) is None]
        if missing:
            raise ValueError(f"geometry key {missing[0]!r} is missing: a {beam}-beam geometry dict needs "
                             f"{', '.join(('beam', *required))}")
        for key, value in d.items():
            if key != "beam" and value is not None and not _numbers(value):
                raise ValueError(f"geometry key {key!r}={value!r} is not allowed: give {_DICT_KEYS[key]}")
        if vectors:
            return cls.from_vectors(d["custom_vectors"], det_shape=d["det_shape"], beam=beam)
        common = dict(tilt_deg=d["tilt_deg"], det_shape=d["det_shape"], det_spacing=d["det_spacing"],
                      angles_deg=d["angles_deg"], cor_offset=d.get("cor_offset", 0.0),
                      det_offset=d.get("det_offset", (0.0, 0.0)), det_roll_deg=d.get("det_roll_deg", 0.0))
        if beam == "cone":
            return cls.cone(sod=d["sod"], sdd=d["sdd"], **common)
        return cls.parallel(**common)

    def replace(self, **changes) -> Geometry:
        """A copy with some parameters changed (validated again; values may be traced)."""
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
        ``(0, -sin α, cos α)``) and the sense of rotation: CIL's ASTRA conversion turns the system into a frame
        whose z is the rotation axis (the smallest rotation taking the axis to z, which is R_x(−α) here) and then
        turns source and detector by −θ about z for angle θ, as :meth:`vectors` does for φ, so θ = φ
        (``tests/test_geometry.py`` rebuilds the vectors that way from these arguments).
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
            "angles": {"angles": list(self.angles_deg), "angle_unit": "degree"},
        }


_DICT_KEYS = {
    "beam": "'parallel' or 'cone'",
    "det_shape": "(rows, cols), integers ≥ 1",
    "det_spacing": "a number or (dv, du) in mm",
    "tilt_deg": "a number in [0, 90) degrees",
    "angles_deg": "a list of view angles in degrees",
    "sod": "a number > 0 (mm)",
    "sdd": "a number > sod (mm)",
    "cor_offset": "a number (mm)",
    "det_offset": "a number or (v, u) in mm",
    "det_roll_deg": "a number (degrees)",
    "custom_vectors": "an (n_views, 12) list of numbers (mm) or null",
}
"""The keys of :meth:`Geometry.to_dict` (besides its "lamino_geometry" marker) and what each must hold."""
_REQUIRED = {
    "parallel": ("det_shape", "det_spacing", "tilt_deg", "angles_deg"),
    "cone": ("det_shape", "det_spacing", "tilt_deg", "angles_deg", "sod", "sdd"),
}


def _numbers(value: Any) -> bool:
    """True when ``value`` is a number (not a bool or string) or a (nested) list or tuple of numbers."""
    if isinstance(value, (list, tuple)):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _hashable(value: Any) -> Any:
    """Concrete arrays as floats and (nested) tuples; anything else (Python numbers, tracers, None, the
    placeholders of JAX's tree utilities) unchanged."""
    if isinstance(value, (tuple, list)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)) and is_concrete(value):
        arr = np.asarray(value, dtype=float)
        return float(arr) if arr.ndim == 0 else _tuples(arr.tolist())
    return value


def _tuples(nested) -> Any:
    return tuple(_tuples(v) for v in nested) if isinstance(nested, list) else float(nested)


def _angles(n_views, angles_deg):
    """The view angles (degrees) as a tuple of floats, or a traced 1-D array as it is."""
    if angles_deg is None:
        if n_views is None:
            raise ValueError("n_views=None is not allowed without angles_deg: give n_views ≥ 1 or angles_deg")
        if isinstance(n_views, bool) or not isinstance(n_views, (int, np.integer)) or n_views < 1:
            raise ValueError(f"n_views={n_views!r} is not allowed: it must be an integer ≥ 1")
        return tuple(float(a) for a in np.linspace(0.0, 360.0, int(n_views), endpoint=False))
    if not is_concrete(angles_deg) and not isinstance(angles_deg, (tuple, list)):
        if np.ndim(angles_deg) != 1 or np.size(angles_deg) < 1:
            raise ValueError(f"angles_deg with shape {np.shape(angles_deg)} is not allowed: give a 1-D list of ≥ 1 "
                             "angles")
        if n_views is not None and n_views != np.size(angles_deg):
            raise ValueError(f"n_views={n_views!r} is not allowed: angles_deg has {np.size(angles_deg)} angles")
        return angles_deg
    if not is_concrete(angles_deg):
        import jax.numpy as jnp

        return _angles(n_views, jnp.stack([jnp.asarray(a, dtype=float) for a in angles_deg]))
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


"""Detection tasks of a study and the images their d′ is measured on (issue 17: task-based detectability).

A task is a signal at a known place: its shapes (placed :class:`~lamino.phantoms.Part` objects), the material
of the signal and the material it replaces (its background). Two kinds:

- **built in**, from the phantom's ground truth: each seeded crack (``params["cracks"]``: void or lithium in
  the pellet's matrix) and each pore (``params["pores"]``); the signal is present in the phantom, and the
  signal-absent scene fills it with its background;
- **user tasks**, the ``[[task]]`` tables of a study file (:func:`parse_tasks`): a sphere, disk, cylinder or
  plane of a signal material at a position (or at the centre of a labelled region); the signal-present scene
  adds it to the phantom (painter's rule: it replaces what lies there).

:func:`task_images` pushes the signals through the same simulate → reconstruct chain as the point
(noise-free, from the exact path lengths of the point with the signals' own lengths moved between the two
materials), which gives the expected reconstructed signal, and takes the noisy reconstruction minus the
noise-free one as the noise image; :func:`task_metrics` turns them into the d′ metrics with
:func:`lamino.studies.metrics.detectability.task_dprimes`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lamino.geometry import VolumeGrid
from lamino.materials import get_material
from lamino.phantoms.scene import VOID, Part, Phantom, Voxelized, place
from lamino.phantoms.shapes import Box, Cylinder, Ellipsoid
from lamino.studies.metrics.cracks import ORIENTATION_CLASSES, orientation_class
from lamino.studies.metrics.detectability import ROSE_DPRIME, task_dprimes

TASK_SHAPES = ("sphere", "disk", "cylinder", "plane")
_TASK_KEYS = ("name", "shape", "size_mm", "normal", "material", "at_mm", "label")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: the built-in d′ metrics (see :data:`lamino.studies.scoring.METRICS`)
CRACK_DPRIME = ("crack_dprime", *(f"crack_dprime_{c}" for c in ORIENTATION_CLASSES), "crack_detectable_fraction")
PORE_DPRIME = ("pore_dprime",)
_SIZES = {"sphere": 1, "disk": 2, "cylinder": 2, "plane": 3}
_SIZE_TEXT = {"sphere": "[diameter]", "disk": "[diameter, thickness]", "cylinder": "[diameter, length]",
              "plane": "[width, height, thickness]"}


@dataclasses.dataclass(frozen=True)
class Task:
    """One detection task: ``parts`` (placed shapes) of ``signal`` material (``"void"`` for a hole) replacing
    ``background``; ``kind`` ``"crack"``, ``"pore"`` or ``"user"``; ``orientation`` the crack class
    (vertical, oblique, flat) or None; ``label`` the crack label whose voxels are its footprint, if any."""

    name: str
    kind: str
    parts: tuple[Part, ...]
    signal: str
    background: str
    orientation: str | None = None
    label: str | None = None


# ---------------------------------------------------------------------------------------------- user tasks
def parse_tasks(items: Any, fail: Callable[[str, str, str], None]) -> tuple[dict[str, Any], ...]:
    """Validate the ``[[task]]`` tables of a study file into plain dicts; ``fail(key, what, allowed)`` raises
    the study's one-line error. Positions and the phantom are checked later (:func:`user_tasks`)."""
    if items is None:
        return ()
    if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
        fail("[[task]]", f"= {items!r}", "give [[task]] tables (name, shape, size_mm, material, at_mm or label)")
    out, names = [], set()
    for t in items:
        unknown = sorted(set(t) - set(_TASK_KEYS))
        if unknown:
            fail("[[task]]", f"key {unknown[0]!r}", f"use {', '.join(_TASK_KEYS)}")
        name = t.get("name")
        if not isinstance(name, str) or not _NAME.match(name) or name in names:
            fail("[[task]] name", f"= {name!r}", "give a unique name of letters, digits and _ (the metric is "
                 "dprime_<name>)")
        names.add(name)
        key = f"[[task]] {name}"
        shape = t.get("shape")
        if shape not in TASK_SHAPES:
            fail(f"{key} shape", f"= {shape!r}", f"choose one of {', '.join(TASK_SHAPES)}")
        size = t.get("size_mm")
        size = [size] if isinstance(size, int | float) and not isinstance(size, bool) else size
        if (not isinstance(size, list) or len(size) != _SIZES[shape]
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                           for v in size)):
            fail(f"{key} size_mm", f"= {t.get('size_mm')!r}", f"give {_SIZE_TEXT[shape]} in mm, each > 0")
        normal = t.get("normal", [0.0, 0.0, 1.0])
        if (not isinstance(normal, list) or len(normal) != 3
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in normal)
                or not any(normal)):
            fail(f"{key} normal", f"= {normal!r}", "give a non-zero [x, y, z] vector (the shape's axis or normal)")
        material = t.get("material")
        if material != VOID:
            try:
                get_material(material)
            except ValueError:
                fail(f"{key} material", f"= {material!r}", "give \"void\" or a material of lamino.materials")
        at, label = t.get("at_mm"), t.get("label")
        if (at is None) == (label is None):
            fail(key, "has " + ("both at_mm and label" if at is not None else "neither at_mm nor label"),
                 "give its position as at_mm = [x, y, z] (mm) or as label = \"<region>\" (the region's centre)")
        if at is not None and (not isinstance(at, list) or len(at) != 3 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in at)):
            fail(f"{key} at_mm", f"= {at!r}", "give a finite [x, y, z] position in mm (sample frame)")
        if label is not None and not isinstance(label, str):
            fail(f"{key} label", f"= {label!r}", "give the name of one of the phantom's labels")
        out.append({"name": name, "shape": shape, "size_mm": [float(v) for v in size],
                    "normal": [float(v) for v in normal], "material": material,
                    **({"at_mm": [float(v) for v in at]} if at is not None else {"label": label})})
    return tuple(out)


def _rotation_deg(normal: Sequence[float]) -> tuple[float, float, float]:
    """``place`` angles (about x, then y; degrees) that turn the local z axis onto ``normal``."""
    n = np.asarray(normal, float) / np.linalg.norm(normal)
    # R_y(b) R_x(a) ẑ = (cos a sin b, −sin a, cos a cos b)
    about_x = -math.degrees(math.asin(float(np.clip(n[1], -1, 1))))
    about_y = math.degrees(math.atan2(float(n[0]), float(n[2])))
    return about_x, about_y, 0.0


def _shape(task: dict[str, Any]):
    s = task["size_mm"]
    if task["shape"] == "sphere":
        return Ellipsoid((s[0] / 2,) * 3)
    if task["shape"] in ("disk", "cylinder"):
        return Cylinder(s[0] / 2, s[1])
    return Box((s[0], s[1], s[2]))


def label_centre(voxels: Voxelized, label: str) -> tuple[float, float, float]:
    """The centre (x, y, z) mm of the voxels of ``label`` on ``voxels.grid``."""
    if label not in voxels.labels or not voxels.labels[label].any():
        raise ValueError(f"label={label!r} is not allowed: the phantom's labels on the study grid are "
                         f"{', '.join(sorted(k for k, m in voxels.labels.items() if m.any()))}")
    idx = np.argwhere(voxels.labels[label]).mean(axis=0)
    g = voxels.grid
    zyx = [g.center[i] + (idx[i] - (g.shape[i] - 1) / 2) * g.voxel_size[i] for i in range(3)]
    return float(zyx[2]), float(zyx[1]), float(zyx[0])


def user_tasks(specs: Sequence[dict[str, Any]], phantom: Phantom, voxels: Voxelized,
               region: np.ndarray) -> list[Task]:
    """The ``[[task]]`` tables as :class:`Task` objects on ``phantom``: each placed, with its background the
    material that fills most of its volume. A task outside the phantom or the measured ``region``, or whose
    signal material equals its surroundings, raises a one-line error."""
    out = []
    for t in specs:
        at = t["at_mm"] if "at_mm" in t else label_centre(voxels, t["label"])
        part = place(_shape(t), t["material"], f"task_{t['name']}", at=at, rotate_deg=_rotation_deg(t["normal"]))
        share = coverage(part, voxels.grid)
        mask = share > 0
        where = f"task {t['name']!r} at {tuple(round(v, 4) for v in at)} mm"
        if not mask.any():
            raise ValueError(f"{where} is not allowed: it lies outside the study grid; place it inside the sample")
        if not (mask & region).any():
            raise ValueError(f"{where} is not allowed: it lies outside the region every view measures; move it "
                             "towards the axis or enlarge the detector")
        filled = {m: float(np.sum(f * share)) for m, f in voxels.fractions.items()}
        background = max(filled, key=filled.get) if filled and max(filled.values()) > 0 else VOID
        if background == VOID or filled[background] < 0.5 * float(share.sum()):
            raise ValueError(f"{where} is not allowed: it lies outside the phantom (its footprint is mostly empty); "
                             "place it inside a material")
        if background == t["material"]:
            raise ValueError(f"{where} is not allowed: its material {t['material']!r} is its surroundings' (no "
                             "contrast); give another signal material, e.g. \"void\"")
        out.append(Task(t["name"], "user", (part,), t["material"], background))
    return out


# ---------------------------------------------------------------------------------------------- built in
def builtin_tasks(phantom: Phantom) -> list[Task]:
    """One task per seeded crack and per pore of ``phantom`` (``params["cracks"]``, ``params["pores"]``), in
    the matrix of the part labelled ``pellet``; none for a phantom without them."""
    cracks, pores = phantom.params.get("cracks") or [], phantom.params.get("pores") or []
    matrix = next((p.material for p in phantom.parts if p.label == "pellet"), None)
    if matrix is None or not (cracks or pores):
        return []
    out = [Task(c["label"], "crack", tuple(p for p in phantom.parts if p.label == c["label"]), c["filled"], matrix,
                orientation_class(c["normal"]), c["label"]) for c in cracks]
    pore_parts = [p for p in phantom.parts if p.label == "pore"]
    out += [Task(f"pore_{i}", "pore", (part,), part.material, matrix) for i, part in enumerate(pore_parts)]
    return out


def footprint(part_or_task: Part | Task, grid: VolumeGrid, voxels: Voxelized | None = None) -> np.ndarray:
    """The voxels of ``grid`` a task (or one part) touches (any coverage): a crack's label fractions from
    ``voxels`` when given, else the voxelised shapes."""
    if isinstance(part_or_task, Task) and part_or_task.label and voxels is not None:
        frac = voxels.label_fractions.get(part_or_task.label)
        if frac is not None:
            return frac > 0
    return coverage(part_or_task, grid) > 0


def coverage(part_or_task: Part | Task, grid: VolumeGrid) -> np.ndarray:
    """The fraction of each voxel of ``grid`` that a task (or one part) fills, float32 in [0, 1]."""
    parts = part_or_task.parts if isinstance(part_or_task, Task) else (part_or_task,)
    tracer = Phantom.build("task", [dataclasses.replace(p, material="water") for p in parts])
    return tracer.voxelize(grid).fractions["water"]


# ---------------------------------------------------------------------------------------------- images
def length_change(tasks: Sequence[Task], trace: Callable[[Phantom], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per-material path-length change (mm), signal present minus absent, of ``tasks`` together: each group of
    tasks with one (signal, background) pair is traced once (``trace(phantom)`` → {material: lengths}); its
    lengths L move from the background to the signal material (a void signal only removes them). Overlaps of
    tasks of different groups are counted twice (rare: a lithium crack crossing a pore)."""
    groups: dict[tuple[str, str], list[Part]] = {}
    for t in tasks:
        groups.setdefault((t.signal, t.background), []).extend(t.parts)
    out: dict[str, np.ndarray] = {}
    for (signal, background), parts in groups.items():
        tracer = Phantom.build("tasks", [dataclasses.replace(p, material=background) for p in parts])
        lengths = trace(tracer)[background]
        out[background] = out.get(background, 0) - lengths
        if signal != VOID:
            out[signal] = out.get(signal, 0) + lengths
    return out


def shifted(lengths: dict[str, np.ndarray], change: dict[str, np.ndarray], sign: float) -> dict[str, np.ndarray]:
    """``lengths`` + ``sign`` × ``change`` per material (materials only in ``change`` start from zero)."""
    shape = next(iter(lengths.values())).shape
    out = dict(lengths)
    for m, d in change.items():
        out[m] = np.maximum(np.asarray(out.get(m, np.zeros(shape, np.float32))) + sign * d, 0).astype(np.float32)
    return out


def with_tasks(phantom: Phantom, tasks: Sequence[Task]) -> Phantom:
    """``phantom`` with the user tasks' parts added last (they replace what lies under them)."""
    parts = [p for t in tasks for p in t.parts]
    materials = dict(phantom.materials)
    for t in tasks:
        if t.signal != VOID:
            materials.setdefault(t.signal, get_material(t.signal))
    return Phantom(phantom.name, (*phantom.parts, *parts), materials, phantom.params)


def projection_noise_only(noisy, clean):
    """The scan ``noisy`` with the flats and darks of its noise-free twin ``clean``: its reconstruction minus the
    noise-free one is the noise image of the projections alone. (The flat-field noise is left out: it is the
    same in every view, so it reconstructs to rings, long-range and strongest on the axis, which a local noise
    estimate cannot represent; it is best reduced by more flats or ring suppression.)"""
    return dataclasses.replace(noisy, flats=clean.flats, darks=clean.darks)


@dataclasses.dataclass(frozen=True, eq=False)
class TaskImages:
    """What d′ is measured on: ``tasks``, their footprints (bool, on the study grid), ``signal`` (expected
    reconstructed signals of all tasks, μ 1/mm: noise-free with minus without) and ``noise`` (noisy minus
    noise-free reconstruction)."""

    tasks: tuple[Task, ...]
    footprints: tuple[np.ndarray, ...]
    signal: np.ndarray
    noise: np.ndarray
    _dprimes: dict = dataclasses.field(default_factory=dict, init=False, repr=False)   # region digest → d′s

    def dprimes(self, region: np.ndarray | None) -> tuple[float, ...]:
        """The NPW d′ of each task (:func:`~lamino.studies.metrics.detectability.task_dprimes`, NaN for a task
        with no zone in ``region``), computed once per region: the point's scoring and its record ask for the
        same values."""
        key = None if region is None else (np.shape(region),
                                           hashlib.sha1(np.packbits(np.asarray(region, bool))).hexdigest())
        if key not in self._dprimes:
            self._dprimes[key] = tuple(task_dprimes(self.signal, self.noise, self.footprints, region))
        return self._dprimes[key]


def task_dprime_values(images: Sequence[TaskImages], region: np.ndarray | None) -> list[tuple[Task, float]]:
    """(task, d′) of every task in ``images``, NaN for those with no zone in ``region`` (not measured)."""
    return [pair for im in images for pair in zip(im.tasks, im.dprimes(region), strict=True)]


def counted_by(metric: str) -> Callable[[Task], bool] | None:
    """Which tasks the d′ metric ``metric`` summarises, None for a metric that is not a d′ metric."""
    if metric in ("crack_dprime", "crack_detectable_fraction"):
        return lambda t: t.kind == "crack"
    if metric.startswith("crack_dprime_"):
        return lambda t: t.kind == "crack" and t.orientation == metric[len("crack_dprime_"):]
    if metric == "pore_dprime":
        return lambda t: t.kind == "pore"
    if metric.startswith("dprime_"):
        return lambda t: t.kind == "user" and t.name == metric[len("dprime_"):]
    return None


def median_dprime_metric(metric: str) -> bool:
    """Whether ``metric`` is the median d′ of its tasks (crack_dprime…, pore_dprime, dprime_<task>): the metrics
    whose tilt slope :func:`lamino.studies.gradient.dprime_slopes` gives."""
    return metric != "crack_detectable_fraction" and counted_by(metric) is not None


def hardest_task(values: Sequence[tuple[Task, float]],
                 metrics: Sequence[str]) -> tuple[Task, float, str | None, int] | None:
    """The task to show close up: among the measured tasks (finite d′) that the first d′ metric of ``metrics``
    (the objective's, then the constraints') summarises, the one with the lowest d′, i.e. the hardest to detect;
    among all measured tasks when ``metrics`` names no d′ metric with a measured task. Returns (task, d′, that
    metric or None, number of candidates), or None when no task was measured."""
    measured = [(t, v) for t, v in values if math.isfinite(v)]
    classes = [(m, counted_by(m)) for m in metrics]
    for metric, counted in [*((m, c) for m, c in classes if c is not None), (None, lambda t: True)]:
        candidates = [(t, v) for t, v in measured if counted(t)]
        if candidates:
            task, value = min(candidates, key=lambda tv: tv[1])
            return task, value, metric, len(candidates)
    return None


def task_metrics(images: Sequence[TaskImages], region: np.ndarray | None) -> dict[str, float]:
    """The d′ metrics of the tasks in ``images``: ``crack_dprime`` (median over the cracks the region holds),
    ``crack_dprime_<class>`` (median per orientation class), ``crack_detectable_fraction`` (share of those
    cracks with d′ ≥ :data:`~lamino.studies.metrics.detectability.ROSE_DPRIME`), ``pore_dprime`` (median over
    pores) and ``dprime_<name>`` per user task; NaN where no task of a kind is measurable."""
    d = [(t, v) for t, v in task_dprime_values(images, region) if math.isfinite(v)]

    def median(values: list[float]) -> float:
        return float(np.median(values)) if values else math.nan

    cracks = [(t, v) for t, v in d if t.kind == "crack"]
    out = {"crack_dprime": median([v for _, v in cracks]),
           **{f"crack_dprime_{c}": median([v for t, v in cracks if t.orientation == c]) for c in ORIENTATION_CLASSES},
           "crack_detectable_fraction": float(np.mean([v >= ROSE_DPRIME for _, v in cracks])) if cracks else math.nan,
           "pore_dprime": median([v for t, v in d if t.kind == "pore"])}
    out.update({f"dprime_{t.name}": v for t, v in d if t.kind == "user"})
    return out

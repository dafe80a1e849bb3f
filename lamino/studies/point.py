"""One study point, end to end: simulate the scan, reconstruct it, score it against the truth.

:func:`evaluate_point` is what every executor runs (in process, in a worker process, or as a Dask task).
Within one process it keeps the phantom, its voxelisation on the study grid and the exact path lengths of the
last geometries, so noise repeats and exposure or kVp values of one geometry trace the phantom once, and the
JAX compilations of one (views, grid) shape are reused. The point's scanner, geometry and the study's grid are
built by :mod:`lamino.studies.build`.
"""

from __future__ import annotations

import collections
import json
import os
import platform
import socket
import time
import warnings
from typing import Any

import numpy as np

from lamino import phantoms
from lamino.geometry import Geometry, VolumeGrid
from lamino.recon import reconstruct, suppress_rings
from lamino.simulate import simulate
from lamino.studies.build import build_geometry, build_scanner, measured_region, study_grid
from lamino.studies.scoring import DENSE_VIEWS, ScoringInput, score
from lamino.studies.spec import StudySpec, point_id
from lamino.studies.store import CLOSEUP_IMAGES, Closeup, PointResult, central_slices
from lamino.studies.tasks import (
    CRACK_DPRIME,
    PORE_DPRIME,
    Task,
    TaskImages,
    builtin_tasks,
    footprint,
    hardest_task,
    length_change,
    projection_noise_only,
    shifted,
    task_dprime_values,
    user_tasks,
    with_tasks,
)

_CACHE: dict[str, Any] = {}
_LENGTHS: collections.OrderedDict = collections.OrderedDict()
_LENGTHS_KEEP = 4               # the point's lengths and its tasks' (two geometries' worth)
CLOSEUP_HALF = 12               # voxels: a close-up crop is 2 × 12 + 1 = 25 voxels square


def scoring_region(spec: StudySpec, grid: VolumeGrid) -> np.ndarray:
    """:func:`lamino.studies.build.measured_region` of the study, kept for the study's points."""
    key = f"region:{spec.fingerprint}"
    if key not in _CACHE:
        _CACHE[key] = measured_region(spec, grid)
    return _CACHE[key]


def _phantom(spec: StudySpec, point: dict[str, Any]):
    """The phantom of ``point`` (its ``phantom_seed``, else the spec's seed) and its cache key."""
    study = f"study:{spec.fingerprint}"
    if study not in _CACHE:
        _CACHE.clear()                    # a new study in this process: drop the old one's caches
        _LENGTHS.clear()
        _CACHE[study] = True
    p = spec.phantom
    seed = int(point.get("phantom_seed", p["seed"]))
    key = "phantom:" + json.dumps({"name": p["name"], "seed": seed, "params": p["params"]}, sort_keys=True)
    if key not in _CACHE:
        _CACHE[key] = phantoms.get(p["name"], seed=seed, **p["params"])
    return _CACHE[key], key


def _voxels(phantom, key: str, grid: VolumeGrid):
    vkey = f"{key}|voxels|{grid.shape}|{grid.voxel_size}|{grid.center}"
    if vkey not in _CACHE:
        _CACHE[vkey] = phantom.voxelize(grid)
    return _CACHE[vkey]


def _lengths(phantom, key: str, geometry: Geometry, method: str, voxel_size: float | None):
    lkey = (key, json.dumps(geometry.to_dict(), sort_keys=True), method, voxel_size)
    if lkey in _LENGTHS:
        _LENGTHS.move_to_end(lkey)
        return _LENGTHS[lkey]
    lengths = phantom.path_lengths(geometry) if method == "exact" else phantom.voxel_path_lengths(geometry, voxel_size)
    _LENGTHS[lkey] = lengths
    while len(_LENGTHS) > _LENGTHS_KEEP:
        _LENGTHS.popitem(last=False)
    return lengths


def _wants_dprime(spec: StudySpec) -> bool:
    """Whether the spec scores a d′ metric (``crack_detectable_fraction`` is one, without "dprime" in its name)."""
    return spec.metrics is None or any(n in CRACK_DPRIME + PORE_DPRIME or n.startswith("dprime_")
                                       for n in spec.metrics)


def _task_images(spec: StudySpec, phantom, key: str, geometry: Geometry, grid: VolumeGrid, voxels, region,
                 lengths: dict, noisy, clean_scan, recon_of) -> tuple[TaskImages, ...]:
    """The images the d′ of the point's tasks are measured on (:class:`~lamino.studies.tasks.TaskImages`):
    ``noisy`` is the point's scan, ``clean_scan(phantom, lengths)`` its noise-free simulation from given path
    lengths, ``recon_of(scan)`` the point's reconstruction. The noise image is that of the projections
    (:func:`~lamino.studies.tasks.projection_noise_only`); the tasks' own lengths are traced once per geometry
    (cached beside the point's)."""
    if not _wants_dprime(spec) or not spec.simulate.get("noise", True):
        return ()                     # (without noise d′ is unbounded: no metric)
    tkey = f"{key}|tasks|{grid.shape}|{grid.voxel_size}|{grid.center}"
    if tkey not in _CACHE:            # placed and voxelised once per phantom instance and grid
        builtin = builtin_tasks(phantom)
        user = user_tasks(spec.tasks, phantom, voxels, region) if spec.tasks else []
        _CACHE[tkey] = (builtin, tuple(footprint(t, grid, voxels) for t in builtin),
                        user, tuple(footprint(t, grid) for t in user))
    builtin, builtin_marks, user, user_marks = _CACHE[tkey]
    if not (builtin or user):
        return ()
    method, voxel_size = spec.simulate.get("method", "exact"), spec.simulate.get("voxel_size")

    def trace(tasks):
        names = ",".join(t.name for t in tasks)
        return lambda tracer: _lengths(tracer, f"{key}|tasks:{names}|{tracer.parts[0].material}", geometry,
                                       method, voxel_size)

    reference = clean_scan(phantom, lengths)
    clean = recon_of(reference)
    noise = recon_of(projection_noise_only(noisy, reference)) - clean
    out = []
    if builtin:
        absent = recon_of(clean_scan(phantom, shifted(lengths, length_change(builtin, trace(builtin)), -1.0)))
        out.append(TaskImages(tuple(builtin), builtin_marks, clean - absent, noise))
    if user:
        scene = with_tasks(phantom, user)
        present = recon_of(clean_scan(scene, shifted(lengths, length_change(user, trace(user)), 1.0)))
        out.append(TaskImages(tuple(user), user_marks, present - clean, noise))
    return tuple(out)


def _closeup(spec: StudySpec, images: tuple[TaskImages, ...], values: list[tuple[Task, float]], recon: np.ndarray,
             truth: np.ndarray, region: np.ndarray, grid: VolumeGrid) -> Closeup | None:
    """Crops around the hardest task (:func:`~lamino.studies.tasks.hardest_task` of the objective's, then the
    constraints' d′ metrics) of the noisy reconstruction, the truth and the expected signal, in the xy plane and
    the vertical plane that cuts the task's footprint across (xz or yz), through the footprint voxel inside the
    measured region nearest to its centroid. None without a measured task."""
    pick = hardest_task(values, [*spec.weights, *(c.metric for c in spec.constraints)])
    if pick is None:
        return None
    task, dprime, metric, candidates = pick
    image, mask = next((im, m) for im in images for t, m in zip(im.tasks, im.footprints, strict=True) if t is task)
    inside = mask & region if (mask & region).any() else mask
    voxel = np.asarray(grid.voxel_size, float)                       # (sz, sy, sx) mm
    idx = np.argwhere(inside)
    centre = idx[np.argmin((((idx - idx.mean(0)) * voxel) ** 2).sum(1))]
    planes = ("xy", _cross_plane(idx * voxel))
    volumes = {"truth": truth, "recon": recon, "signal": image.signal}
    crops = {name: _crops(volumes[name], centre, planes) for name in CLOSEUP_IMAGES}
    return Closeup(name=task.name, kind=task.kind, dprime=float(dprime), metric=metric, candidates=candidates,
                   centre_mm=tuple(float(grid.axis(d)[centre[d]]) for d in (2, 1, 0)),
                   voxel_mm=tuple(float(v) for v in voxel), planes=planes, images=crops)


def _cross_plane(points_mm: np.ndarray) -> str:
    """The vertical plane (xz or yz) that cuts a footprint (its voxel centres, (n, 3) z, y, x in mm) across: the
    footprint's thinnest direction (its normal, for a crack) lies in that plane as far as it can, so a vertical
    crack shows as a line, not a sheet. "xz" for a compact footprint (a pore)."""
    if len(points_mm) < 4:
        return "xz"
    values, vectors = np.linalg.eigh(np.cov(points_mm.T))
    if values[0] > 0.5 * values[-1]:                                # no thin direction: a pore, a sphere
        return "xz"
    normal = np.abs(vectors[:, 0])                                  # (z, y, x)
    return "xz" if normal[2] >= normal[1] else "yz"


def _crops(volume: np.ndarray, centre: np.ndarray, planes: tuple[str, ...],
           half: int = CLOSEUP_HALF) -> dict[str, np.ndarray]:
    """Square crops of ``volume`` (nz, ny, nx), 2 ``half`` + 1 voxels wide, centred on voxel ``centre`` (k, j, i),
    in each of ``planes``; NaN beyond the grid. float32."""
    padded = np.pad(np.asarray(volume, np.float32), half, constant_values=np.nan)
    out = {}
    for plane in planes:
        held = {"xy": 0, "xz": 1, "yz": 2}[plane]                     # the array axis held at the centre
        window = [slice(int(c), int(c) + 2 * half + 1) for c in centre]
        window[held] = int(centre[held]) + half
        out[plane] = padded[tuple(window)]
    return out


def _with_saturation(names: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The metrics to score: the spec's (None: every applicable one), always with ``saturated_fraction``, which
    the planner needs to set clipped configurations aside."""
    return None if names is None or "saturated_fraction" in names else (*names, "saturated_fraction")


def evaluate_point(spec: StudySpec, point: dict[str, Any], stage: str = "grid") -> PointResult:
    """Simulate, reconstruct and score one point of ``spec`` (tilt_deg, n_views, exposure_s, kvp, method,
    seed). Deterministic: the same point gives the same numbers in any process."""
    t0 = time.perf_counter()
    phantom, key = _phantom(spec, point)                # first: a new study clears the caches
    scanner = build_scanner(spec, point)
    geometry = build_geometry(spec, point, scanner)
    grid = study_grid(spec)
    sim_kw = dict(spec.simulate)
    lengths = _lengths(phantom, key, geometry, sim_kw.get("method", "exact"), sim_kw.get("voxel_size"))
    with warnings.catch_warnings(record=True) as caught:   # kept in the provenance; the runner reports them
        warnings.simplefilter("always")
        scan = simulate(phantom, geometry, scanner, seed=int(point["seed"]), truth=False, lengths=lengths,
                        **sim_kw)
        t_sim = time.perf_counter()

        def recon_of(data) -> np.ndarray:
            proj = data.line_integrals()
            if spec.recon.get("rings", False):
                proj = suppress_rings(proj)
            return np.asarray(reconstruct(proj, geometry, grid, point["method"],
                                          iterations=spec.recon.get("iterations"), lam=spec.recon.get("lam"),
                                          filter=spec.recon.get("filter", "ram-lak"),
                                          sample_size=phantom.sample_size).volume)

        def clean_scan(scene, scene_lengths):                    # noise-free, from given path lengths
            return simulate(scene, geometry, scanner, seed=0, truth=False, lengths=scene_lengths,
                            **{**sim_kw, "noise": False})

        recon = recon_of(scan)
        t_rec = time.perf_counter()
        voxels = _voxels(phantom, key, grid)
        region = scoring_region(spec, grid)
        tasks = _task_images(spec, phantom, key, geometry, grid, voxels, region, lengths, scan, clean_scan, recon_of)
        t_tasks = time.perf_counter()
        energy = scan.provenance["effective_energy_kev"]
        truth = phantom.attenuation(grid, energy, voxels=voxels)
        trajectory = build_geometry(spec, {**point, "n_views": DENSE_VIEWS}, scanner)
        metrics = score(ScoringInput(recon, truth, grid, voxels, phantom, geometry, scanner, trajectory, region,
                                     scan.flats, tasks), _with_saturation(spec.metrics))
        dprimes = task_dprime_values(tasks, region)                 # computed by score above: no second pass
        closeup = _closeup(spec, tasks, dprimes, recon, truth, region, grid)
    t_end = time.perf_counter()
    provenance = {
        "geometry": geometry.to_dict(), "scanner": scanner.to_dict(), "grid": grid.to_dict(),
        "effective_energy_kev": energy, "flat_max_counts": float(np.max(scan.flats)),
        "saturation_adu": scanner.detector.saturation_adu, "host": socket.gethostname(), "pid": os.getpid(),
        "python": platform.python_version(), "lamino_version": scan.provenance["lamino_version"],
        "created": scan.provenance["created"], "warnings": sorted({str(w.message) for w in caught}),
    }
    seconds = {"simulate": round(t_sim - t0, 3), "recon": round(t_rec - t_sim, 3),
               "tasks": round(t_tasks - t_rec, 3), "metrics": round(t_end - t_tasks, 3), "total": round(t_end - t0, 3)}
    return PointResult(id=point_id(spec, point), point=dict(point), metrics=metrics, seconds=seconds,
                       provenance=provenance, recon_slices=central_slices(recon), truth_slices=central_slices(truth),
                       stage=stage, task_dprimes={t.name: float(v) for t, v in dprimes}, closeup=closeup)

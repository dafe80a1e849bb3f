"""Running a study: evaluate the missing points of a sweep in process, in local worker processes, or as tasks
on a Dask distributed cluster, writing each finished point to the results store at once.

Only the calling process writes the store, so a point file is either complete or absent; rerunning a stopped
study therefore computes exactly the missing points. A worker process that dies takes its points back into
the queue (``retries`` times); on Dask, a lost worker's task is rescheduled by the scheduler, and a task lost
for good (a cancelled future, a worker killed too often) is resubmitted (``retries`` times).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from tqdm.auto import tqdm

from lamino.config import configure
from lamino.studies.build import coverage_warning
from lamino.studies.point import evaluate_point
from lamino.studies.spec import StudySpec, point_id
from lamino.studies.store import PointResult, ResultStore


class Runner:
    """Evaluates study points on one back end and writes them to ``store``.

    ``workers`` = 0 runs in this process; N > 0 uses N local processes (spawned: JAX does not survive a fork);
    ``dask`` = a scheduler address (``tcp://host:8786``) or ``"local"`` (a LocalCluster of ``workers`` or 2
    single-threaded processes on 127.0.0.1) runs each point as a Dask task. ``evaluate(spec, point, stage)``
    computes one point (default :func:`~lamino.studies.point.evaluate_point`; it must be importable by workers).
    """

    def __init__(self, spec: StudySpec, store: ResultStore, *, workers: int = 0, dask: str | None = None,
                 progress: bool = True, retries: int = 2, evaluate: Callable = evaluate_point):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers={workers!r} is not allowed: give 0 (in process) or a number of processes")
        self.spec, self.store, self.workers, self.progress, self.retries = spec, store, workers, progress, retries
        self.evaluate = evaluate
        self._warned: set[str] = set()
        self._client = self._cluster = None
        self._token, self._submissions = uuid.uuid4().hex[:8], 0      # unique Dask task keys per submission
        if dask is not None:
            self._client, self._cluster = _dask_client(dask, workers or 2)
            _configure_workers(self._client)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def backend(self) -> str:
        if self._client is not None:
            return f"dask ({self._client.scheduler.address})"
        return f"{self.workers} worker processes" if self.workers else "in process"

    def run(self, points: Iterable[dict[str, Any]], stage: str = "grid", desc: str | None = None) -> list[str]:
        """Evaluate the points not yet in the store; returns the ids of all ``points`` (finished or found)."""
        points = list(points)
        ids = [point_id(self.spec, p) for p in points]
        done = self.store.ids()
        todo = [(i, p) for i, p in zip(ids, points, strict=True) if i not in done]
        todo = list({i: p for i, p in todo}.items())         # a point listed twice is computed once
        bar = tqdm(total=len(set(ids)), initial=len(set(ids)) - len(todo), desc=desc or stage, unit="point",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            if not todo:
                return ids
            if self._client is not None:
                self._run_dask(todo, stage, bar)
            elif self.workers:
                self._run_processes(todo, stage, bar)
            else:
                for _, p in todo:
                    self._finish(self.evaluate(self.spec, p, stage), bar)
        finally:
            bar.close()
        return ids

    def _finish(self, result: PointResult, bar) -> None:
        self.store.write(result)
        for message in result.provenance.get("warnings", ()):
            if message not in self._warned:             # once per study, not once per point
                self._warned.add(message)
                warnings.warn(f"{_describe_point(result.point)}: {message}", stacklevel=2)
        bar.update(1)
        bar.set_postfix_str(_postfix(result), refresh=False)

    def _run_processes(self, todo, stage: str, bar) -> None:
        pending = dict(todo)
        for attempt in range(self.retries + 1):
            context = multiprocessing.get_context("spawn")
            try:
                with cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                            initializer=configure) as pool:
                    futures = {pool.submit(self.evaluate, self.spec, p, stage): i for i, p in pending.items()}
                    for fut in cf.as_completed(futures):
                        self._finish(fut.result(), bar)
                        pending.pop(futures[fut])
                return
            except cf.process.BrokenProcessPool:
                if attempt == self.retries:
                    raise RuntimeError(f"worker processes died {attempt + 1} times; {len(pending)} points not "
                                       "computed (rerun the study to continue)") from None
                time.sleep(1.0)

    def _run_dask(self, todo, stage: str, bar) -> None:
        """One task per point. The spec travels by value in each task (it is small), so no scattered data can be
        lost between runs or with a worker; points whose task was lost (a killed worker, a cancelled future)
        are resubmitted, up to ``retries`` times. An error raised by ``evaluate`` itself is raised here."""
        from distributed import as_completed

        pending = dict(todo)
        for attempt in range(self.retries + 1):
            self._submissions += 1
            tag = f"{self._token}-{self._submissions}"
            futures = {self._client.submit(self.evaluate, self.spec, p, stage, key=f"lamino-{self.spec.name}-{i}-{tag}",
                                           retries=self.retries, pure=False): i for i, p in pending.items()}
            lost: list[str] = []                 # why tasks were lost, one line each
            try:
                for fut in as_completed(futures):
                    try:
                        result = fut.result()
                    except _lost_errors() as exc:
                        lost.append(_first_line(exc))
                        continue
                    self._finish(result, bar)
                    pending.pop(futures[fut])
            finally:
                for fut in futures:             # nothing of this attempt outlives it on the scheduler
                    fut.release()
            if not pending:
                return
            if attempt == self.retries:
                raise RuntimeError(f"Dask tasks were lost {attempt + 1} times ({lost[-1] if lost else 'unknown'}); "
                                   f"{len(pending)} points not computed (rerun the study to continue)")
            time.sleep(1.0)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _lost_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of a Dask task that was lost rather than failed: its worker died too often, its future was
    cancelled, or the connection to a worker closed."""
    from distributed import CancelledError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    return KilledWorker, CancelledError, cf.CancelledError, CommClosedError, ConnectionError, EOFError


def _describe_point(p: dict[str, Any]) -> str:
    return f"tilt {p['tilt_deg']:g}°, {p['n_views']} views"


def _postfix(result: PointResult) -> str:
    return f"{_describe_point(result.point)}: {result.seconds['total']:.1f} s"


def _configure_workers(client) -> None:
    """Call :func:`~lamino.config.configure` on every worker, also on those that join or restart later (before
    their first JAX computation, where possible)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class _Configure(WorkerPlugin):
        name = "lamino-configure"

        def setup(self, worker) -> None:
            configure()

    try:
        client.register_plugin(_Configure())
    except (AttributeError, TypeError):                # pragma: no cover - older distributed
        client.run(configure)


def _dask_client(address: str, n_workers: int):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    if address == "local":
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
        return Client(cluster), cluster
    if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
        raise ValueError(f"--dask {address!r} is not allowed: give a scheduler address like tcp://host:8786, "
                         "or 'local'")
    try:
        return Client(address, timeout="20s"), None
    except OSError as exc:
        raise ValueError(f"--dask {address!r}: cannot reach the scheduler ({exc})") from None


def run_study(spec: StudySpec | str, out: str, *, workers: int = 0, dask: str | None = None, refine: bool = True,
              progress: bool = True, overwrite: bool = False):
    """Run a study (a :class:`StudySpec` or a TOML path) into the results folder ``out``: the sweep grid, then
    the planner's tilt refinement. Finished points are kept, so an interrupted call resumes. Returns the
    planner's :class:`~lamino.studies.planner.PlanResult`."""
    from lamino.studies import planner
    from lamino.studies.spec import load_spec

    spec = load_spec(spec) if isinstance(spec, str) else spec
    check_study_memory(spec, workers=workers, dask=dask)                  # before anything is written to ``out``
    with ResultStore.create(out, spec, overwrite=overwrite) as store:    # holds the folder's lock until done
        with Runner(spec, store, workers=workers, dask=dask, progress=progress) as runner:
            message = coverage_warning(spec)                              # once the study is sure to run
            if message:
                warnings.warn(message, stacklevel=2)
            runner.run(spec.points(), stage="grid", desc=spec.name)
            if refine:
                planner.refine_tilt(spec, runner)
            result = planner.analyse(store)
        if spec.gradient and result.recommended is not None and result.gradient is None:
            from lamino.studies.gradient import tilt_gradient

            gradient = tilt_gradient(spec, result.recommended.point)
            if gradient is not None:
                store.write_extra("gradient", {**gradient, "point": result.recommended.point})
                result = planner.analyse(store)
        planner.write_configurations(os.path.join(store.path, "configurations.csv"), list(result.configurations))
    return result


def study_memory_bytes(spec: StudySpec) -> tuple[int, dict[str, Any], Any]:
    """Peak memory (bytes) of the study's largest point, that point and its geometry. :func:`evaluate_point`
    simulates it (the path lengths, counts and the phantom's voxelisation and μ on the study grid:
    :func:`lamino.simulate.simulate.estimate_bytes`) and reconstructs it
    (:func:`lamino.recon.reconstruct.estimate_bytes`) while the scan is still held, so the two estimates add.
    Points differ in size by their view count and method (a refined tilt repeats a grid point's view count)."""
    from lamino.recon.reconstruct import estimate_bytes as recon_bytes
    from lamino.simulate.simulate import estimate_bytes as simulate_bytes
    from lamino.studies.build import build_geometry, build_scanner, study_grid
    from lamino.studies.point import _phantom

    phantom, _ = _phantom(spec, spec.points()[0])
    grid = study_grid(spec)
    best: tuple[int, dict[str, Any], Any] | None = None
    seen = set()
    for p in spec.points():
        key = (p["n_views"], p["method"], p.get("trajectory", "cl"))
        if key in seen:
            continue
        seen.add(key)
        g = build_geometry(spec, p, build_scanner(spec, p))
        need = simulate_bytes(g, len(phantom.materials), grid, truth=True) + recon_bytes(g, grid, p["method"])
        if best is None or need > best[0]:
            best = (need, p, g)
    assert best is not None                 # a spec has at least one point
    return best


def check_study_memory(spec: StudySpec, workers: int = 0, dask: str | None = None) -> None:
    """Refuse (one-line ValueError) a study whose largest point, times the points computed at once on this
    machine (``workers`` processes, or a local Dask cluster's ``workers or 2``), needs more memory than this
    machine has (:func:`lamino.resources.check_memory`). A remote Dask cluster's memory is its own: not checked."""
    from lamino.resources import check_memory

    if dask is not None and dask != "local":
        return
    at_once = (workers or 2) if dask == "local" else max(1, workers)
    need, p, g = study_memory_bytes(spec)
    rows, cols = g.det_shape
    parallel = f" × {at_once} points at once" if at_once > 1 else ""
    advice = ("use fewer views, a smaller detector or a coarser [recon] grid"
              + (", or fewer workers" if at_once > 1 else "") + ", or set LAMINO_MEMORY_GB if more is free")
    job = f"study {spec.name!r}: its largest point ({p['n_views']} views of {rows}×{cols} pixels, {p['method']})"
    check_memory(need * at_once, job + parallel, advice)

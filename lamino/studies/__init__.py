"""Acquisition studies: metrics, tilt × projection sweeps (local, worker processes or Dask), the planner,
reports and labelled validation datasets.

A study is a TOML file (:mod:`~lamino.studies.spec`); :func:`run_study` evaluates every point
(:func:`~lamino.studies.point.evaluate_point`: simulate → reconstruct → score) into a resumable
:class:`~lamino.studies.store.ResultStore`, the planner (:mod:`~lamino.studies.planner`) recommends a protocol,
and :func:`~lamino.studies.report.write_report` draws it as a static HTML page.
"""

from lamino.studies import metrics
from lamino.studies.dataset import Manifest, generate_dataset, load_manifest
from lamino.studies.planner import Configuration, PlanResult, analyse, pareto_front, recommend
from lamino.studies.point import evaluate_point
from lamino.studies.report import write_report
from lamino.studies.run import Runner, run_study
from lamino.studies.scoring import METRICS, score
from lamino.studies.spec import StudySpec, load_spec, parse_spec
from lamino.studies.store import PointResult, ResultStore

__all__ = ["METRICS", "Configuration", "Manifest", "PlanResult", "PointResult", "ResultStore", "Runner", "StudySpec",
           "analyse", "evaluate_point", "generate_dataset", "load_manifest", "load_spec", "metrics", "pareto_front",
           "parse_spec", "recommend", "run_study", "score", "write_report"]

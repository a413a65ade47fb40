"""The NASSearch step: a validated spec and a trained supernet in, the seed's outputs out.

``run_search`` checks everything that can be wrong before the first trial (the storage URL,
the checkpoint and its search space, the study's identity, the dataset, the estimator), then
runs one worker in this process or several worker processes on the shared study, and writes
the outputs. Rerunning the same command resumes the study (``load_if_exists``).

The parts it orchestrates: ``checkpoint_space`` (the supernet and its space), ``study`` (the
study), ``cost`` (the estimator and the cost function), ``workers`` (one worker, the worker
processes), ``outputs`` (the files written from the study), ``log_dir`` (the log folder).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna

from gen5nas.errors import Gen5NasError
from gen5nas.search.checkpoint_space import read_supernet
from gen5nas.search.cost import check_estimator, estimator_servers, supernet_cost_scope
from gen5nas.search.log_dir import open_log_dir
from gen5nas.search.metrics import SearchMetricsEndpoint
from gen5nas.search.outputs import StudyOutputs, record_outputs
from gen5nas.search.results import COST_ATTRS, TrialRecord, constraint_limits, pareto_front
from gen5nas.search.runner import seed_extremes
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import open_search_study, parse_storage_url, redact
from gen5nas.search.workers import FailedWorkers, check_failed_workers, run_workers
from gen5nas.tasks.base import Metric, get_task
from gen5nas.tasks.classification import CLASSIFICATION
from gen5nas.train.checkpoint import supernet_checkpoint

__all__ = ["SearchResult", "SearchSettings", "run_search"]

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    study_name: str
    storage_url: str
    records: list[TrialRecord]
    outputs: dict[str, Path]
    cost_key: str
    front: list[TrialRecord] = field(default_factory=list)
    cost_scope: str = "network"  # what of each subnet was costed (search.cost.cost_scope)
    metric: Metric = CLASSIFICATION.metric  # the task's: what the records' scores are

    @property
    def completed(self) -> int:
        return sum(r.state == "COMPLETE" for r in self.records)

    def best_tradeoff(self) -> TrialRecord | None:
        """The front point nearest the ideal (max accuracy, min cost) after scaling both
        objectives to [0, 1] over the front: the default subnet to export."""
        if not self.front:
            return None
        accs = [r.accuracy or 0.0 for r in self.front]
        costs = [r.cost(self.cost_key) or 0.0 for r in self.front]

        def scaled(v: float, lo: float, hi: float) -> float:
            return 0.0 if hi == lo else (v - lo) / (hi - lo)

        def distance(r: TrialRecord) -> float:
            a = 1.0 - scaled(r.accuracy or 0.0, min(accs), max(accs))
            c = scaled(r.cost(self.cost_key) or 0.0, min(costs), max(costs))
            return float((a * a + c * c) ** 0.5)

        return min(self.front, key=lambda r: (distance(r), r.number))


def run_search(
    settings: SearchSettings, metrics: SearchMetricsEndpoint | None = None
) -> SearchResult:
    """Check, search (1 or ``settings.workers`` processes), write the outputs. ``metrics``:
    the /metrics endpoint the workers record into (``search.metrics``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = settings.spec
    cost_key = spec.cost_key.value
    work_dir = Path(settings.work_dir)
    parse_storage_url(settings.storage_url)  # a bad URL is reported before anything else
    checkpoint = supernet_checkpoint(settings.checkpoint)
    settings = replace(settings, checkpoint=str(checkpoint))
    supernet = read_supernet(spec, checkpoint)
    space = supernet.space
    # The task (one this version cannot search is refused) and what is costed of each arch.
    scope = supernet_cost_scope(spec, supernet)
    work_dir.mkdir(parents=True, exist_ok=True)
    run_outputs = open_log_dir(work_dir, settings, scope)
    settings = replace(settings, log_file=str(run_outputs.log_file.path))
    try:
        study = open_search_study(settings, space, supernet.task, scope)
        outputs = StudyOutputs(
            study, space, work_dir, cost_key, constraint_limits(spec.constraints)
        )
        with estimator_servers(spec, settings.workers) as servers:
            settings = replace(settings, servers=servers)
            check_estimator(spec, servers, supernet, scope)
            if spec.sampler.seed_extremes:
                seed_extremes(study, space)  # idempotent: every pod of a Job may call it
            log.info(
                "search: study %r in %s, space %s (%d subnets), cost %s of the %s, %d trials, "
                "%d worker(s), sampler %s, work dir %s",
                settings.study_name,
                redact(settings.storage_url),
                supernet.space_name or "custom",
                space.size(),
                cost_key,
                scope,
                spec.max_trials,
                settings.workers,
                spec.sampler.type.value,
                work_dir,
            )
            try:
                failed = run_workers(settings, space, metrics)
            except BaseException:  # stopped (Ctrl-C, too many failures): keep what was scored
                outputs.write_before_leaving()
                raise
        records, paths = _write_outputs(outputs, failed)
        if failed:
            check_failed_workers(failed, records, spec.max_trials)
        front = pareto_front(records, cost_key)
        result = SearchResult(
            settings.study_name,
            settings.storage_url,
            records,
            paths,
            cost_key,
            front,
            scope,
            get_task(supernet.task, field="checkpoint").metric,
        )
        _log_summary(result)
    finally:
        run_outputs.close()
    return result


def _write_outputs(
    outputs: StudyOutputs, failed: FailedWorkers
) -> tuple[list[TrialRecord], dict[str, Path]]:
    """Written whatever the workers did: the study is the truth, stale files are not."""
    try:
        records, paths = outputs.write()
        record_outputs(outputs.study, paths)
    except Exception as exc:
        if not failed:
            raise
        # The workers' failure is the news (a lost database fails both).
        raise Gen5NasError(
            f"search workers failed: {failed} (see the log above), and the outputs could "
            f"not be written: {exc}"
        ) from exc
    return records, paths


def _log_summary(result: SearchResult) -> None:
    attr = COST_ATTRS[result.cost_key]
    metric = result.metric
    log.info(
        "search done: %d complete trials, %d on the Pareto front; outputs in %s",
        result.completed,
        len(result.front),
        result.outputs["csv"].parent,
    )
    for r in result.front:
        log.info(
            "  front: trial %d %s %s %s %.4g  %s",
            r.number,
            metric.title,
            metric.format(r.accuracy or 0.0),
            attr,
            getattr(r, attr) or 0.0,
            r.arch.summary() if r.arch else "",
        )

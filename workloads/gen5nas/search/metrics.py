"""Prometheus metrics of a search (``gen5nas search --metrics-port``): the workers' trials and
timings, and the study's best score (the task's metric) within the constraints.

One worker in this process records into a registry served here. Several worker processes
(``--workers N``) use prometheus_client's multiprocess mode: each worker writes its samples to
files in a directory private to this search, and this process serves them merged (counters and
histograms summed over the workers) on one port. One port per pod is what the
``prometheus.io/port`` annotation and a ServiceMonitor can name; a port per worker process
would leave all but one unscraped.

=================================================  =========  ==============================
name                                               type       labels
=================================================  =========  ==============================
``gen5nas_search_trials_total``                    counter    state: completed, failed,
                                                              surplus (closed unrun, budget
                                                              taken by other workers)
``gen5nas_search_trials_retried_total``            counter    (a retry of a trial whose
                                                              worker died or was stopped)
``gen5nas_search_trial_duration_seconds``          histogram  phase: calibration (BatchNorm
                                                              recalibration), evaluation,
                                                              estimate (the estimator call)
``gen5nas_search_study_trials``                    gauge      state: the counted trials of
                                                              the whole study (all workers)
``gen5nas_search_pareto_front_trials``             gauge      the feasible front's size
``gen5nas_search_best_<metric>_ratio``             gauge      the task's metric (0-1) of the
                                                              best-scoring feasible trial
``gen5nas_search_best_<metric>_latency_seconds``   gauge      that trial's latency
``gen5nas_search_best_<metric>_energy_joules``     gauge      that trial's energy
=================================================  =========  ==============================

``<metric>`` is the task's :attr:`~gen5nas.tasks.base.Metric.prometheus_name`, as in the
training's gauges: ``accuracy`` for classification (top-1: the seed's
``gen5nas_search_best_accuracy_ratio``), ``bbox_map`` for detection (COCO bbox mAP).

The study gauges are what the workers last read from the shared study (the most recent one in
multiprocess mode); they are absent until a trial is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from optuna.trial import FrozenTrial, TrialState
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from gen5nas.metrics_http import MetricsEndpoint
from gen5nas.search.results import SURPLUS_ATTR, TrialRecord
from gen5nas.tasks.base import Metric
from gen5nas.tasks.classification import CLASSIFICATION

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The trial user attrs (seconds) of each phase (search.evaluate.Outcome.timings).
PHASES = {"calibration": "calib_s", "evaluation": "eval_s", "estimate": "estimate_s"}
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STATES = ("COMPLETE", "FAIL", "RUNNING", "WAITING", "PRUNED")


class SearchMetrics:
    """One worker's metrics. ``registry`` None: a spawned worker in multiprocess mode (its
    samples go to the files the parent serves)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.registry = registry
        if registry is None and MULTIPROC_ENV not in os.environ:
            raise RuntimeError(f"a search worker without a registry needs {MULTIPROC_ENV}")
        self.trials = Counter(
            "gen5nas_search_trials",
            "Trials this search's workers finished, by how they ended.",
            ["state"],
            registry=registry,
        )
        self.retried = Counter(
            "gen5nas_search_trials_retried",
            "Trials run again because their worker died or was stopped.",
            registry=registry,
        )
        self.duration = Histogram(
            "gen5nas_search_trial_duration_seconds",
            "Time of each phase of a trial: calibration, evaluation, estimate (the estimate "
            "runs in parallel with the other two).",
            ["phase"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )

        self.study_trials = self._gauge(
            "gen5nas_search_study_trials", "Counted trials of the study, by state.", ["state"]
        )
        self.front_size = self._gauge(
            "gen5nas_search_pareto_front_trials", "Trials on the feasible Pareto front."
        )
        self._best: dict[str, tuple[Gauge, Gauge, Gauge]] = {}  # by Metric.prometheus_name

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry, multiprocess_mode="mostrecent")

    def _best_gauges(self, metric: Metric) -> tuple[Gauge, Gauge, Gauge]:
        """The best trial's score, latency and energy gauges, named by ``metric`` (made once:
        the task is known when the study is, after this object)."""
        word = metric.prometheus_name
        if word not in self._best:
            within = "of the best-scoring trial within the constraints"
            self._best[word] = (
                self._gauge(f"gen5nas_search_best_{word}_ratio", f"{metric.label} (0-1) {within}."),
                self._gauge(
                    f"gen5nas_search_best_{word}_latency_seconds", f"Estimated latency {within}."
                ),
                self._gauge(
                    f"gen5nas_search_best_{word}_energy_joules", f"Estimated energy {within}."
                ),
            )
        return self._best[word]

    def on_trial(self, trial: FrozenTrial) -> None:
        """A trial this worker finished (``runner.Worker.on_trial``)."""
        if trial.user_attrs.get(SURPLUS_ATTR):
            self.trials.labels("surplus").inc()
            return
        if trial.system_attrs.get("retry_history"):
            self.retried.inc()
        if trial.state == TrialState.COMPLETE:
            self.trials.labels("completed").inc()
            for phase, attr in PHASES.items():
                if attr in trial.user_attrs:
                    self.duration.labels(phase).observe(float(trial.user_attrs[attr]))
        elif trial.state == TrialState.FAIL:
            self.trials.labels("failed").inc()

    def on_records(
        self, records: Sequence[TrialRecord], metric: Metric = CLASSIFICATION.metric
    ) -> None:
        """The study as a worker last read it (``runner.Worker.on_progress``); ``metric``:
        the task's, what the records' scores are."""
        for state in STATES:
            self.study_trials.labels(state).set(sum(r.state == state for r in records))
        self.front_size.set(sum(r.pareto for r in records))
        feasible = [
            r for r in records if r.state == "COMPLETE" and r.feasible and r.accuracy is not None
        ]
        if not feasible:
            return
        best = max(feasible, key=lambda r: (r.accuracy or 0.0, -r.number))
        score, latency, energy = self._best_gauges(metric)
        score.set(metric.ratio(best.accuracy or 0.0))
        if best.latency_ms is not None:
            latency.set(best.latency_ms / 1000)
        if best.energy_mj is not None:
            energy.set(best.energy_mj / 1000)


class SearchMetricsEndpoint:
    """``/metrics`` of this process's search workers on ``host:port`` (0 = a free one).

    ``local``: the metrics of a worker run in this process (``workers`` 1). With more workers,
    spawn them inside ``worker_environment()``: it points them at this endpoint's directory."""

    def __init__(self, port: int, workers: int = 1, host: str = "0.0.0.0") -> None:
        self.registry = CollectorRegistry()
        self.local: SearchMetrics | None = None
        self.multiprocess_dir: str | None = None
        if workers > 1:
            self.multiprocess_dir = tempfile.mkdtemp(prefix="gen5nas-search-metrics-")
            MultiProcessCollector(self.registry, path=self.multiprocess_dir)
        else:
            self.local = SearchMetrics(self.registry)
        try:
            self.endpoint = MetricsEndpoint(self.registry, port, host)
        except BaseException:
            self._remove_dir()
            raise

    @property
    def port(self) -> int:
        return self.endpoint.port

    @contextlib.contextmanager
    def worker_environment(self) -> Iterator[None]:
        """Processes started inside inherit ``PROMETHEUS_MULTIPROC_DIR`` (read when
        prometheus_client is imported, so it must be in their environment from the start)."""
        if self.multiprocess_dir is None:
            yield
            return
        before = os.environ.get(MULTIPROC_ENV)
        os.environ[MULTIPROC_ENV] = self.multiprocess_dir
        try:
            yield
        finally:
            if before is None:
                del os.environ[MULTIPROC_ENV]
            else:
                os.environ[MULTIPROC_ENV] = before

    def close(self) -> None:
        self.endpoint.close()
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self.multiprocess_dir is not None:
            shutil.rmtree(self.multiprocess_dir, ignore_errors=True)

    def __enter__(self) -> SearchMetricsEndpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

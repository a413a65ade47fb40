"""The workers of a search: one worker in this process, or several worker processes on the
shared study.

``run_worker`` sets up one worker (the study with its own sampler seed, an estimator client, the
evaluator, the output refresher of worker 0) and runs the trial loop (``runner.Worker``). Worker
processes are spawned, wait for each other at a start barrier once ready, and are judged by
``check_failed_workers`` after the search: a dead worker fails the search only when the budget
was not spent.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from gen5nas.cpus import usable_cpus
from gen5nas.data.loaders import generated_data_home, prepare_dataset
from gen5nas.errors import Gen5NasError
from gen5nas.logdir import LogFile
from gen5nas.search.checkpoint_space import read_supernet
from gen5nas.search.cost import (
    make_client,
    server_list,
    supernet_cost_fn,
    supernet_cost_scope,
)
from gen5nas.search.evaluate import Evaluator, build_evaluator
from gen5nas.search.metrics import SearchMetrics, SearchMetricsEndpoint
from gen5nas.search.outputs import OutputRefresher, StudyOutputs
from gen5nas.search.results import TrialRecord, constraint_limits
from gen5nas.search.runner import Worker, WorkerReport
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import open_search_study
from gen5nas.spec.space import SearchSpace

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # a peer that is not ready by then is not waited for

# (process name, exit code) of each worker process that did not exit 0
FailedWorkers = list[tuple[str, int | None]]


def run_workers(
    settings: SearchSettings, space: SearchSpace, metrics: SearchMetricsEndpoint | None = None
) -> FailedWorkers:
    """One worker in this process, or ``settings.workers`` worker processes; ``metrics``: the
    endpoint they record into (made for ``settings.workers``)."""
    if metrics is not None and (metrics.local is not None) != (settings.workers == 1):
        raise ValueError(f"the metrics endpoint was not made for {settings.workers} worker(s)")
    if settings.workers == 1:
        run_worker(settings, 0, metrics=metrics.local if metrics else None)
        return []
    # Generated datasets are written once, before the workers (one read from a path, coco
    # or imagefolder, needs nothing).
    dataset = settings.spec.dataset
    if dataset.kind.generated:
        home = generated_data_home(dataset, Path(settings.work_dir), Path(settings.checkpoint))
        prepare_dataset(dataset, home, space.max_resolution())
    return _run_processes(settings, metrics)


def run_worker(
    settings: SearchSettings,
    worker_index: int,
    start: threading.Barrier | None = None,
    metrics: SearchMetrics | None = None,
) -> WorkerReport:
    """Run one search worker until the study holds ``maxTrials`` COMPLETE trials.

    ``start``: a barrier shared by the workers of one process group; each waits there once
    ready (checkpoint loaded, batches prepared), so a slow starter still gets a share of a
    small budget instead of finding it taken. ``metrics``: where its trials are recorded."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are logged by the worker
    torch.set_num_threads(max(1, usable_cpus() // max(1, settings.workers)))
    spec = settings.spec
    supernet = read_supernet(spec, Path(settings.checkpoint))
    space = supernet.space
    global_index = settings.worker_offset + worker_index
    scope = supernet_cost_scope(spec, supernet)
    study = open_search_study(settings, space, supernet.task, scope, worker_index=global_index)
    client = make_client(spec, server_list(settings.servers))
    evaluator: Evaluator | None = None
    try:
        cost_fn = supernet_cost_fn(client, supernet, scope)
        evaluator = build_evaluator(settings, space, supernet.meta, cost_fn)
        limits = constraint_limits(spec.constraints)
        writer = None
        if global_index == 0:
            outputs = StudyOutputs(
                study, space, Path(settings.work_dir), spec.cost_key.value, limits
            )
            writer = OutputRefresher(outputs)
        metric = evaluator.task.metric
        on_records = functools.partial(metrics.on_records, metric=metric) if metrics else None
        on_progress = _both(writer, on_records)
        worker = Worker(
            study=study,
            space=space,
            evaluate=evaluator.evaluate,
            cost_key=spec.cost_key.value,
            max_trials=spec.max_trials,
            limits=limits,
            name=f"worker-{global_index}",
            max_consecutive_failures=spec.evaluation.max_consecutive_failures,
            poll_s=min(5.0, float(spec.storage.heartbeat_interval_s)),
            max_retry=spec.storage.max_retry,
            on_progress=on_progress,
            on_trial=metrics.on_trial if metrics else None,
            metric=metric,
        )
        _wait_for_peers(start, global_index)
        return worker.run()
    except BaseException:
        if start is not None:
            start.abort()  # peers waiting on this worker go on without it
        raise
    finally:
        if evaluator is not None:
            evaluator.close()
        client.close()


def _both(*callbacks: Callable[[Any], None] | None) -> Callable[[Any], None] | None:
    """One callback calling each of ``callbacks`` that is set (None when none is)."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None

    def call(arg: Any) -> None:
        for c in given:
            c(arg)

    return call


def _wait_for_peers(start: threading.Barrier | None, index: int) -> None:
    if start is None:
        return
    try:
        start.wait(timeout=START_TIMEOUT_S)
    except threading.BrokenBarrierError:
        log.warning("worker %d: a peer worker did not get ready; starting without it", index)


def _worker_main(
    settings: SearchSettings,
    worker_index: int,
    log_level: int,
    start: threading.Barrier | None = None,
    record_metrics: bool = False,
) -> None:
    """Entry point of a spawned worker process; exit code 2 on a user-facing error.
    ``record_metrics``: the parent serves its metrics (multiprocess mode, search.metrics)."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s w{worker_index} %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # requeue the trial, then exit
    if settings.log_file:
        # The parent's file: LogFile appends whole lines, so the workers can share it.
        LogFile(
            settings.log_file,
            fmt=f"%(asctime)s %(levelname)s w{worker_index} %(name)s: %(message)s",
        )
    try:
        run_worker(settings, worker_index, start, SearchMetrics(None) if record_metrics else None)
    except Gen5NasError as exc:
        log.error("worker %d: %s", worker_index, exc)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _run_processes(
    settings: SearchSettings, metrics: SearchMetricsEndpoint | None = None
) -> FailedWorkers:
    """Run the worker processes; the (name, exit code) of those that did not exit 0."""
    ctx = mp.get_context("spawn")  # no fork of a process holding DB connections and threads
    level = logging.getLogger().getEffectiveLevel()
    start = ctx.Barrier(settings.workers)
    args = (level, start, metrics is not None)
    procs = [
        ctx.Process(target=_worker_main, args=(settings, i, *args), name=f"search-{i}")
        for i in range(settings.workers)
    ]
    with metrics.worker_environment() if metrics else contextlib.nullcontext():
        for p in procs:
            p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:  # each requeues its running trial, then exits
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join()
        raise
    return [(p.name, p.exitcode) for p in procs if p.exitcode != 0]


def check_failed_workers(
    failed: FailedWorkers, records: list[TrialRecord], max_trials: int
) -> None:
    """A dead worker's trial is retried by its peers: the search only failed when the budget
    was not spent."""
    complete = sum(r.state == "COMPLETE" for r in records)
    if complete >= max_trials:
        log.warning(
            "search workers died: %s (exit codes; negative: killed by that signal); the others "
            "spent the budget (%d/%d trials complete)",
            failed,
            complete,
            max_trials,
        )
        return
    raise Gen5NasError(
        f"search workers failed: {failed} (see the log above) with {complete}/{max_trials} "
        "trials complete; the study keeps every completed trial (outputs written): rerun the "
        "same command to resume"
    )

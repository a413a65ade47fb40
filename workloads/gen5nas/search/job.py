"""The NASSearch step: a validated spec and a trained supernet in, the seed's outputs out.

``run_search`` checks everything that can be wrong before the first trial (the storage URL,
the checkpoint and its search space, the study's identity, the dataset, the estimator), then
runs one worker in this process or several worker processes on the shared study, and writes
the outputs. Rerunning the same command resumes the study (``load_if_exists``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing as mp
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gen5nas.errors import CheckpointError, Gen5NasError, SpecError
from gen5nas.logdir import new_log_dir
from gen5nas.search.results import COST_ATTRS, TrialRecord
from gen5nas.spec.search import NASSearchSpec
from gen5nas.spec.space import SearchSpace

log = logging.getLogger(__name__)

OUTPUTS_EVERY = 10  # trials between refreshes of the output files while a search runs


@dataclass(frozen=True)
class SearchSettings:
    """Everything a worker process needs (picklable: it is sent to spawned workers)."""

    spec: NASSearchSpec
    checkpoint: str
    work_dir: str
    storage_url: str
    study_name: str
    servers: tuple[tuple[str, tuple[int, ...]], ...] = ()
    workers: int = 1
    worker_offset: int = 0  # this process's first worker index (seeds; cli.default_worker_offset)
    config_file: str | None = None
    log_file: str | None = None  # worker processes append their records to it


@dataclass
class SearchResult:
    study_name: str
    storage_url: str
    records: list[TrialRecord]
    outputs: dict[str, Path]
    cost_key: str
    front: list[TrialRecord] = field(default_factory=list)

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


# ---- checkpoint and space ------------------------------------------------------------------
def checkpoint_meta(path: Path) -> dict[str, Any]:
    from gen5nas.train.checkpoint import read_checkpoint

    meta = read_checkpoint(path).get("meta") or {}
    if meta.get("model_kind", "supernet") != "supernet":
        raise CheckpointError(f"{path} holds a {meta.get('model_kind')} model, not a supernet")
    if "space" not in meta or "num_classes" not in meta:
        raise CheckpointError(f"{path} has no search space in its meta; not a supernet")
    return dict(meta)


def search_space(spec: NASSearchSpec, meta: dict[str, Any], checkpoint: Path) -> SearchSpace:
    """The checkpoint's space; a ``searchSpace`` in the spec must be that same space."""
    from gen5nas.train.checkpoint import check_same_space

    stored = SearchSpace.model_validate(meta["space"])
    if spec.search_space is None:
        return stored
    space = spec.search_space.resolve()
    try:
        check_same_space(meta, space, source=str(checkpoint))
    except CheckpointError as exc:
        raise CheckpointError(f"spec.searchSpace: {exc}") from None
    return space


def space_name(spec: NASSearchSpec, space: SearchSpace) -> str | None:
    """The shipped name of ``space`` when it is one (the estimator can then build archs
    itself, and caches them across workers); None for a custom space."""
    from gen5nas.spec.spaces import load_space, named_spaces

    if spec.search_space is not None and spec.search_space.name:
        return spec.search_space.name
    for name in named_spaces():
        if load_space(name) == space:
            return name
    return None


# ---- the estimator ---------------------------------------------------------------------------
def server_list(servers: tuple[tuple[str, tuple[int, ...]], ...]) -> list[dict[str, Any]]:
    return [{"host": host, "ports": list(ports)} for host, ports in servers]


@contextlib.contextmanager
def estimator_servers(
    spec: NASSearchSpec, ports: int = 1
) -> Iterator[tuple[tuple[str, tuple[int, ...]], ...]]:
    """The spec's servers; when it names none, an estimator server started in this process on
    ``ports`` free loopback ports (one per search worker), stopped on exit."""
    if spec.estimator.servers:
        yield tuple((s.host, tuple(s.ports)) for s in spec.estimator.servers)
        return
    from gen5nas.estimator.server import start_server

    server = start_server([0] * max(1, ports), host="127.0.0.1")
    log.info("estimator: started in-process on %s", ", ".join(server.addresses))
    try:
        yield (("127.0.0.1", tuple(server.ports)),)
    finally:
        server.stop(grace=1.0)


def make_client(spec: NASSearchSpec, servers: list[dict[str, Any]]) -> Any:
    from gen5nas.estimator.client import EstimatorClient

    est = spec.estimator
    return EstimatorClient(
        servers,
        est.profile,
        dict(est.hw_config),
        timeout_s=est.timeout_s,
        retries=est.retries,
        with_layers=False,
    )


def make_cost_fn(
    client: Any, space: SearchSpace, name: str | None, num_classes: int, activation: str
) -> Any:
    """arch -> (latency_ms, energy_mj): by name when the server knows the space, else the ONNX
    of the arch (built here, without torch)."""

    def cost(arch: Any) -> tuple[float, float]:
        if name is not None:
            est = client.estimate_arch(name, arch, num_classes=num_classes, activation=activation)
        else:
            from gen5nas.estimator.arch_graph import arch_onnx

            est = client.estimate(
                arch_onnx(space, arch, num_classes=num_classes, activation=activation)
            )
        if est.latency_ms is None or est.energy_mj is None:
            raise Gen5NasError(f"the estimator answered without latency/energy: {est}")
        return float(est.latency_ms), float(est.energy_mj)

    return cost


def probe_estimator(cost_fn: Any, space: SearchSpace, servers: list[dict[str, Any]]) -> None:
    """One request before any trial: an unreachable or misconfigured estimator is reported
    now, and the study is left untouched."""
    from gen5nas.estimator.errors import EstimatorRequestError, EstimatorUnavailable

    where = ", ".join(f"{s['host']}:{p}" for s in servers for p in s["ports"])
    try:
        cost_fn(space.min())
    except EstimatorUnavailable as exc:
        raise Gen5NasError(
            f"estimator.servers: no estimator answers at {where}: {exc}. Start one "
            "(`gen5nas estimator serve --port ...`) or leave estimator.servers empty to start "
            "one in-process"
        ) from None
    except EstimatorRequestError as exc:
        raise Gen5NasError(
            f"estimator (at {where}) refused the request: {exc}; check "
            "estimator.profile and estimator.hwConfig"
        ) from None


# ---- the study -------------------------------------------------------------------------------
def study_identity(space: SearchSpace, spec: NASSearchSpec, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "space": space.model_dump(mode="json", by_alias=False),
        "cost_key": spec.cost_key.value,
        "task": str(meta.get("task", "classification")),
    }


def open_search_study(
    settings: SearchSettings, space: SearchSpace, meta: dict[str, Any], worker_index: int = 0
) -> Any:
    from gen5nas.search.sampler import build_sampler
    from gen5nas.search.study import open_storage, open_study

    spec = settings.spec
    sampler = build_sampler(spec.sampler, worker_index=worker_index)
    storage = open_storage(settings.storage_url, spec.storage)
    return open_study(storage, settings.study_name, sampler, study_identity(space, spec, meta))


# ---- one worker --------------------------------------------------------------------------------
def build_evaluator(
    settings: SearchSettings, space: SearchSpace, meta: dict[str, Any], cost_fn: Any
) -> Any:
    import torch

    from gen5nas.data import build_loaders
    from gen5nas.data.loaders import generated_data_home
    from gen5nas.search.evaluate import Evaluator
    from gen5nas.train.bn_calibration import BatchCache
    from gen5nas.train.checkpoint import load_supernet

    spec = settings.spec
    supernet, _ = load_supernet(settings.checkpoint)
    dataset = spec.dataset
    if spec.evaluation.batch_size is not None:
        dataset = dataset.model_copy(
            update={
                "batch_size": spec.evaluation.batch_size,
                "val_batch_size": spec.evaluation.batch_size,
            }
        )
    data_home = generated_data_home(dataset, Path(settings.work_dir), Path(settings.checkpoint))
    loaders = build_loaders(
        dataset, space.max_resolution(), work_dir=data_home, seed=spec.sampler.seed
    )
    if loaders.num_classes != int(meta["num_classes"]):
        raise SpecError(
            f"the dataset has {loaders.num_classes} classes, the supernet "
            f"{meta['num_classes']}: search on the data it was trained for",
            field="dataset",
        )
    calibration = BatchCache(
        loaders.calibration(spec.evaluation.calib_batches, seed=spec.sampler.seed),
        spec.evaluation.calib_batches,
    )
    assert loaders.val is not None
    val_batches = spec.evaluation.val_batches or len(loaders.val)
    h, w = space.max_resolution()
    val_bytes = min(val_batches, len(loaders.val)) * (loaders.val.batch_size or 1) * 3 * h * w * 4
    validation: Any
    if val_bytes <= spec.evaluation.cache_mib * 2**20:
        validation = BatchCache(loaders.val, val_batches)
    else:
        log.info(
            "validation set (%.0f MiB) exceeds evaluation.cacheMib; streaming it", val_bytes / 2**20
        )
        validation = _FirstBatches(loaders.val, val_batches)
    log.info(
        "evaluator: %d calibration batches, %d validation batches (%s), %d classes",
        len(calibration),
        min(val_batches, len(loaders.val)),
        "cached" if isinstance(validation, BatchCache) else "streamed",
        loaders.num_classes,
    )
    return Evaluator(supernet, calibration, validation, cost_fn, torch.device("cpu"))


class _FirstBatches:
    def __init__(self, loader: Any, n: int) -> None:
        self.loader, self.n = loader, n

    def __iter__(self) -> Iterator[Any]:
        # islice stops before asking for batch n+1 (a loop with a break would load it).
        return itertools.islice(self.loader, self.n)


def run_worker(settings: SearchSettings, worker_index: int, start: Any = None) -> Any:
    """Run one search worker until the study holds ``maxTrials`` COMPLETE trials.

    ``start``: a barrier shared by the workers of one process group; each waits there once
    ready (checkpoint loaded, batches prepared), so a slow starter still gets a share of a
    small budget instead of finding it taken."""
    import optuna
    import torch

    from gen5nas.search.runner import Worker, constraint_limits

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are logged by the worker
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, settings.workers)))
    spec = settings.spec
    checkpoint = Path(settings.checkpoint)
    meta = checkpoint_meta(checkpoint)
    space = search_space(spec, meta, checkpoint)
    global_index = settings.worker_offset + worker_index
    study = open_search_study(settings, space, meta, worker_index=global_index)
    servers = server_list(settings.servers)
    client = make_client(spec, servers)
    evaluator = None
    try:
        cost_fn = make_cost_fn(
            client,
            space,
            space_name(spec, space),
            int(meta["num_classes"]),
            str(meta.get("activation") or "relu6"),
        )
        evaluator = build_evaluator(settings, space, meta, cost_fn)
        writer = _OutputRefresher(settings, space, study) if global_index == 0 else None
        worker = Worker(
            study=study,
            space=space,
            evaluate=evaluator.evaluate,
            cost_key=spec.cost_key.value,
            max_trials=spec.max_trials,
            limits=constraint_limits(spec.constraints),
            name=f"worker-{global_index}",
            max_consecutive_failures=spec.evaluation.max_consecutive_failures,
            poll_s=min(5.0, float(spec.storage.heartbeat_interval_s)),
            max_retry=spec.storage.max_retry,
            on_progress=writer,
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


START_TIMEOUT_S = 300.0  # a peer that is not ready by then is not waited for


def _wait_for_peers(start: Any, index: int) -> None:
    if start is None:
        return
    import threading

    try:
        start.wait(timeout=START_TIMEOUT_S)
    except threading.BrokenBarrierError:
        log.warning("worker %d: a peer worker did not get ready; starting without it", index)


class _OutputRefresher:
    """Rewrites the outputs every ``OUTPUTS_EVERY`` finished trials, so a long search can be
    inspected (and nothing is lost) before it ends."""

    def __init__(self, settings: SearchSettings, space: SearchSpace, study: Any) -> None:
        self.settings, self.space, self.study = settings, space, study
        self.seen = 0

    def __call__(self, records: list[TrialRecord]) -> None:
        self.seen += 1
        if self.seen % OUTPUTS_EVERY == 0:
            write_outputs(self.settings, self.space, self.study, records)


def _worker_main(
    settings: SearchSettings, worker_index: int, log_level: int, start: Any = None
) -> None:
    """Entry point of a spawned worker process; exit code 2 on a user-facing error."""
    import sys

    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s w{worker_index} %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # requeue the trial, then exit
    if settings.log_file:
        handler = logging.FileHandler(settings.log_file)  # appends whole lines, as the parent
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s w{worker_index} %(name)s: %(message)s")
        )
        handler.setLevel(logging.INFO)
        logger = logging.getLogger("gen5nas")
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        run_worker(settings, worker_index, start)
    except Gen5NasError as exc:
        log.error("worker %d: %s", worker_index, exc)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


# ---- outputs -------------------------------------------------------------------------------------
def write_outputs(
    settings: SearchSettings,
    space: SearchSpace,
    study: Any,
    records: list[TrialRecord] | None = None,
) -> tuple[list[TrialRecord], dict[str, Path]]:
    from gen5nas.search.outputs import write_all
    from gen5nas.search.results import collect
    from gen5nas.search.runner import constraint_limits

    spec = settings.spec
    if records is None:
        records = collect(
            study.get_trials(deepcopy=False),
            space,
            spec.cost_key.value,
            constraint_limits(spec.constraints),
        )
    paths = write_all(
        study,
        records,
        Path(settings.work_dir),
        cost_key=spec.cost_key.value,
        num_stages=space.arch_setting.num_stages,
    )
    return records, paths


def open_log_dir(work_dir: Path, settings: SearchSettings) -> logging.Handler:
    """The seed's ``<work dir>/<timestamp>/`` log folder (search.log, the resolved config) and
    a copy of the config file in the work dir."""
    log_dir = new_log_dir(work_dir)
    handler = logging.FileHandler(log_dir / "search.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("gen5nas")
    logger.addHandler(handler)
    # The file gets INFO records whatever the console's level; restored by close_log_dir.
    handler.previous_level = logger.level  # type: ignore[attr-defined]
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    resolved = settings.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    resolved.update(
        checkpoint=settings.checkpoint,
        storage={**resolved.get("storage", {}), "url": _redacted(settings)},
    )
    (log_dir / "resolved_config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    if settings.config_file:
        src = Path(settings.config_file)
        dst = work_dir / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    return handler


def close_log_dir(handler: logging.Handler) -> None:
    logger = logging.getLogger("gen5nas")
    logger.removeHandler(handler)
    logger.setLevel(getattr(handler, "previous_level", logging.NOTSET))
    handler.close()


def _redacted(settings: SearchSettings) -> str:
    from gen5nas.search.study import redact

    return redact(settings.storage_url)


# ---- the step ------------------------------------------------------------------------------------
def run_search(settings: SearchSettings) -> SearchResult:
    """Check, search (1 or ``settings.workers`` processes), write the outputs."""
    import optuna

    from gen5nas.search.runner import seed_extremes
    from gen5nas.search.study import parse_storage_url
    from gen5nas.train.checkpoint import supernet_checkpoint

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = settings.spec
    work_dir = Path(settings.work_dir)
    parse_storage_url(settings.storage_url)  # a bad URL is reported before anything else
    checkpoint = supernet_checkpoint(settings.checkpoint)
    settings = _replace(settings, checkpoint=str(checkpoint))
    meta = checkpoint_meta(checkpoint)
    space = search_space(spec, meta, checkpoint)
    if str(meta.get("task", "classification")) != "classification":
        raise SpecError(
            f"searching a {meta.get('task')} supernet is not available in this "
            "version; use a classification supernet",
            field="checkpoint",
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    handler = open_log_dir(work_dir, settings)
    settings = _replace(settings, log_file=getattr(handler, "baseFilename", None))
    try:
        study = open_search_study(settings, space, meta)
        with estimator_servers(spec, settings.workers) as servers:
            settings = _replace(settings, servers=servers)
            client = make_client(spec, server_list(servers))
            try:
                probe_estimator(
                    make_cost_fn(
                        client,
                        space,
                        space_name(spec, space),
                        int(meta["num_classes"]),
                        str(meta.get("activation") or "relu6"),
                    ),
                    space,
                    server_list(servers),
                )
            finally:
                client.close()
            if spec.sampler.seed_extremes:
                seed_extremes(study, space)  # idempotent: every pod of a Job may call it
            log.info(
                "search: study %r in %s, space %s (%d subnets), cost %s, %d trials, "
                "%d worker(s), sampler %s, work dir %s",
                settings.study_name,
                _redacted(settings),
                space_name(spec, space) or "custom",
                space.size(),
                spec.cost_key.value,
                spec.max_trials,
                settings.workers,
                spec.sampler.type.value,
                work_dir,
            )
            failed: list[tuple[str, int | None]] = []
            try:
                if settings.workers == 1:
                    run_worker(settings, 0)
                else:
                    from gen5nas.data.loaders import generated_data_home, prepare_dataset

                    # Generated datasets are written once, before the workers.
                    home = generated_data_home(spec.dataset, work_dir, Path(settings.checkpoint))
                    prepare_dataset(spec.dataset, home, space.max_resolution())
                    failed = _run_processes(settings)
            except BaseException:  # stopped (Ctrl-C, too many failures): keep what was scored
                _write_outputs_before_leaving(settings, space, study)
                raise
        # Written whatever the workers did: the study is the truth, stale files are not.
        try:
            records, paths = write_outputs(settings, space, study)
            record_outputs(study, paths)
        except Exception as exc:
            if not failed:
                raise
            # The workers' failure is the news (a lost database fails both).
            raise Gen5NasError(
                f"search workers failed: {failed} (see the log above), and the outputs could "
                f"not be written: {exc}"
            ) from exc
        if failed:
            _check_failed_workers(failed, records, spec.max_trials)
        front = sorted(
            (r for r in records if r.pareto), key=lambda r: r.cost(spec.cost_key.value) or 0.0
        )
        result = SearchResult(
            settings.study_name, settings.storage_url, records, paths, spec.cost_key.value, front
        )
        _log_summary(result)
    finally:
        close_log_dir(handler)
    return result


def _write_outputs_before_leaving(settings: SearchSettings, space: SearchSpace, study: Any) -> None:
    """Outputs from whatever the study holds, on the way out of a stopped search; a failure
    here is logged, not raised over the reason the search stopped."""
    try:
        write_outputs(settings, space, study)
        log.info("outputs written from the study as it stands; rerun the command to resume")
    except Exception as exc:
        log.warning("could not write the outputs on the way out: %s", exc)


def _run_processes(settings: SearchSettings) -> list[tuple[str, int | None]]:
    """Run the worker processes; the (name, exit code) of those that did not exit 0."""
    ctx = mp.get_context("spawn")  # no fork of a process holding DB connections and threads
    level = logging.getLogger().getEffectiveLevel()
    start = ctx.Barrier(settings.workers)
    procs = [
        ctx.Process(target=_worker_main, args=(settings, i, level, start), name=f"search-{i}")
        for i in range(settings.workers)
    ]
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


def _check_failed_workers(
    failed: list[tuple[str, int | None]], records: list[TrialRecord], max_trials: int
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


def record_outputs(study: Any, paths: dict[str, Path]) -> None:
    """Store the absolute paths written in the study's ``outputs`` user attr: the operator
    reports them (and takes their presence as the search having written its outputs)."""
    from gen5nas.search.outputs import OUTPUT_STATUS_KEYS, OUTPUTS_ATTR

    outputs = {key: str(paths[name].resolve()) for name, key in OUTPUT_STATUS_KEYS.items()}
    outputs["fixSubnets"] += "/"  # a directory, as the operator's default shows it
    study.set_user_attr(OUTPUTS_ATTR, outputs)


def _replace(settings: SearchSettings, **changes: Any) -> SearchSettings:
    from dataclasses import replace

    return replace(settings, **changes)


def _log_summary(result: SearchResult) -> None:
    attr = COST_ATTRS[result.cost_key]
    log.info(
        "search done: %d complete trials, %d on the Pareto front; outputs in %s",
        result.completed,
        len(result.front),
        result.outputs["csv"].parent,
    )
    for r in result.front:
        log.info(
            "  front: trial %d top-1 %.2f%% %s %.4g  %s",
            r.number,
            r.accuracy or 0.0,
            attr,
            getattr(r, attr) or 0.0,
            r.arch.summary() if r.arch else "",
        )

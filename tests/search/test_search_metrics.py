"""A search's /metrics scraped over HTTP: a worker loop's counts against its study, and real
searches (one worker in-process, two spawned worker processes in multiprocess mode)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from prometheus_client import CollectorRegistry
from support.metrics import Scrape, scrape_port
from support.search import FailingFor, fresh_checkpoint, tiny_space, write_search_manifest

from gen5nas.cli import main
from gen5nas.metrics_http import MetricsEndpoint
from gen5nas.search.job import run_search
from gen5nas.search.metrics import SearchMetrics, SearchMetricsEndpoint
from gen5nas.search.results import collect
from gen5nas.search.runner import Worker, seed_extremes
from gen5nas.search.sampler import build_sampler
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import default_storage_url, open_storage, open_study
from gen5nas.spec.common import load_spec
from gen5nas.spec.search import KIND, NASSearchSpec, SamplerSpec, StorageSpec

TRIALS = "gen5nas_search_trials_total"
DURATION = "gen5nas_search_trial_duration_seconds"
IDENTITY = {"space": "tiny", "cost_key": "latency", "task": "classification"}


def _study(tmp_path: Path) -> optuna.Study:
    return open_study(
        open_storage(default_storage_url(tmp_path), StorageSpec()),
        "s",
        build_sampler(SamplerSpec(population_size=4)),
        IDENTITY,
    )


def _states(study: optuna.Study, *states: TrialState) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=states)


def _check_study_gauges(m: Scrape, study: optuna.Study, limits: dict[str, float]) -> None:
    """The study gauges are what the study holds (read after its last trial)."""
    records = collect(study.trials, tiny_space(), "latency", limits)
    feasible = [r for r in records if r.state == "COMPLETE" and r.feasible]
    best = max(feasible, key=lambda r: (r.accuracy, -r.number))
    assert m.value("gen5nas_search_best_accuracy_ratio") == pytest.approx(best.accuracy / 100)
    assert m.value("gen5nas_search_best_accuracy_latency_seconds") == pytest.approx(
        best.latency_ms / 1000
    )
    assert m.value("gen5nas_search_best_accuracy_energy_joules") == pytest.approx(
        best.energy_mj / 1000
    )
    assert m.value("gen5nas_search_pareto_front_trials") == sum(r.pareto for r in records)
    for state in ("COMPLETE", "FAIL"):
        want = sum(r.state == state for r in records)
        assert m.value("gen5nas_search_study_trials", state=state) == want


def test_a_workers_trials_failures_retries_and_best_are_counted(tmp_path: Path) -> None:
    space = tiny_space()
    study = _study(tmp_path)
    registry = CollectorRegistry()
    metrics = SearchMetrics(registry)
    limits = {"latency_ms": 6.0}  # the smallest subnet (2.6) is within, the largest not
    calls = {"n": 0}
    failing = FailingFor(lambda a: a.stages[1].kernel_size == 5, "subnet exploded")

    def interrupt_second(arch):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return failing(arch)

    def worker(evaluate, n):  # type: ignore[no-untyped-def]
        return Worker(
            study, space, evaluate, "latency", n, limits=limits, max_consecutive_failures=100,
            on_progress=metrics.on_records, on_trial=metrics.on_trial,
        )  # fmt: skip

    seed_extremes(study, space)  # the smallest subnet is within the limit
    with pytest.raises(KeyboardInterrupt):
        worker(interrupt_second, 8).run()
    worker(failing, 8).run()  # resumes: the interrupted trial is retried first

    with MetricsEndpoint(registry, 0, "127.0.0.1") as endpoint:
        m = scrape_port(endpoint.port)
    complete = _states(study, TrialState.COMPLETE)
    failed = [t for t in _states(study, TrialState.FAIL) if "fail_reason" in t.user_attrs]
    assert len(complete) == 8 and failed
    assert m.value(TRIALS, state="completed") == 8
    assert m.value(TRIALS, state="failed") == len(failed)
    assert m.value("gen5nas_search_trials_retried_total") == 1  # the interrupted one
    # proxy_outcome times calibration and evaluation (no estimator): one sample per trial each.
    assert m.value(f"{DURATION}_count", phase="calibration") == 8
    assert m.value(f"{DURATION}_count", phase="evaluation") == 8
    assert m.value(f"{DURATION}_count", phase="estimate") is None
    _check_study_gauges(m, study, limits)
    assert m.value("gen5nas_search_best_accuracy_latency_seconds") <= 6.0 / 1000


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _settings(tmp_path: Path, ckpt: Path, workers: int, trials: int) -> SearchSettings:
    manifest = write_search_manifest(
        tmp_path / "nassearch.yaml",
        dataset={"kind": "digits", "path": str(tmp_path / "digits"), "batchSize": 64,
                 "numWorkers": 0},
        maxTrials=trials,
    )  # fmt: skip
    _, spec = load_spec(manifest, KIND, NASSearchSpec)
    work = tmp_path / "work"
    return SearchSettings(
        spec, str(ckpt), str(work), default_storage_url(work), "t", workers=workers,
        config_file=str(manifest),
    )  # fmt: skip


def _scrape_while(run: threading.Thread, port: int) -> list[Scrape]:
    """Scrapes taken while ``run`` is alive (the endpoint answers during the search)."""
    seen = []
    while run.is_alive():
        seen.append(scrape_port(port))
        time.sleep(0.2)
    return seen


def _run_and_scrape(settings: SearchSettings) -> tuple[Scrape, list[Scrape], SearchMetricsEndpoint]:
    endpoint = SearchMetricsEndpoint(0, settings.workers, host="127.0.0.1")
    errors: list[BaseException] = []

    def search() -> None:
        try:
            run_search(settings, endpoint)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)

    run = threading.Thread(target=search)
    run.start()
    during = _scrape_while(run, endpoint.port)
    run.join()
    if errors:
        endpoint.close()
        raise errors[0]
    return scrape_port(endpoint.port), during, endpoint


def _check_counts(m: Scrape, study: optuna.Study, trials: int) -> None:
    assert len(_states(study, TrialState.COMPLETE)) == trials
    assert m.value(TRIALS, state="completed") == trials
    assert m.value(TRIALS, state="failed") is None  # no trial failed
    for phase in ("calibration", "evaluation", "estimate"):
        assert m.value(f"{DURATION}_count", phase=phase) == trials
        assert m.value(f"{DURATION}_sum", phase=phase) > 0
        buckets = m.values(f"{DURATION}_bucket", phase=phase)
        counts = [v for _, v in sorted(buckets, key=lambda lv: float(lv[0]["le"]))]
        assert counts == sorted(counts) and counts[-1] == trials  # cumulative buckets
    assert m.value("gen5nas_search_trials_retried_total") == 0


def test_one_worker_search_serves_its_metrics(tmp_path: Path, ckpt: Path) -> None:
    settings = _settings(tmp_path, ckpt, workers=1, trials=4)
    final, during, endpoint = _run_and_scrape(settings)
    endpoint.close()
    study = optuna.load_study(study_name="t", storage=settings.storage_url)
    _check_counts(final, study, 4)
    _check_study_gauges(final, study, {})
    assert during, "the endpoint answered no scrape while the search ran"
    for m in during:  # never more than the run ends with
        assert (m.value(TRIALS, state="completed") or 0) <= 4


@pytest.mark.slow  # two spawned processes each import torch and build the evaluator
def test_two_worker_processes_are_merged_on_one_port(tmp_path: Path, ckpt: Path) -> None:
    settings = _settings(tmp_path, ckpt, workers=2, trials=6)
    final, during, endpoint = _run_and_scrape(settings)
    try:
        assert endpoint.multiprocess_dir is not None
        files = sorted(p.name for p in Path(endpoint.multiprocess_dir).glob("*.db"))
    finally:
        endpoint.close()
    assert not Path(endpoint.multiprocess_dir).exists()  # removed with the endpoint
    study = optuna.load_study(study_name="t", storage=settings.storage_url)
    workers = {t.user_attrs["worker"] for t in _states(study, TrialState.COMPLETE)}
    assert workers == {"worker-0", "worker-1"}
    # Both processes wrote samples; the endpoint sums them.
    pids = {name.rsplit("_", 1)[1] for name in files if name.startswith("counter_")}
    assert len(pids) == 2, files
    _check_counts(final, study, 6)
    accuracies = {t.user_attrs["accuracy_top1"] / 100 for t in _states(study, TrialState.COMPLETE)}
    best = final.value("gen5nas_search_best_accuracy_ratio")
    assert best in accuracies  # one worker's latest view of the shared study
    assert during


def test_cli_flag_serves_the_metrics_and_a_bad_port_is_refused(
    tmp_path: Path, ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(tmp_path, ckpt, workers=1, trials=2)
    argv = ["search", "-f", str(settings.config_file), "--checkpoint", str(ckpt),
            "--work-dir", settings.work_dir]  # fmt: skip
    assert main([*argv, "--metrics-port", "70000"]) == 2
    assert "--metrics-port: must be a TCP port (0-65535), got 70000" in capsys.readouterr().err
    with MetricsEndpoint(CollectorRegistry(), 0, "0.0.0.0") as taken:
        assert main([*argv, "--metrics-port", str(taken.port)]) == 2
        assert f"cannot serve /metrics on 0.0.0.0:{taken.port}" in capsys.readouterr().err
        port = taken.port  # free again once closed
    assert main([*argv, "--metrics-port", str(port)]) == 0
    assert f"search metrics on http://127.0.0.1:{port}/metrics" in capsys.readouterr().out


def test_an_endpoint_made_for_other_workers_is_refused(tmp_path: Path, ckpt: Path) -> None:
    from gen5nas.search.workers import run_workers

    settings = _settings(tmp_path, ckpt, workers=2, trials=2)
    with (
        SearchMetricsEndpoint(0, 1, host="127.0.0.1") as endpoint,
        pytest.raises(ValueError, match="not made for 2 worker"),
    ):
        run_workers(settings, tiny_space(), endpoint)

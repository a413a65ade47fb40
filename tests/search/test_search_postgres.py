"""Search workers on a real PostgreSQL server: a shared study, and a worker killed mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from support.search import check_outputs, fresh_checkpoint, write_search_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


def _manifest(tmp_path: Path, **spec: object) -> Path:
    return write_search_manifest(
        tmp_path / "nassearch.yaml",
        dataset={
            "kind": "digits",
            "path": str(tmp_path / "digits"),
            "batchSize": 64,
            "numWorkers": 0,
        },
        storage={"heartbeatIntervalS": 1, "gracePeriodS": 3},
        **spec,
    )


def _command(manifest: Path, ckpt: Path, work: Path, storage: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gen5nas",
        "search",
        "-f",
        str(manifest),
        "--checkpoint",
        str(ckpt),
        "--work-dir",
        str(work),
        "--storage",
        storage,
        *extra,
    ]


def _trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="t", storage=storage).get_trials(deepcopy=False)


def test_two_workers_share_one_study(postgres_server, tmp_path: Path, ckpt: Path) -> None:  # type: ignore[no-untyped-def]
    storage = postgres_server.new_database()
    work = tmp_path / "work"
    manifest = _manifest(tmp_path, maxTrials=8)
    done = subprocess.run(
        _command(manifest, ckpt, work, storage, "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    trials = _trials(storage)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no trial number twice
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 8
    # Every trial is accounted for: complete, or closed unrun as a marked surplus of a race.
    others = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.user_attrs.get("gen5nas_surplus") for t in others)
    assert {t.user_attrs["worker"] for t in complete} == {"worker-0", "worker-1"}
    check_outputs(work, optuna.load_study(study_name="t", storage=storage), "latency")


def _study_trials(storage: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return _trials(storage)
    except KeyError:  # the study does not exist yet
        return []


def _running_with_params(storage: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in _study_trials(storage) if t.state == TrialState.RUNNING and t.params]


def _children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (Linux /proc; psutil is not a dependency)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            continue
    return out


def _spawned_workers(pid: int) -> list[int]:
    """The search worker processes of a `gen5nas search --workers N` (not the resource
    tracker that multiprocessing also starts)."""
    workers = []
    for child in _children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return workers


def test_a_killed_worker_loses_nothing(postgres_server, tmp_path: Path, ckpt: Path) -> None:  # type: ignore[no-untyped-def]
    storage = postgres_server.new_database()
    work = tmp_path / "work"
    manifest = _manifest(tmp_path, maxTrials=8, evaluation={"calibBatches": 4})
    cmd = _command(manifest, ckpt, work, storage)
    killed: list[optuna.trial.FrozenTrial] = []
    stderr = ""
    # A kill can land just after a trial finished: what counts is what is RUNNING once the
    # process is gone. Nothing running then: run the command again (the study resumes) and
    # kill it again.
    for attempt in range(4):
        err_path = tmp_path / f"stderr-{attempt}.log"
        with err_path.open("w") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                trials = _study_trials(storage)
                running = [t for t in trials if t.state == TrialState.RUNNING and t.params]
                if sum(t.state == TrialState.COMPLETE for t in trials) >= 3 and running:
                    os.kill(proc.pid, signal.SIGKILL)  # mid-trial: no chance to clean up
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
        stderr = err_path.read_text()
        killed = _running_with_params(storage)  # now, with the process gone
        if killed:
            break
        assert proc.returncode != 0, f"finished before a trial was caught running: {stderr[-2000:]}"
    assert killed, f"never caught a trial running; worker stderr: {stderr[-2000:]}"
    before = {t.number: t.values for t in _trials(storage) if t.state == TrialState.COMPLETE}
    assert len(before) < 8

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = _trials(storage)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 8
    for number, values in before.items():  # no COMPLETE trial lost or changed
        assert complete[number].values == values
    lost = next(t for t in trials if t.number == killed[0].number)
    assert lost.state == TrialState.FAIL  # failed by the heartbeat check ...
    # ... and retried with its params (those stored when it died: a kill mid-suggestion leaves
    # a partial set, which the retry fixes while the sampler fills in the rest).
    assert lost.params
    assert any(
        all(t.params.get(k) == v for k, v in lost.params.items()) and t.number > lost.number
        for t in complete.values()
    )
    check_outputs(work, optuna.load_study(study_name="t", storage=storage), "latency")


def test_a_killed_worker_process_of_several_is_covered_by_the_others(  # type: ignore[no-untyped-def]
    postgres_server, tmp_path: Path, ckpt: Path
) -> None:
    storage = postgres_server.new_database()
    work = tmp_path / "work"
    manifest = _manifest(tmp_path, maxTrials=8, evaluation={"calibBatches": 4})
    err_path = tmp_path / "stderr.log"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            _command(manifest, ckpt, work, storage, "--workers", "2"),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    victim = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            workers = _spawned_workers(proc.pid)
            if len(workers) == 2 and _running_with_params(storage):
                victim = workers[-1]
                os.kill(victim, signal.SIGKILL)  # one worker, mid-search; its peer goes on
                break
            time.sleep(0.05)
        assert victim is not None, f"never caught both workers running: {err_path.read_text()}"
        proc.wait(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_path.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert "search workers died" in stderr and str(-signal.SIGKILL) in stderr
    trials = _trials(storage)
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 8
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # The outputs were written after the kill, from the finished study.
    check_outputs(work, optuna.load_study(study_name="t", storage=storage), "latency")

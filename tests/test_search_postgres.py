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
from searchkit import check_outputs, fresh_checkpoint, write_search_manifest

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


def test_a_killed_worker_loses_nothing(postgres_server, tmp_path: Path, ckpt: Path) -> None:  # type: ignore[no-untyped-def]
    storage = postgres_server.new_database()
    work = tmp_path / "work"
    manifest = _manifest(tmp_path, maxTrials=8, evaluation={"calibBatches": 4})
    cmd = _command(manifest, ckpt, work, storage)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed: list[optuna.trial.FrozenTrial] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                trials = _trials(storage)
            except KeyError:  # the study does not exist yet
                trials = []
            running = [t for t in trials if t.state == TrialState.RUNNING and t.params]
            if sum(t.state == TrialState.COMPLETE for t in trials) >= 3 and running:
                os.kill(proc.pid, signal.SIGKILL)  # mid-trial: no chance to clean up
                proc.wait(timeout=30)
                killed = running
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, f"never caught a trial running; worker stderr: {proc.stderr.read()[-2000:]}"
    before = {t.number: t.values for t in _trials(storage) if t.state == TrialState.COMPLETE}
    assert any(t.state == TrialState.RUNNING for t in _trials(storage))  # stuck, for now

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

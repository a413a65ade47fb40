"""`gen5nas dashboard WORK_DIR` serves a real search's study in the real optuna-dashboard: its
HTTP API shows the named objectives, every trial and each trial's arch summary and arch file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.search import fresh_checkpoint, write_search_manifest

from gen5nas.cli import main
from gen5nas.errors import SpecError
from gen5nas.search.dashboard import storage_url
from gen5nas.spec import load_arch

TRIALS = 3
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def _wait_for_api(proc: subprocess.Popen[bytes], port: int) -> Any:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"gen5nas dashboard exited with {proc.returncode}: {out}")
        try:
            return _get(port, "/api/studies")
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                pytest.fail(f"optuna-dashboard did not answer within {START_TIMEOUT_S}s")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory: pytest.TempPathFactory, digits: Path) -> Path:
    tmp = tmp_path_factory.mktemp("search")
    ckpt = fresh_checkpoint(tmp / "tiny.pth")
    manifest = write_search_manifest(
        tmp / "nassearch.yaml",
        dataset={"kind": "digits", "path": str(digits), "batchSize": 64, "numWorkers": 0},
        costKey="energy",
    )
    work = tmp / "work"
    argv = ["search", "-f", str(manifest), "--checkpoint", str(ckpt), "--work-dir", str(work)]
    assert main([*argv, "--max-trials", str(TRIALS)]) == 0
    return work


def test_dashboard_serves_the_search_study_with_named_objectives(search_dir: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gen5nas", "dashboard", str(search_dir), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        studies = _wait_for_api(proc, port)["study_summaries"]
        assert [s["study_name"] for s in studies] == ["t"]
        assert studies[0]["directions"] == ["maximize", "minimize"]
        detail = _get(port, f"/api/studies/{studies[0]['study_id']}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The accuracy name comes from the task (classification), the cost from spec.costKey.
    assert detail["objective_names"] == ["accuracy/top1", "energy_mj"]
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(complete) == TRIALS
    for trial in complete:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        arch_path = search_dir / attrs["fix_subnets"]
        assert attrs["fix_subnets"] == f"fix_subnets/trial_{trial['number']}.yaml"
        assert load_arch(arch_path).summary() == attrs["arch_summary"]
        assert [float(attrs["accuracy_top1"]), float(attrs["energy_mj"])] == trial["values"]


def test_storage_is_found_from_the_work_dir_or_refused_clearly(
    search_dir: Path, tmp_path: Path
) -> None:
    assert storage_url(search_dir) == f"sqlite:///{(search_dir / 'study.db').resolve()}"
    # A cluster search records its PostgreSQL URL with the password hidden.
    run = tmp_path / "20260101_000000"
    run.mkdir()
    (run / "resolved_config.yaml").write_text(
        "storage:\n  url: postgresql+psycopg2://nas:***@db:5432/nas\n"
    )
    with pytest.raises(SpecError, match="--storage"):
        storage_url(tmp_path)
    with pytest.raises(SpecError, match="no search study"):
        storage_url(tmp_path / "20260101_000000")
    assert main(["dashboard", str(tmp_path / "missing")]) == 2

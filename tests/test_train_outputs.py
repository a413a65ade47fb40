"""Work-dir outputs that a kill or a quick rerun must not break: metrics.jsonl, log folders."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

import gen5nas.logdir
from gen5nas.logdir import new_log_dir
from gen5nas.run_outputs import trim_metrics


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "metrics.jsonl"
    records = [{"type": "train", "epoch": 1, "iteration": i, "loss/max": 1.0} for i in (1, 2, 3)]
    whole = "".join(json.dumps(r) + "\n" for r in records)
    torn = json.dumps({"type": "train", "epoch": 1, "iteration": 4})[:17]  # killed mid-append
    path.write_text(whole + torn)

    with caplog.at_level(logging.WARNING, logger="gen5nas"):
        trim_metrics(path, iteration=2)
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:2]
    assert "1 unparseable line" in caplog.text
    assert not [p for p in tmp_path.iterdir() if p != path]  # atomic: no temp file left over

    trim_metrics(path, iteration=2)  # idempotent, and quiet once clean
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:2]


def test_log_folders_started_in_the_same_second_are_distinct(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(gen5nas.logdir, "datetime", Frozen)
    work = tmp_path / "work"
    made = [new_log_dir(work) for _ in range(3)]
    assert [p.name for p in made] == ["20240506_070809", "20240506_070809_1", "20240506_070809_2"]
    assert all(p.is_dir() and p.parent == work for p in made)

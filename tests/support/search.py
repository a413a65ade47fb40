"""Helpers shared by the search and pipeline tests (not a test module)."""

from __future__ import annotations

import csv
import pickle
import re
from pathlib import Path
from typing import Any

import optuna
import yaml

from gen5nas.search.evaluate import Outcome, TrialFailed
from gen5nas.search.pareto import non_dominated
from gen5nas.search.results import counted_trials
from gen5nas.spec import Arch, SearchSpace, load_arch, load_space


def fresh_checkpoint(
    path: Path,
    space_name: str = "mobilenetv2_tiny",
    num_classes: int = 10,
    seed: int = 0,
    task: str = "classification",
) -> Path:
    """A freshly initialised supernet of ``task`` saved through the training step's checkpoint
    API."""
    import torch

    from gen5nas.tasks.base import get_task
    from gen5nas.train.checkpoint import make_meta, save_checkpoint

    space = load_space(space_name)
    torch.manual_seed(seed)
    model = get_task(task).build_supernet(space, num_classes)
    meta = make_meta(space, num_classes, task=task)
    return save_checkpoint({"model": model.state_dict(), "meta": meta}, path)


def size_of(arch: Arch) -> float:
    """A deterministic proxy of a subnet's size (for cheap objectives)."""
    h, w = arch.resolution
    blocks = sum(
        s.num_blocks * s.num_out_channels * s.expand_ratio * s.kernel_size**2 for s in arch.stages
    )
    return float(h * w * (blocks + arch.first_num_out_channels + arch.last_num_out_channels))


def proxy_outcome(arch: Arch) -> Outcome:
    """Accuracy grows with size with diminishing returns; cost grows linearly: a real trade-off
    with a known shape, cheap enough for tests of the search machinery."""
    size = size_of(arch)
    accuracy = 100.0 * size / (size + 2.0e6)
    return Outcome(accuracy, size / 1.0e6, size / 4.0e5, {"calib_s": 0.0, "eval_s": 0.0})


class FailingFor:
    """An evaluate function that fails (TrialFailed) for the archs ``predicate`` selects."""

    def __init__(self, predicate: Any, reason: str = "bad subnet") -> None:
        self.predicate, self.reason = predicate, reason

    def __call__(self, arch: Arch) -> Outcome:
        if self.predicate(arch):
            raise TrialFailed(self.reason)
        return proxy_outcome(arch)


def write_search_manifest(path: Path, **spec: Any) -> Path:
    base: dict[str, Any] = {
        "dataset": {"kind": "digits", "batchSize": 64, "numWorkers": 0},
        "maxTrials": 6,
        "sampler": {"type": "nsga3", "populationSize": 4, "seed": 0},
        "evaluation": {"calibBatches": 2, "valBatches": 2},
    }
    base.update(spec)
    doc = {
        "apiVersion": "gen5nas.io/v1alpha1",
        "kind": "NASSearch",
        "metadata": {"name": "t"},
        "spec": base,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tiny_space() -> SearchSpace:
    return load_space("mobilenetv2_tiny")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def check_outputs(work_dir: Path, study: optuna.Study, cost_key: str) -> list[dict[str, str]]:
    """Every output exists and agrees with the others and with the study; returns the CSV."""
    rows = read_csv(work_dir / "subnets.csv")
    by_number = {t.number: t for t in study.trials}
    # Exactly the counted trials (no retried stale trial, no surplus), each once.
    numbers = [int(row["trial"]) for row in rows]
    assert len(numbers) == len(set(numbers)), f"a trial shown twice: {numbers}"
    assert set(numbers) == {t.number for t in counted_trials(study.trials)}
    # One row per trial shown, each matching the study.
    for row in rows:
        trial = by_number[int(row["trial"])]
        assert row["state"] == trial.state.name
        if trial.state.name == "COMPLETE":
            assert float(row["accuracy_top1"]) == trial.values[0]
            assert (
                float(row[f"{cost_key}_ms" if cost_key == "latency" else "energy_mj"])
                == trial.values[1]
            )
    # A duplicate repeats the arch of the COMPLETE trial it names; no arch is shown twice as
    # its own point.
    by_row = {row["trial"]: row for row in rows}
    arch_cols = [c for c in rows[0] if c == "resolution" or c.endswith("_channels") or "stage" in c]
    for row in rows:
        if row["duplicate_of"]:
            first = by_row[row["duplicate_of"]]
            assert first["state"] == "COMPLETE" and not first["duplicate_of"]
            assert [row[c] for c in arch_cols] == [first[c] for c in arch_cols]
    points = [row for row in rows if row["state"] == "COMPLETE" and not row["duplicate_of"]]
    shown = [tuple(row[c] for c in arch_cols) for row in points]
    assert len(shown) == len(set(shown)), "an arch shown twice"
    # The Pareto flag is the non-dominated set recomputed from the CSV's own numbers.
    cost_col = "latency_ms" if cost_key == "latency" else "energy_mj"
    candidates = [r for r in points if r["feasible"] == "True"]
    flags = non_dominated([(float(r["accuracy_top1"]), float(r[cost_col])) for r in candidates])
    assert [r["pareto"] == "True" for r in candidates] == flags
    assert all(r["pareto"] == "False" for r in rows if r not in candidates)
    assert any(flags)
    # fix_subnets/trial_N.yaml: readable by the export step, equal to the CSV's arch columns.
    for row in rows:
        if not row["arch_file"]:
            continue
        arch = load_arch(work_dir / row["arch_file"])
        assert f"{arch.resolution[0]}x{arch.resolution[1]}" == row["resolution"]
        assert arch.last_num_out_channels == int(row["last_num_out_channels"])
        for i, stage in enumerate(arch.stages):
            assert stage.num_blocks == int(row[f"stage{i}_num_blocks"])
            assert stage.kernel_size == int(row[f"stage{i}_kernel_size"])
            assert stage.expand_ratio == float(row[f"stage{i}_expand_ratio"])
            assert stage.num_out_channels == int(row[f"stage{i}_num_out_channels"])
    # study.pkl: loadable with no database, the same trials.
    copy = pickle.loads((work_dir / "study.pkl").read_bytes())
    assert [(t.number, t.state, t.values) for t in copy.trials] == [
        (t.number, t.state, t.values) for t in study.trials
    ]
    # pareto_front.html opens with no internet: plotly.js is inside, nothing fetched.
    html = (work_dir / "pareto_front.html").read_text()
    assert re.search(r"<script[^>]*\ssrc=", html) is None
    assert "plotly.js" in html and len(html) > 1_000_000  # the library itself, inlined
    for row in rows:
        if row["pareto"] == "True":  # hover labels (JSON-escaped inside the page)
            assert re.search(rf"trial {row['trial']}(<br>|\\u003cbr\\u003e)", html)
    assert (work_dir / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rows

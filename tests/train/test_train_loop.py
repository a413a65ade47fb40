"""The training loop on a tiny real run: gradient clipping at step time, unreadable images per epoch."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from support.train import tiny_spec
from torch.optim.optimizer import register_optimizer_step_pre_hook

from gen5nas.data import write_synthetic
from gen5nas.run_outputs import METRICS_FILE
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.job import run_supernet_training

CLIP = 1e-3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loop") / "data"
    return write_synthetic(root, num_classes=4, train_per_class=8, val_per_class=3)


@contextlib.contextmanager
def step_grad_norms() -> Iterator[list[float]]:
    """Total grad norm of every optimizer step's parameters, read just before the step runs."""
    norms: list[float] = []

    def record(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    handle = register_optimizer_step_pre_hook(record)
    try:
        yield norms
    finally:
        handle.remove()


def _train(data: Path, work_dir: Path, **overrides: Any) -> None:
    spec = SupernetTrainingSpec.model_validate(tiny_spec(data, **overrides))
    run_supernet_training(spec, work_dir, device="cpu")


def _epoch_records(work_dir: Path) -> list[dict[str, Any]]:
    lines = (work_dir / METRICS_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "epoch"]


@pytest.mark.parametrize("clip", [CLIP, None], ids=["clipped", "unclipped"])
def test_the_optimizer_steps_with_gradients_clipped_to_grad_clip_norm(
    data: Path, tmp_path: Path, clip: float | None
) -> None:
    schedule = {"epochs": 1, "maxItersPerEpoch": 2}
    with step_grad_norms() as norms:
        _train(data, tmp_path, optimizer={"gradClipNorm": clip}, schedule=schedule)
    assert len(norms) == 2  # one record per optimizer step, nothing else stepped
    if clip is not None:
        assert max(norms) <= CLIP * (1 + 1e-4)
        assert min(norms) > CLIP / 2  # clipped down to the bound, not vanishing gradients
    else:
        assert min(norms) > 10 * CLIP  # without the clip the same run's gradients exceed it


def test_unreadable_training_images_are_logged_and_counted_per_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = write_synthetic(tmp_path / "data", num_classes=4, train_per_class=8, val_per_class=3)
    (data / "train" / "class_001" / "00002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # 32 images, batch 8, no iteration cap: every training image is drawn once per epoch.
    schedule = {"epochs": 2, "maxItersPerEpoch": None, "valIntervalEpochs": 2}
    with caplog.at_level(logging.WARNING, logger="gen5nas"):
        _train(data, tmp_path / "work", schedule=schedule)
    assert [r["skipped_images"] for r in _epoch_records(tmp_path / "work")] == [1.0, 1.0]
    lines = [
        r.getMessage() for r in caplog.records if "training image(s) skipped" in r.getMessage()
    ]
    assert lines == [
        "epoch 1: 1 unreadable training image(s) skipped",
        "epoch 2: 1 unreadable training image(s) skipped",
    ]

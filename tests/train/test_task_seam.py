"""The Task seam: a task registered through it is what the steps train and evaluate with.

A custom task is registered under the spec value ``detection`` (in place of the built-in
one, for the test): supernet training then runs its losses, ranks checkpoints by its own metric and
writes its metric names, and the search's evaluator scores subnets with it. Nothing in the
steps branches on the task's name, or this task would be refused or scored as classification.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from support.train import tiny_spec
from torch import Tensor, nn

from gen5nas.data import Batch
from gen5nas.errors import SpecError
from gen5nas.run_outputs import METRICS_FILE
from gen5nas.spec import load_space
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.tasks import base
from gen5nas.tasks.base import Metric, Task, get_task
from gen5nas.tasks.classification import Classification, evaluate_classifier
from gen5nas.train.checkpoint import read_checkpoint
from gen5nas.train.job import run_supernet_training


class ToyTask(Classification):
    """Classification's data and head, with its own losses (counted) and metric."""

    name = "detection"
    metric = Metric("toy_score", "toy/score", "toy score", "score", "points")
    extra_metrics: Sequence[str] = ("toy_loss",)

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"ground_truth": 0, "distillation": 0, "evaluate": 0}

    def ground_truth_loss(self, output: Any, batch: Batch, label_smoothing: float) -> Tensor:
        self.calls["ground_truth"] += 1
        return super().ground_truth_loss(output, batch, label_smoothing)

    def distillation_loss(self, student: Any, teacher: Any, temperature: float) -> Tensor:
        self.calls["distillation"] += 1
        return (student.float() - teacher.float()).pow(2).mean()

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[Batch],
        device: torch.device,
        channels_last: bool = False,
    ) -> dict[str, float]:
        self.calls["evaluate"] += 1
        m = evaluate_classifier(model, loader, device, channels_last)
        return {
            "toy_score": -m["loss"],
            "toy_loss": m["loss"],
            "images": m["images"],
            "skipped": m["skipped"],
        }


@pytest.fixture()
def toy(monkeypatch: pytest.MonkeyPatch) -> ToyTask:
    task = ToyTask()
    assert isinstance(task, Task)  # the protocol, structurally
    get_task("classification")  # the built-in tasks are registered before the patch
    monkeypatch.setitem(base._TASKS, task.name, task)
    return task


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the first training writes a small scenes tree (a detection spec needs a dataset
    with boxes; the toy task reads its ImageFolder side)."""
    return tmp_path_factory.mktemp("seam") / "scenes"


def detection_spec(data: Path, **overrides: Any) -> dict[str, Any]:
    scenes = {"kind": "scenes", "numClasses": 3, "scenes": {"trainImages": 24, "valImages": 9}}
    return {**tiny_spec(data, dataset=scenes, **overrides), "task": "detection"}


def test_a_task_that_is_not_implemented_is_refused_naming_the_ones_that_are(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SpecError) as info:
        get_task("segmentation")
    assert info.value.field == "task"
    message = "task 'segmentation' is not implemented; available: classification, detection"
    assert message in str(info.value)
    monkeypatch.delitem(base._TASKS, "detection")  # a spec value no registered task serves
    spec = SupernetTrainingSpec.model_validate(detection_spec(data))
    with pytest.raises(SpecError, match="task 'detection' is not implemented") as info:
        run_supernet_training(spec, tmp_path, device="cpu")
    assert info.value.field == "task"
    assert not list(tmp_path.glob("*.pth"))


def test_supernet_training_uses_the_registered_tasks_losses_and_metric(
    toy: ToyTask, data: Path, tmp_path: Path
) -> None:
    spec = SupernetTrainingSpec.model_validate(
        detection_spec(data, schedule={"epochs": 2, "maxItersPerEpoch": 2})
    )
    result = run_supernet_training(spec, tmp_path, device="cpu")
    steps = result.iterations
    assert steps == 4
    num_random = spec.schedule.num_random_subnets
    assert toy.calls["ground_truth"] == steps  # the max subnet, on the ground truth
    assert toy.calls["distillation"] == steps * (1 + num_random)  # min + random, distilled
    assert toy.calls["evaluate"] == 2 * 2  # min and max subnet, after each epoch

    val = [
        json.loads(line)
        for line in (tmp_path / METRICS_FILE).read_text().splitlines()
        if json.loads(line)["type"] == "val"
    ]
    assert val and all("max/toy_score" in r and "min/toy_loss" in r for r in val)
    assert not any(k.endswith("accuracy_top1") for r in val for k in r)
    best = max(val, key=lambda r: r["max/toy_score"])
    assert result.best_score == best["max/toy_score"] and result.best_epoch == best["epoch"]
    assert result.best_checkpoint is not None  # named by the task's metric key
    assert result.best_checkpoint.name == f"best_max_subnet.toy_score_epoch_{best['epoch']}.pth"
    assert result.last_checkpoint is not None
    assert read_checkpoint(result.last_checkpoint)["meta"]["task"] == "detection"


def test_the_search_evaluator_scores_with_the_checkpoints_task(toy: ToyTask) -> None:
    from gen5nas.search.evaluate import Evaluator

    space = load_space("mobilenetv2_tiny")
    torch.manual_seed(0)
    h, w = space.max_resolution()
    batches = [Batch(torch.randn(4, 3, h, w), torch.tensor([0, 1, 2, 0]), 0)]
    supernet = toy.build_supernet(space, 3).eval()
    evaluator = Evaluator(supernet, batches, batches, lambda a: (1.0, 2.0), task=toy)
    try:
        outcome = evaluator.evaluate(space.min())
    finally:
        evaluator.close()
    assert toy.calls["evaluate"] == 1
    assert outcome.accuracy == -outcome.extra["toy_loss"] and set(outcome.extra) == {"toy_loss"}

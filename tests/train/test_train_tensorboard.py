"""Supernet training writes its scalars as TensorBoard events in ``<work dir>/tensorboard``, read
back here with TensorBoard's own reader; a resumed run appends without repeating steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.train import tiny_spec
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gen5nas.data import write_synthetic
from gen5nas.run_outputs import METRICS_FILE, TENSORBOARD_DIR
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.job import run_supernet_training

EPOCHS, ITERS = 2, 3


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tb") / "data"
    return write_synthetic(root, num_classes=4, train_per_class=8, val_per_class=3)


def _scalars(work_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(work_dir / TENSORBOARD_DIR))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _interrupt_at(iteration: int):
    def hook(ctx, out) -> None:
        if ctx.iteration == iteration:
            raise KeyboardInterrupt(f"simulated kill after iteration {iteration}")

    return hook


def _spec(data: Path) -> SupernetTrainingSpec:
    return SupernetTrainingSpec.model_validate(
        tiny_spec(data, schedule={"epochs": EPOCHS, "maxItersPerEpoch": ITERS})
    )


def _check(scalars: dict[str, list[tuple[int, float]]]) -> None:
    for tag in ("train/loss/max", "train/loss/min", "train/lr", "train/images_per_s"):
        steps = [s for s, _ in scalars[tag]]
        assert steps == list(range(1, EPOCHS * ITERS + 1)), tag  # every iteration, once
    for tag in ("val/max/accuracy_top1", "val/min/accuracy_top1", "epoch/images_per_s"):
        steps = [s for s, _ in scalars[tag]]
        assert steps == [ITERS * (e + 1) for e in range(EPOCHS)], tag  # every epoch, once
    assert all(0.0 <= v <= 100.0 for _, v in scalars["val/max/accuracy_top1"])
    assert all(v > 0 for _, v in scalars["train/images_per_s"])
    lrs = [v for _, v in scalars["train/lr"]]
    assert lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # warmup, then the decay


def _jsonl_lrs(work_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (work_dir / METRICS_FILE).read_text().splitlines()]
    return [(r["iteration"], r["lr"]) for r in records if r["type"] == "train"]


def test_training_writes_each_pass_lr_top1_and_throughput(data: Path, tmp_path: Path) -> None:
    run_supernet_training(_spec(data), tmp_path, device="cpu")
    scalars = _scalars(tmp_path)
    _check(scalars)
    assert [(s, pytest.approx(v)) for s, v in scalars["train/lr"]] == _jsonl_lrs(tmp_path)
    # The sandwich's passes each have their loss (max, min and the random middle ones).
    assert len([t for t in scalars if t.startswith("train/loss/")]) >= 3


def test_a_resumed_run_appends_without_repeating_steps(data: Path, tmp_path: Path) -> None:
    spec = _spec(data)
    with pytest.raises(KeyboardInterrupt):  # in epoch 2, past the epoch-1 checkpoint
        run_supernet_training(spec, tmp_path, hooks=(_interrupt_at(ITERS + 2),), device="cpu")
    assert _scalars(tmp_path)["train/lr"][-1][0] == ITERS + 2  # written, then redone below
    run_supernet_training(spec, tmp_path, device="cpu")
    assert len(list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 2
    _check(_scalars(tmp_path))


def test_retraining_writes_its_loss_lr_and_top1(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    from support.export import export_spec, tiny_space

    from gen5nas.export.retrain import RETRAIN_DIR, run_retrain

    retrain = {"enabled": True, "epochs": 2, "maxItersPerEpoch": 2, "lr": 0.05, "warmupEpochs": 0}
    arch = tiny_space().min().to_yaml_dict()
    spec = export_spec(checkpoint, digits, arch=arch, retrain=retrain)
    run_retrain(spec, tmp_path, device="cpu")
    scalars = _scalars(tmp_path / RETRAIN_DIR)
    assert [s for s, _ in scalars["val/accuracy_top1"]] == [2, 4]
    steps = [s for s, _ in scalars["train/lr"]]  # every logIntervalIters and epoch end
    assert steps == sorted(set(steps)) and steps[-1] == 4
    assert any(t.startswith("train/loss/") for t in scalars)
    assert [s for s, _ in scalars["epoch/images_per_s"]] == [2, 4]

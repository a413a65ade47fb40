"""Interrupt a tiny training run and resume it: the result equals an uninterrupted run, bitwise.

Why bitwise equality holds on CPU: data order comes from (seed, epoch), augmentation from a
per-sample seed, the sandwich's random archs from (seed, epoch, iteration), and the checkpoint
restores model, optimizer, LR schedule, per-rank RNG states (dropout) and the best score.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from support.detection import DET_SPACE, scenes_dataset
from support.threads import one_thread
from support.train import cli_env, gen5nas_cmd, tiny_spec, write_manifest

from gen5nas.data import write_synthetic
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.checkpoint import BEST_PREFIX, last_checkpoint, read_checkpoint
from gen5nas.train.checkpoint_store import CheckpointStore
from gen5nas.train.job import run_supernet_training
from gen5nas.train.trainer import TrainResult


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "data"
    return write_synthetic(root, num_classes=4, train_per_class=8, val_per_class=3)


def _spec(data: Path, **overrides) -> SupernetTrainingSpec:
    return SupernetTrainingSpec.model_validate(tiny_spec(data, deterministic=False, **overrides))


def _interrupt_at(iteration: int):
    def hook(ctx, out) -> None:
        if ctx.iteration == iteration:
            raise KeyboardInterrupt(f"simulated kill after iteration {iteration}")

    return hook


def _assert_same_final_state(a: Path, b: Path) -> None:
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    for name, value in sa["model"].items():
        assert torch.equal(value, sb["model"][name]), name
    for key, value in sa["optimizer"]["state"].items():
        assert torch.equal(
            value["momentum_buffer"], sb["optimizer"]["state"][key]["momentum_buffer"]
        )
    assert sa["scheduler"]["last_epoch"] == sb["scheduler"]["last_epoch"]
    assert (sa["epoch"], sa["iteration"], sa["best"]) == (sb["epoch"], sb["iteration"], sb["best"])
    assert sa["metrics"] == sb["metrics"]


def _val_records(work_dir: Path) -> list[dict]:
    lines = (work_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "val"]


@pytest.fixture(scope="module")
def uninterrupted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    # the resumed runs compare bitwise against this one, at the same (one) thread as theirs
    with one_thread():
        return run_supernet_training(_spec(data), tmp_path_factory.mktemp("a"), device="cpu")


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(
    data: Path, uninterrupted: TrainResult, tmp_path: Path
) -> None:
    spec = _spec(data)
    with pytest.raises(KeyboardInterrupt):  # in epoch 2 (iterations 3..5)
        run_supernet_training(spec, tmp_path, hooks=(_interrupt_at(4),), device="cpu")
    assert last_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    resumed = run_supernet_training(spec, tmp_path, device="cpu")
    assert resumed.epochs_completed == 3 and resumed.iterations == 9
    assert uninterrupted.last_checkpoint is not None and resumed.last_checkpoint is not None
    _assert_same_final_state(uninterrupted.last_checkpoint, resumed.last_checkpoint)
    assert _val_records(tmp_path) == _val_records(uninterrupted.last_checkpoint.parent)
    assert resumed.best_checkpoint is not None and resumed.best_checkpoint.exists()
    assert resumed.best_checkpoint.name.startswith("best_max_subnet.accuracy_top1_epoch_")


def test_resume_from_a_mid_epoch_checkpoint_matches_too(
    data: Path, uninterrupted: TrainResult, tmp_path: Path
) -> None:
    spec = _spec(data, checkpoint={"intervalIters": 2})
    with pytest.raises(KeyboardInterrupt):
        run_supernet_training(spec, tmp_path, hooks=(_interrupt_at(5),), device="cpu")
    pointed = last_checkpoint(tmp_path)
    assert pointed == tmp_path / "iter_4.pth"  # epoch 2, one step in
    assert read_checkpoint(pointed)["iter_in_epoch"] == 1
    resumed = run_supernet_training(spec, tmp_path, device="cpu")
    assert uninterrupted.last_checkpoint is not None and resumed.last_checkpoint is not None
    _assert_same_final_state(uninterrupted.last_checkpoint, resumed.last_checkpoint)
    assert not list(tmp_path.glob("iter_*.pth"))  # superseded by the epoch checkpoints


def test_a_kill_while_linking_the_best_file_leaves_the_pointer_behind(
    data: Path, uninterrupted: TrainResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(data)

    def killed(self: CheckpointStore, source: Path, epoch: int) -> Path:
        raise KeyboardInterrupt(f"killed while linking the best file of epoch {epoch}")

    monkeypatch.setattr(CheckpointStore, "link_best", killed)
    with pytest.raises(KeyboardInterrupt, match="epoch 1"):
        run_supernet_training(spec, tmp_path, device="cpu")
    monkeypatch.undo()
    # epoch_1.pth (whose best is epoch 1) is written, but nothing points at it yet.
    assert (tmp_path / "epoch_1.pth").exists() and last_checkpoint(tmp_path) is None

    resumed = run_supernet_training(spec, tmp_path, device="cpu")
    assert uninterrupted.best_checkpoint is not None and resumed.best_checkpoint is not None
    assert resumed.best_checkpoint.name == uninterrupted.best_checkpoint.name
    assert resumed.best_checkpoint.exists()
    assert resumed.last_checkpoint is not None and uninterrupted.last_checkpoint is not None
    _assert_same_final_state(uninterrupted.last_checkpoint, resumed.last_checkpoint)


def test_a_checkpoint_whose_best_file_was_lost_gets_it_relinked_on_resume(
    data: Path, uninterrupted: TrainResult, tmp_path: Path
) -> None:
    """Older versions linked the best file after moving the pointer: a kill in between left a
    checkpoint naming a best epoch with no best file, which no later run recreated."""
    spec = _spec(data)
    with pytest.raises(KeyboardInterrupt):
        run_supernet_training(spec, tmp_path, hooks=(_interrupt_at(4),), device="cpu")
    pointed = last_checkpoint(tmp_path)
    assert pointed is not None
    best_epoch = read_checkpoint(pointed)["best"]["epoch"]
    best = tmp_path / f"{BEST_PREFIX}{best_epoch}.pth"
    best.unlink()  # the state that kill left

    relinked: list[bool] = []

    def check(ctx, out) -> None:  # first step of the resumed run: the repair ran before it
        if not relinked:
            relinked.append(best.exists() and best.samefile(tmp_path / f"epoch_{best_epoch}.pth"))

    resumed = run_supernet_training(spec, tmp_path, hooks=(check,), device="cpu")
    assert relinked == [True]
    assert uninterrupted.best_checkpoint is not None and resumed.best_checkpoint is not None
    assert resumed.best_checkpoint.name == uninterrupted.best_checkpoint.name
    assert resumed.best_checkpoint.exists()
    assert sorted(p.name for p in tmp_path.glob(f"{BEST_PREFIX}*")) == [
        uninterrupted.best_checkpoint.name
    ]


def test_a_finished_run_reruns_as_a_no_op(data: Path, uninterrupted: TrainResult) -> None:
    assert uninterrupted.last_checkpoint is not None
    work = uninterrupted.last_checkpoint.parent
    before = uninterrupted.last_checkpoint.stat().st_mtime_ns
    again = run_supernet_training(_spec(data), work, device="cpu")
    assert again.iterations == 9 and again.best_score == uninterrupted.best_score
    assert uninterrupted.last_checkpoint.stat().st_mtime_ns == before


@pytest.mark.slow  # three CLI processes, each importing torch
def test_sigkill_at_any_moment_then_rerun_the_same_command(data: Path, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "train.yaml", tiny_spec(data, deterministic=True))
    ref, work = tmp_path / "ref", tmp_path / "killed"
    cmd = gen5nas_cmd("train", "-f", str(manifest), "--device", "cpu")
    subprocess.run([*cmd, "--work-dir", str(ref)], check=True, env=cli_env(), capture_output=True)

    proc = subprocess.Popen(
        [*cmd, "--work-dir", str(work)],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (work / "last_checkpoint").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = last_checkpoint(work)
    assert killed_at is not None and killed_at.name != "epoch_3.pth", "killed too late to test"
    read_checkpoint(killed_at)  # whatever the pointer names is complete

    rerun = subprocess.run(
        [*cmd, "--work-dir", str(work)], env=cli_env(), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" in rerun.stderr
    _assert_same_final_state(ref / "epoch_3.pth", work / "epoch_3.pth")
    assert (work / "train.yaml").exists()  # the config copy, as the seed keeps it


def test_a_detection_run_resumes_mid_epoch_to_the_same_state(tmp_path: Path) -> None:
    """The detection task's own state resumes too: its loader's place in the epoch (boxes
    travel with the images), the FCOS losses' optimizer state and the bbox-mAP best score."""
    spec = SupernetTrainingSpec.model_validate(
        tiny_spec(
            tmp_path / "scenes",
            task="detection",
            searchSpace={"name": DET_SPACE},
            dataset=scenes_dataset(tmp_path / "scenes", batch=4),
            schedule={"epochs": 2, "numRandomSubnets": 1},
            checkpoint={"intervalIters": 4},
        )
    )
    whole = run_supernet_training(spec, tmp_path / "whole", device="cpu")
    work = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_supernet_training(spec, work, hooks=(_interrupt_at(5),), device="cpu")
    assert last_checkpoint(work) == work / "iter_4.pth"  # epoch 2 (iterations 4..6), one step in
    resumed = run_supernet_training(spec, work, device="cpu")
    assert resumed.iterations == whole.iterations == 6
    assert whole.last_checkpoint is not None and resumed.last_checkpoint is not None
    _assert_same_final_state(whole.last_checkpoint, resumed.last_checkpoint)
    assert _val_records(work) == _val_records(tmp_path / "whole")
    assert resumed.best_checkpoint is not None
    assert resumed.best_checkpoint.name.startswith("best_max_subnet.bbox_mAP_epoch_")

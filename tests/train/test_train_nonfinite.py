"""A training whose loss or weights become NaN/inf stops with an error naming the epoch and
iteration, never writes a checkpoint with non-finite weights, and a rerun resumes from the last
good checkpoint. The faults are injected where they arise in a real divergence: the loss
(cross entropy) and the optimizer's update."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from support.train import tiny_spec

from gen5nas.data import write_synthetic
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.checkpoint import last_checkpoint, read_checkpoint
from gen5nas.train.finite import NonFiniteError, assert_finite_state, check_finite_step
from gen5nas.train.job import run_supernet_training

# tiny_spec: 3 epochs of 3 iterations; iteration 5 is the second of epoch 2.
BAD_ITERATION = 5


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nonfinite") / "data"
    return write_synthetic(root, num_classes=4, train_per_class=8, val_per_class=3)


def _spec(data: Path, **overrides: Any) -> SupernetTrainingSpec:
    return SupernetTrainingSpec.model_validate(tiny_spec(data, deterministic=False, **overrides))


def _all_checkpoints_finite(work_dir: Path) -> list[Path]:
    files = sorted(work_dir.glob("*.pth"))
    for path in files:
        state = read_checkpoint(path)
        for name, value in state["model"].items():
            if value.is_floating_point():
                assert torch.isfinite(value).all(), f"{path.name}: {name}"
    return files


def _nan_loss_at(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The max subnet's cross entropy (one call per training iteration) turns NaN at ``step``."""
    calls = {"n": 0}
    real = F.cross_entropy

    def cross_entropy(*args: Any, **kwargs: Any) -> torch.Tensor:
        loss = real(*args, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == step:
                return loss * math.nan
        return loss

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)


def test_a_nan_loss_stops_the_run_and_the_rerun_resumes(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(data)
    with monkeypatch.context() as patch:
        _nan_loss_at(patch, BAD_ITERATION)
        with pytest.raises(NonFiniteError) as info:
            run_supernet_training(spec, tmp_path, device="cpu")
    message = str(info.value)
    assert f"epoch 2, iteration {BAD_ITERATION}" in message and "nan" in message.lower()
    assert "optimizer.lr" in message  # what to change
    assert last_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    assert _all_checkpoints_finite(tmp_path)
    resumed = run_supernet_training(spec, tmp_path, device="cpu")
    assert resumed.epochs_completed == 3 and resumed.iterations == 9
    _all_checkpoints_finite(tmp_path)


def test_non_finite_weights_are_never_checkpointed(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The update of iteration 4 makes one weight infinite after that step's (finite) loss;
    # the iteration checkpoint due right then must refuse to write it.
    spec = _spec(data, checkpoint={"intervalIters": 4})
    steps = {"n": 0}
    real_step = torch.optim.SGD.step

    def poisoned_step(self: torch.optim.SGD, *args: Any, **kwargs: Any) -> Any:
        out = real_step(self, *args, **kwargs)
        steps["n"] += 1
        if steps["n"] == 4:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(math.inf)
        return out

    with monkeypatch.context() as patch:
        patch.setattr(torch.optim.SGD, "step", poisoned_step)
        with pytest.raises(NonFiniteError) as info:
            run_supernet_training(spec, tmp_path, device="cpu")
    assert "refusing to write a checkpoint with non-finite weights" in str(info.value)
    assert "iteration 4" in str(info.value)
    assert not (tmp_path / "iter_4.pth").exists()
    assert last_checkpoint(tmp_path) == tmp_path / "epoch_1.pth"
    assert _all_checkpoints_finite(tmp_path)
    resumed = run_supernet_training(spec, tmp_path, device="cpu")
    assert resumed.iterations == 9


def test_the_checks_name_what_is_not_finite() -> None:
    check_finite_step({"max": torch.tensor(1.0), "min": torch.tensor(2.0)}, 1, 1)
    with pytest.raises(NonFiniteError, match=r"epoch 3, iteration 17 \(\{'min': inf\}\)"):
        check_finite_step({"max": torch.tensor(1.0), "min": torch.tensor(math.inf)}, 3, 17)
    state = {"model": {"w": torch.zeros(2), "b": torch.tensor([math.nan])}, "epoch": 2}
    with pytest.raises(NonFiniteError, match=r"epoch 2, iteration \?.*\(b\)"):
        assert_finite_state(state)
    assert_finite_state({"model": {"steps": torch.tensor([2**40])}})  # integers are fine

"""Two CPU processes (gloo) train the supernet together: same archs, identical parameters."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_helpers import tiny_spec

from gen5nas.data import write_synthetic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from gen5nas.spec.training import SupernetTrainingSpec
    from gen5nas.train.distributed import shutdown
    from gen5nas.train.job import run_supernet_training

    spec = SupernetTrainingSpec.model_validate(
        tiny_spec(Path(data), schedule={"epochs": 1, "maxItersPerEpoch": 3}, deterministic=False)
    )
    archs: list[list[str]] = []
    result = run_supernet_training(
        spec,
        Path(out) / "work",
        hooks=(lambda ctx, step_out: archs.append([a.key() for a in step_out.archs]),),
        device="cpu",
    )
    assert result.model is not None
    torch.save(result.model.state_dict(), Path(out) / f"rank{rank}.pt")
    (Path(out) / f"rank{rank}.json").write_text(
        json.dumps({"archs": archs, "metrics": result.metrics, "iterations": result.iterations})
    )
    shutdown()


@pytest.mark.slow  # two processes importing torch on 2 shared cores: ~1 min
@pytest.mark.timeout(300)
def test_two_gloo_processes_stay_in_lockstep(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", num_classes=4, train_per_class=16, val_per_class=4)
    mp.spawn(_worker, args=(2, _free_port(), str(data), str(tmp_path)), nprocs=2, join=True)

    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0]["iterations"] == records[1]["iterations"] == 3
    assert records[0]["archs"] == records[1]["archs"]
    assert len(records[0]["archs"]) == 3 and all(len(step) == 4 for step in records[0]["archs"])
    # Validation metrics are all-reduced: both ranks report the same numbers over all 16 images.
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[0]["metrics"]["max/images"] == 16

    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    initial = torch.load(tmp_path / "work" / "epoch_1.pth", weights_only=True)["model"]
    changed = 0
    for name, value in states[0].items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(value, states[1][name]), f"{name} differs between ranks"
        assert torch.equal(value, initial[name])  # the checkpoint holds the trained weights
        changed += 1
    assert changed > 0
    # BN calibration statistics are all-reduced too: identical running stats on both ranks.
    for name, value in states[0].items():
        if name.endswith("running_mean"):
            assert torch.allclose(value, states[1][name]), name

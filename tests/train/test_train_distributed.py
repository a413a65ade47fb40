"""Two CPU processes (gloo) train the supernet together: same archs, identical parameters;
a work dir the two do not share is refused on both."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from support.train import tiny_spec

from gen5nas.data import write_synthetic
from gen5nas.spec import load_space
from gen5nas.supernet import Supernet

SEED = 3  # tiny_spec's
# Three SGD steps at lr <= 0.05 with gradients clipped to norm 1 (Nesterov momentum 0.9) move
# the weights by < 0.5 in L2; a differently seeded init is ~89 away.
DISTANCE_BOUND = 1.0


def _worker(rank: int, world: int, data: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    import torch.distributed as dist

    from gen5nas.errors import CheckpointError
    from gen5nas.spec.training import SupernetTrainingSpec
    from gen5nas.train.distributed import shutdown
    from gen5nas.train.job import run_supernet_training

    # A file rendezvous: no port to probe (a probed free port can be taken before init binds
    # it); env_from_torchrun reuses the initialised group.
    dist.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world
    )
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
    # Rerun with work dirs that are not shared: rank 1 finds no checkpoint, rank 0 finds the
    # finished one. Every rank must refuse (none may wait forever on the others).
    own = Path(out) / ("work" if rank == 0 else f"work_rank{rank}")
    try:
        run_supernet_training(spec, own, device="cpu")
    except CheckpointError as exc:
        (Path(out) / f"rank{rank}.refused").write_text(str(exc))
    shutdown()


@pytest.mark.slow  # two processes importing torch on 2 shared cores: ~1 min
@pytest.mark.timeout(300)
def test_two_gloo_processes_stay_in_lockstep(tmp_path: Path) -> None:
    data = write_synthetic(tmp_path / "data", num_classes=4, train_per_class=16, val_per_class=4)
    mp.spawn(_worker, args=(2, str(data), str(tmp_path)), nprocs=2, join=True)

    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert records[0]["iterations"] == records[1]["iterations"] == 3
    assert records[0]["archs"] == records[1]["archs"]
    assert len(records[0]["archs"]) == 3 and all(len(step) == 4 for step in records[0]["archs"])
    # Validation metrics are all-reduced: both ranks report the same numbers over all 16 images.
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[0]["metrics"]["max/images"] == 16

    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    saved = torch.load(tmp_path / "work" / "epoch_1.pth", weights_only=True)["model"]
    torch.manual_seed(SEED)  # what run_supernet_training does before building the supernet
    initial = Supernet(load_space("mobilenetv2_tiny"), num_classes=4).state_dict()
    changed, distance = 0, 0.0
    for name, value in states[0].items():
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue
        assert torch.equal(value, states[1][name]), f"{name} differs between ranks"
        assert torch.equal(value, saved[name])  # the checkpoint holds the trained weights
        changed += not torch.equal(value, initial[name])
        distance += float((value - initial[name]).pow(2).sum())
    assert changed > 0  # training moved the weights
    # ... by three clipped SGD steps' worth: the seeded supernet is the start (another init
    # would be off by the init's own scale).
    assert distance**0.5 < DISTANCE_BOUND
    # BN calibration statistics are all-reduced too: identical running stats on both ranks.
    for name, value in states[0].items():
        if name.endswith("running_mean"):
            assert torch.allclose(value, states[1][name]), name

    for r in range(2):  # both refused, naming what each rank found
        refused = (tmp_path / f"rank{r}.refused").read_text()
        assert "rank 0: epoch 1, iteration 3; rank 1: no checkpoint" in refused
        assert "filesystem every node shares" in refused

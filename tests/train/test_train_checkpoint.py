"""Checkpoints: atomic writes, the pointer, corrupt files, space mismatches, load_supernet."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from gen5nas.errors import CheckpointError
from gen5nas.spec import load_space
from gen5nas.spec.space import SearchSpace
from gen5nas.supernet import Supernet
from gen5nas.train import checkpoint as ckpt


def _state(value: float) -> dict:
    return {"model": {"w": torch.full((4,), value)}, "epoch": int(value)}


def test_a_crash_while_saving_leaves_the_previous_checkpoint_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ckpt.save_checkpoint(_state(1), tmp_path / "epoch_1.pth")
    ckpt.write_pointer(tmp_path, first)

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):  # write half a file, then die
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(_state(2), tmp_path / "epoch_1.pth")  # overwrite attempt
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(_state(2), tmp_path / "epoch_2.pth")
    monkeypatch.undo()

    assert ckpt.last_checkpoint(tmp_path) == first
    assert ckpt.read_checkpoint(first)["epoch"] == 1
    assert not (tmp_path / "epoch_2.pth").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", "last_checkpoint"]


def test_truncated_and_foreign_files_are_refused(tmp_path: Path) -> None:
    good = ckpt.save_checkpoint(_state(1), tmp_path / "good.pth")
    data = good.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        ckpt.read_checkpoint(tmp_path / "cut.pth")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a gen5nas checkpoint"):
        ckpt.read_checkpoint(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.read_checkpoint(tmp_path / "missing.pth")


def test_a_dangling_pointer_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "last_checkpoint").write_text("epoch_9.pth\n")
    with pytest.raises(CheckpointError, match=r"epoch_9\.pth"):
        ckpt.last_checkpoint(tmp_path)
    assert ckpt.last_checkpoint(tmp_path / "empty") is None


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = ckpt.rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    path = ckpt.save_checkpoint({"rng": [saved]}, tmp_path / "rng.pth")
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    ckpt.set_rng_state(ckpt.read_checkpoint(path)["rng"][0])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _other_space() -> SearchSpace:
    data = load_space("mobilenetv2_tiny").model_dump(mode="json")
    data["arch_setting"]["num_out_channels"][3] = [16, 48, 16]
    return SearchSpace.model_validate(data)


def test_a_checkpoint_of_another_space_is_refused_naming_the_first_mismatch() -> None:
    space = load_space("mobilenetv2_tiny")
    meta = ckpt.make_meta(space, 10)
    ckpt.check_same_space(meta, space)  # same space: fine
    with pytest.raises(CheckpointError) as err:
        ckpt.check_same_space(meta, _other_space())
    message = str(err.value)
    assert "arch_setting.num_out_channels[3][1]" in message
    assert "checkpoint has 32" in message and "the spec has 48" in message


def test_load_supernet_restores_weights_and_meta(tmp_path: Path) -> None:
    space = load_space("mobilenetv2_tiny")
    torch.manual_seed(0)
    net = Supernet(space, num_classes=5, activation="hswish", dropout=0.3)
    meta = ckpt.make_meta(space, 5, classes=list("abcde"), activation="hswish", dropout=0.3)
    path = ckpt.save_checkpoint({"model": net.state_dict(), "meta": meta}, tmp_path / "e.pth")
    ckpt.write_pointer(tmp_path, path)

    loaded, loaded_meta = ckpt.load_supernet(tmp_path, space)  # a work dir: follows the pointer
    assert loaded_meta["classes"] == list("abcde") and loaded_meta["num_classes"] == 5
    assert not loaded.training
    for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), loaded(x))
    with pytest.raises(CheckpointError, match="different search space"):
        ckpt.load_supernet(path, _other_space())


def test_a_work_dir_means_its_best_max_subnet_for_search_and_export(tmp_path: Path) -> None:
    """Search and export both read a training work dir through one rule: the newest
    best_max_subnet file (what the seed searches), not the last epoch the pointer names."""
    space = load_space("mobilenetv2_tiny")
    meta = ckpt.make_meta(space, 3, classes=list("abc"))
    nets = []
    for epoch in (1, 2, 3):
        torch.manual_seed(epoch)
        nets.append(Supernet(space, num_classes=3))
        path = ckpt.save_checkpoint(
            {"model": nets[-1].state_dict(), "meta": meta}, tmp_path / f"epoch_{epoch}.pth"
        )
        ckpt.write_pointer(tmp_path, path)
        if epoch in (1, 2):  # epoch 2 was the best; epoch 3 is the last
            best = tmp_path / f"{ckpt.BEST_PREFIX}{epoch}.pth"
            best.write_bytes(path.read_bytes())
    chosen = ckpt.supernet_checkpoint(tmp_path)
    assert chosen.name == f"{ckpt.BEST_PREFIX}2.pth"
    loaded, _ = ckpt.load_supernet(tmp_path)
    for a, b in zip(nets[1].state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for best in tmp_path.glob(f"{ckpt.BEST_PREFIX}*"):
        best.unlink()
    assert ckpt.supernet_checkpoint(tmp_path).name == "epoch_3.pth"  # no best: the pointer
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.supernet_checkpoint(tmp_path / "missing")


def test_best_files_are_read_under_any_metric_key_an_older_name_too(tmp_path: Path) -> None:
    """A detection run names its best files by bbox_mAP; one of an earlier version named them
    accuracy_top1: search and export read either, and a resumed run takes the old file over."""
    from gen5nas.train.checkpoint_store import CheckpointStore

    old = ckpt.save_checkpoint(_state(2), tmp_path / f"{ckpt.BEST_PREFIX}2.pth")
    assert ckpt.supernet_checkpoint(tmp_path) == old  # the earlier version's name
    prefix = ckpt.best_prefix("bbox_mAP")
    assert prefix == "best_max_subnet.bbox_mAP_epoch_"
    store = CheckpointStore(tmp_path, keep_last=1, best_prefix=prefix)
    store.repair_best(2)  # its epoch file is gone: re-linked from the old name, then dropped
    assert [p.name for p in ckpt.best_files(tmp_path)] == [f"{prefix}2.pth"]
    assert ckpt.read_checkpoint(tmp_path / f"{prefix}2.pth")["epoch"] == 2
    newer = ckpt.save_checkpoint(_state(3), tmp_path / f"{prefix}3.pth")
    ckpt.save_checkpoint(_state(1), tmp_path / f"{ckpt.BEST_PREFIX}1.pth")
    assert ckpt.supernet_checkpoint(tmp_path) == newer  # the newest epoch, whatever its name
    # retraining's best files are not the supernet's
    ckpt.save_checkpoint(
        _state(9), tmp_path / f"{ckpt.best_prefix('bbox_mAP', 'best_subnet')}9.pth"
    )
    assert ckpt.supernet_checkpoint(tmp_path) == newer


def test_ranks_that_found_different_resume_points_are_refused(tmp_path: Path) -> None:
    ckpt.check_resume_points([(2, 30), (2, 30)], tmp_path)  # a shared work dir: agreed
    ckpt.check_resume_points([None, None], tmp_path)  # a fresh start everywhere
    with pytest.raises(CheckpointError) as err:
        ckpt.check_resume_points([(2, 30), None, (1, 15)], tmp_path)
    message = str(err.value)
    assert "rank 0: epoch 2, iteration 30" in message
    assert "rank 1: no checkpoint" in message and "rank 2: epoch 1, iteration 15" in message
    assert "filesystem every node shares" in message and str(tmp_path) in message
    with pytest.raises(CheckpointError, match=r"rank 1: unreadable \(.*dangling"):
        ckpt.check_resume_points([(2, 30), "pointer dangling"], tmp_path)

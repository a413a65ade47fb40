"""The ranking bench's larger validation split: the same generated scenes with more val images
(the training images and the first val images unchanged), and a finished stand-alone run
re-scored from its last checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from support.export import export_spec, tiny_space

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_ranking import larger_val_split, rescore_standalone

from gen5nas.data.loaders import prepare_dataset
from gen5nas.export.retrain import run_retrain
from gen5nas.spec.common import DatasetSpec
from gen5nas.tasks.base import get_task
from gen5nas.train.checkpoint import load_supernet


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.png")}


def test_the_larger_split_keeps_the_training_images_and_extends_the_val_images(
    tmp_path: Path,
) -> None:
    small = {
        "kind": "scenes",
        "numClasses": 4,
        "batchSize": 4,
        "scenes": {"trainImages": 12, "valImages": 4, "imageSize": 32, "seed": 3},
    }
    grown = larger_val_split(small, 10, tmp_path / "bench")
    assert grown["scenes"]["valImages"] == 10 and grown["scenes"]["seed"] == 3
    assert Path(grown["path"]).parent == tmp_path / "bench" / "data"
    a = prepare_dataset(DatasetSpec.model_validate(small), tmp_path / "a", (32, 32))
    b = prepare_dataset(DatasetSpec.model_validate(grown), None, (32, 32))
    assert _files(a / "train") == _files(b / "train")
    small_val, grown_val = _files(a / "val"), _files(b / "val")
    assert len(small_val) == 4 and len(grown_val) == 10
    assert all(grown_val[name] == data for name, data in small_val.items())
    # Other settings, another tree: a generated tree is never rewritten.
    other = larger_val_split({**small, "scenes": {**small["scenes"], "seed": 4}}, 10, tmp_path)
    assert other["path"] != larger_val_split(small, 10, tmp_path)["path"]


@pytest.mark.parametrize(
    "dataset", [{"kind": "digits"}, {"kind": "scenes", "path": "/data/scenes"}]
)
def test_the_larger_split_refuses_data_it_cannot_grow(dataset: dict, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--val-images: only a generated scenes dataset"):
        larger_val_split(dataset, 10, tmp_path)


@pytest.mark.usefixtures("single_thread")  # a tiny model on shared cores
def test_a_finished_run_rescored_on_its_own_data_gives_its_final_validation(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    arch = tiny_space().min()
    retrain = {"enabled": True, "fromScratch": True, "epochs": 1, "maxItersPerEpoch": 4}
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict(), retrain=retrain)
    outcome = run_retrain(spec, tmp_path, device="cpu")
    supernet, meta = load_supernet(checkpoint)
    task = get_task(str(meta.get("task", "classification")))
    assert spec.dataset is not None
    score = rescore_standalone(tmp_path, arch, supernet, task, spec.dataset, "accuracy_top1")
    assert score == pytest.approx(outcome.retrained["accuracy_top1"])
    # Cached beside the run: scored again without its checkpoints.
    for pth in (tmp_path / "retrain").glob("*.pth"):
        pth.unlink()
    assert rescore_standalone(tmp_path, arch, supernet, task, spec.dataset, "accuracy_top1") == (
        pytest.approx(score)
    )

"""`gen5nas train`: errors before any work, a foreign checkpoint refused, outputs as the seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.train import tiny_spec, write_manifest

from gen5nas.cli import main
from gen5nas.data import write_synthetic
from gen5nas.spec import load_space


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli") / "data"
    return write_synthetic(root, num_classes=3, train_per_class=8, val_per_class=2)


def test_spec_error_names_the_field_before_any_work(tmp_path: Path, capsys) -> None:
    spec = tiny_spec(tmp_path, schedule={"epochs": 0, "warmupEpoch": 1})
    manifest = write_manifest(tmp_path / "bad.yaml", spec)
    assert main(["train", "-f", str(manifest), "--work-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "schedule.epochs" in err and "greater than or equal to 1" in err
    assert "schedule.warmupEpoch: unknown field" in err
    assert not (tmp_path / "w").exists()


def test_bad_space_in_the_manifest_is_reported_before_training(tmp_path: Path, capsys) -> None:
    space = load_space("mobilenetv2_tiny").model_dump(mode="json")
    space["arch_setting"]["kernel_size"][1] = [3, 6, 3]
    spec = tiny_spec(
        tmp_path,
        searchSpace={
            "archSetting": space["arch_setting"],
            "inputResizerCfg": space["input_resizer_cfg"],
        },
    )
    manifest = write_manifest(tmp_path / "bad.yaml", spec)
    assert main(["train", "-f", str(manifest), "--work-dir", str(tmp_path / "w")]) == 2
    assert "kernel_size[1]" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_missing_dataset_is_reported_before_training(tmp_path: Path, capsys) -> None:
    manifest = write_manifest(tmp_path / "t.yaml", tiny_spec(tmp_path / "no-such-data"))
    assert main(["train", "-f", str(manifest), "--work-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err
    assert "dataset.path" in err and "no-such-data" in err
    assert not (tmp_path / "w").exists()


def test_outputs_and_a_foreign_checkpoint_refused(data: Path, tmp_path: Path, capsys) -> None:
    work = tmp_path / "work"
    spec = tiny_spec(data, schedule={"epochs": 1, "maxItersPerEpoch": 2}, deterministic=False)
    manifest = write_manifest(tmp_path / "supernettraining.yaml", spec)
    assert main(["train", "-f", str(manifest), "--work-dir", str(work), "--device", "cpu"]) == 0
    names = {p.name for p in work.iterdir()}
    assert {"epoch_1.pth", "last_checkpoint", "supernettraining.yaml", "metrics.jsonl"} <= names
    assert "best_max_subnet.accuracy_top1_epoch_1.pth" in names
    log_dirs = [p for p in work.iterdir() if p.is_dir() and p.name[:8].isdigit()]
    assert len(log_dirs) == 1
    assert "img/s" in (log_dirs[0] / "train.log").read_text()
    assert (log_dirs[0] / "resolved_config.yaml").exists()
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["type"] == "val"]
    assert len(val) == 1 and {"max/accuracy_top1", "min/accuracy_top1"} <= set(val[0])
    assert next(r for r in records if r["type"] == "train")["images_per_s"] > 0
    capsys.readouterr()

    # Same work dir, another space: refused, naming the first mismatch; the checkpoint is kept.
    space = load_space("mobilenetv2_tiny").model_dump(mode="json")
    space["arch_setting"]["last_num_out_channels"] = [64, 192, 64]
    spec["searchSpace"] = {
        "archSetting": space["arch_setting"],
        "inputResizerCfg": space["input_resizer_cfg"],
    }
    write_manifest(manifest, spec)
    before = (work / "epoch_1.pth").read_bytes()
    assert main(["train", "-f", str(manifest), "--work-dir", str(work), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "different search space" in err
    assert "arch_setting.last_num_out_channels[1]" in err and "128" in err and "192" in err
    assert (work / "epoch_1.pth").read_bytes() == before


def test_the_manifest_may_be_the_work_dirs_own_copy(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-f work/tiny.yaml --work-dir work` (rerunning from the copy the first run left) must
    not try to copy the file onto itself; every run gets its own log folder."""
    monkeypatch.chdir(tmp_path)
    Path("work").mkdir()
    spec = tiny_spec(data, schedule={"epochs": 1, "maxItersPerEpoch": 1}, deterministic=False)
    manifest = write_manifest(Path("work/tiny.yaml"), spec)
    before = manifest.read_text()
    args = ["train", "-f", "work/tiny.yaml", "--work-dir", "work", "--device", "cpu"]
    assert main(args) == 0
    assert main(args) == 0  # the rerun resumes: nothing left to train
    assert manifest.read_text() == before
    log_dirs = [p for p in Path("work").iterdir() if p.is_dir() and p.name[:8].isdigit()]
    assert len(log_dirs) == 2
    assert all((d / "train.log").exists() for d in log_dirs)

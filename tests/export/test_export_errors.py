"""Bad input to ``export``: an arch outside the checkpoint's space, a corrupt or truncated
checkpoint, a checkpoint of another task, a trial that does not exist or did not complete, a
mismatching input shape, an unknown profile, an opset torch cannot export, no dataset. Each fails with an error naming what is wrong, and no ONNX file
(or temp file) is left behind. Trials come from real Optuna storages (SQLite, PostgreSQL)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from support.export import (
    export_spec,
    make_study,
    tiny_space,
)

from gen5nas.errors import ArchError, CheckpointError, SpecError
from gen5nas.export.export import export_subnet, max_opset, verified_onnx
from gen5nas.export.resolve import resolve_subnet
from gen5nas.spec import save_arch


def _no_onnx(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if ".onnx" in p.name or p.suffix == ".tmp"]
    assert leftovers == []


def _outside_arch_file(tmp_path: Path) -> Path:
    arch = tiny_space().max().to_yaml_dict()
    arch["stages"][2]["kernel_size"] = 7  # the space allows 3 and 5
    path = tmp_path / "fix_subnets" / "trial_9.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(arch))
    return path


def test_arch_outside_the_space_names_the_dimension(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    arch_file = _outside_arch_file(tmp_path)
    spec = export_spec(checkpoint, digits, archFile=str(arch_file))
    with pytest.raises(ArchError) as info:
        export_subnet(spec, tmp_path / "out", device="cpu")
    assert info.value.dimension == "stages[2].kernel_size"
    assert "7 is not in [3, 5]" in str(info.value) and str(arch_file) in str(info.value)
    _no_onnx(tmp_path)


def test_resolution_outside_the_space(checkpoint: Path, tmp_path: Path) -> None:
    arch = tiny_space().min().to_yaml_dict()
    arch["resolution"] = [224, 224]
    with pytest.raises(ArchError) as info:
        resolve_subnet(tiny_space(), arch=tiny_space().min().model_validate(arch))
    assert info.value.dimension == "resolution" and "[24, 24]" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_is_refused(
    damage: str, digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    data = checkpoint.read_bytes()
    bad = tmp_path / "epoch_1.pth"
    bad.write_bytes(
        {"truncated": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[
            damage
        ]
    )
    spec = export_spec(bad, digits, arch=tiny_space().min().to_yaml_dict())
    with pytest.raises(CheckpointError, match=r"truncated or corrupt|not a gen5nas checkpoint"):
        export_subnet(spec, tmp_path / "out", device="cpu")
    _no_onnx(tmp_path)


def test_missing_checkpoint(digits: Path, tmp_path: Path) -> None:
    spec = export_spec(tmp_path / "nope.pth", digits, arch=tiny_space().min().to_yaml_dict())
    with pytest.raises(CheckpointError, match="not found"):
        export_subnet(spec, tmp_path / "out", device="cpu")


def test_input_shape_must_match_the_arch_resolution(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    arch = tiny_space().min()  # 24x24
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict(), inputShape=[1, 3, 224, 224])
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path, device="cpu")
    assert info.value.field == "inputShape"
    assert "[24, 24]" in str(info.value) and "1,3,24,24" in str(info.value)
    _no_onnx(tmp_path)
    spec = export_spec(checkpoint, digits, arch=arch.to_yaml_dict(), inputShape=[1, 1, 24, 24])
    with pytest.raises(SpecError, match="3 \\(RGB\\)"):
        export_subnet(spec, tmp_path, device="cpu")


def test_unknown_profile_and_missing_dataset(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    arch = tiny_space().min().to_yaml_dict()
    spec = export_spec(checkpoint, digits, arch=arch, profile="no-such-npu")
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path, device="cpu")
    assert info.value.field == "profile" and "rcar-gen5-npu" in str(info.value)
    spec = export_spec(checkpoint, digits, arch=arch, dataset=None)
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path, device="cpu")
    assert info.value.field == "dataset"
    _no_onnx(tmp_path)


def test_a_checkpoint_of_a_task_not_implemented_is_refused(digits: Path, tmp_path: Path) -> None:
    import torch

    from gen5nas.supernet import Supernet
    from gen5nas.train.checkpoint import make_meta, save_checkpoint

    space = tiny_space()
    state = {
        "model": Supernet(space, 10).state_dict(),
        "epoch": 0,
        "iteration": 0,
        "meta": make_meta(space, 10, task="segmentation"),
    }
    path = save_checkpoint(state, tmp_path / "seg.pth")
    assert torch.load(path, weights_only=False)["meta"]["task"] == "segmentation"
    spec = export_spec(path, digits, arch=space.min().to_yaml_dict())
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path / "out", device="cpu")
    assert info.value.field == "checkpoint"
    message = "task 'segmentation' is not implemented; available: classification, detection"
    assert message in str(info.value)
    _no_onnx(tmp_path)


def test_an_opset_beyond_any_exporter_is_refused_by_the_spec(digits: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="opset"):
        export_spec(tmp_path / "nope.pth", digits, arch=tiny_space().min().to_yaml_dict(), opset=99)


@pytest.mark.parametrize("opset", [max_opset() + 1])
def test_opset_beyond_the_exporter_is_refused_before_any_work(
    opset: int, digits: Path, tmp_path: Path
) -> None:
    # No checkpoint and no dataset: only a check made before any loading reports the opset.
    spec = export_spec(
        tmp_path / "nope.pth", digits, arch=tiny_space().min().to_yaml_dict(), opset=opset
    )
    spec = spec.model_copy(update={"dataset": None})
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path / "out", device="cpu")
    assert info.value.field == "opset"
    assert f"opset {opset}" in str(info.value) and f"17..{max_opset()}" in str(info.value)
    _no_onnx(tmp_path)


def test_verified_onnx_refuses_the_opset_too(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "m.onnx"
    with pytest.raises(SpecError) as info:
        verified_onnx(
            torch.nn.Conv2d(3, 4, 3), (1, 3, 8, 8), out, torch.randn(1, 3, 8, 8), opset=99
        )
    assert info.value.field == "opset"
    _no_onnx(tmp_path)


# ---- trials -----------------------------------------------------------------------------------
def _archs() -> list:  # type: ignore[type-arg]
    space = tiny_space()
    rng = random.Random(1)
    return [space.min(), space.sample(rng), space.sample(rng), space.max()]


def _states_study(url: str) -> None:
    a = _archs()
    make_study(
        url,
        tiny_space(),
        [(a[0], "COMPLETE"), (a[1], "FAIL"), (a[2], "RUNNING"), (a[3], "COMPLETE")],
    )


def _check_trials(url: str, tmp_path: Path) -> None:
    space, a = tiny_space(), _archs()
    choice = resolve_subnet(space, trial=3, storage=url)
    assert choice.arch == a[3] and choice.trial == 3 and choice.study == "s"
    assert choice.search_values["objective_0"] == 53.0  # what the search recorded
    with pytest.raises(SpecError) as info:
        resolve_subnet(space, trial=1, storage=url)
    assert info.value.field == "trial"
    assert "trial 1" in str(info.value) and "FAIL" in str(info.value) and "0, 3" in str(info.value)
    with pytest.raises(SpecError, match=r"trial 2 .* is RUNNING"):
        resolve_subnet(space, trial=2, storage=url)
    with pytest.raises(SpecError, match=r"trial 17 does not exist .* trials 0\.\.3"):
        resolve_subnet(space, trial=17, storage=url)
    with pytest.raises(SpecError, match="no study 'other'"):
        resolve_subnet(space, trial=0, storage=url, study_name="other")


def test_trials_from_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _states_study(url)
    _check_trials(url, tmp_path)


@pytest.mark.e2e
def test_trials_from_postgresql(postgres_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = postgres_server.new_database()
    _states_study(url)
    _check_trials(url, tmp_path)


def test_missing_study_database_is_not_created(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(SpecError, match="no study database"):
        resolve_subnet(tiny_space(), trial=0, storage=url)
    assert not (tmp_path / "typo.db").exists()


def test_trial_without_storage(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    spec = export_spec(checkpoint, digits, trial=0, nasSearch="my-search")
    with pytest.raises(SpecError) as info:
        export_subnet(spec, tmp_path, device="cpu")
    assert info.value.field == "storage" and "my-search" in str(info.value)


def test_trial_of_another_space_is_refused(tmp_path: Path) -> None:
    from gen5nas.spec import load_space

    url = f"sqlite:///{tmp_path / 'study.db'}"
    big = load_space("mobilenetv2_sample1")
    make_study(url, big, [(big.max(), "COMPLETE")])
    with pytest.raises(ArchError) as info:
        resolve_subnet(tiny_space(), trial=0, storage=url)
    assert info.value.dimension == "resolution" and "another space" in str(info.value)


def test_export_of_a_complete_trial_names_it(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _states_study(url)
    spec = export_spec(checkpoint, digits, trial=0, storage=url)
    result = export_subnet(spec, tmp_path / "out", device="cpu")
    assert result.onnx_path.name == "trial_0.onnx"
    source = result.card["source"]
    assert source["source"] == "trial" and source["trial"] == 0 and source["study"] == "s"
    assert result.card["arch"] == _archs()[0].to_yaml_dict()


def test_arch_file_round_trip(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    arch = _archs()[1]
    path = save_arch(arch, tmp_path / "fix_subnets" / "trial_5.yaml")
    choice = resolve_subnet(tiny_space(), arch_file=path)
    assert choice.arch == arch and choice.record()["arch_file"] == str(path)


@pytest.mark.parametrize("text", ["1,3,x,24", "1,3,24", "", "1,3,24,24,1"])
def test_bad_input_shape_text(text: str) -> None:
    from gen5nas.export.input_shape import parse_input_shape

    with pytest.raises(SpecError) as info:
        parse_input_shape(text)
    assert info.value.field == "inputShape" and "N,C,H,W" in str(info.value)

"""The ``gen5nas export`` and ``gen5nas retrain`` commands, run as a user runs them (a
subprocess): the seed-like positional form with each kind of CONFIG (a SubnetExport or a bare
spec naming no subnet of its own included), the ``-f`` manifest form
naming a study trial, bad input reported on stderr with exit status 2 and no file written, and
a retrain that resumes when rerun. The estimator is reached over real gRPC in one case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.export import dataset, make_study, tiny_space

from gen5nas.spec import save_arch

REPO = Path(__file__).resolve().parents[2]
ENV_THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def gen5nas(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **ENV_THREADS}
    return subprocess.run(
        [sys.executable, "-m", "gen5nas", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=cwd,
    )


def manifest(path: Path, kind: str, spec: dict[str, Any], name: str = "t") -> Path:
    doc = {"apiVersion": "gen5nas.io/v1alpha1", "kind": kind, "metadata": {"name": name}}
    path.write_text(yaml.safe_dump({**doc, "spec": spec}, sort_keys=False))
    return path


def test_seed_form_with_a_training_config(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    config = manifest(
        tmp_path / "supernettraining.yaml",
        "SupernetTraining",
        {"searchSpace": {"name": "mobilenetv2_tiny"}, "dataset": dataset(digits)},
    )
    arch = tiny_space().min()
    arch_file = save_arch(arch, tmp_path / "fix_subnets" / "trial_2.yaml")
    out = tmp_path / "onnx" / "trial_2.onnx"
    h, w = arch.resolution
    run = gen5nas(
        "export", str(config), str(checkpoint), str(arch_file), f"1,3,{h},{w}",
        "--output", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout and "inherited" in run.stdout
    card = json.loads((tmp_path / "onnx" / "trial_2.card.json").read_text())
    assert card["source"]["arch_file"] == str(arch_file)
    assert card["onnx"]["input"]["shape"] == [1, 3, h, w]
    # As the seed: the work dir (default: the output's folder) keeps the config and a log dir.
    assert (tmp_path / "onnx" / "supernettraining.yaml").read_text() == config.read_text()
    logs = [p for p in (tmp_path / "onnx").iterdir() if p.is_dir()]
    assert len(logs) == 1 and (logs[0] / "export.log").stat().st_size > 0


def test_seed_form_with_a_subnetexport_config_naming_no_subnet(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """ARCH_YAML names the subnet: the config need not (its other settings still apply)."""
    spec = {"dataset": dataset(digits), "opset": 18, "bnCalibrationBatches": 1}
    config = manifest(tmp_path / "subnetexport.yaml", "SubnetExport", spec)
    arch = tiny_space().min()
    arch_file = save_arch(arch, tmp_path / "fix_subnets" / "trial_4.yaml")
    out = tmp_path / "onnx" / "trial_4.onnx"
    h, w = arch.resolution
    run = gen5nas(
        "export", str(config), str(checkpoint), str(arch_file), f"1,3,{h},{w}",
        "--output", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    card = json.loads(out.with_name("trial_4.card.json").read_text())
    assert card["source"]["arch_file"] == str(arch_file) and card["onnx"]["opset"] == 18
    assert card["accuracy"]["inherited_bn_calibration_images"] == 32  # 1 batch of 32


def _seed_spec(config: Path, arch_file: Path, shape: str = "2,3,24,24") -> Any:
    from gen5nas.export.cli import spec_from_config

    return spec_from_config(config, "ckpt.pth", str(arch_file), shape)


def test_spec_from_config_subnetexport_and_bare_spec(digits: Path, tmp_path: Path) -> None:
    """A SubnetExport config with no subnet, with another subnet (trial, arch, archFile: the
    arguments replace it), and a bare spec (no envelope) all give the arguments' subnet."""
    arch_file = save_arch(tiny_space().min(), tmp_path / "a.yaml")
    own = {"dataset": dataset(digits), "dynamicBatch": True, "profile": "edge-npu"}
    other = {"arch_file": "other.yaml", "inputShape": [1, 3, 32, 32], "checkpoint": "x"}
    configs = {
        "no subnet": manifest(tmp_path / "none.yaml", "SubnetExport", own, name="none"),
        "trial": manifest(tmp_path / "trial.yaml", "SubnetExport", {**own, "trial": 3}),
        "arch": manifest(
            tmp_path / "arch.yaml",
            "SubnetExport",
            {**own, "arch": tiny_space().max().to_yaml_dict()},
        ),
        "arch_file": manifest(tmp_path / "af.yaml", "SubnetExport", {**own, **other}),
    }
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(own))
    configs["bare"] = bare
    for what, config in configs.items():
        _, spec = _seed_spec(config, arch_file)
        assert (spec.arch_file, spec.trial, spec.arch) == (str(arch_file), None, None), what
        assert spec.checkpoint == "ckpt.pth" and spec.input_shape == [2, 3, 24, 24], what
        assert spec.dynamic_batch and spec.profile == "edge-npu", what
    assert _seed_spec(configs["no subnet"], arch_file)[0] == "none"


def test_spec_from_config_still_refuses_a_bad_field(digits: Path, tmp_path: Path) -> None:
    from gen5nas.errors import SpecError

    arch_file = save_arch(tiny_space().min(), tmp_path / "a.yaml")
    for spec, field in (({"opsett": 18}, "opsett"), ({"opset": 16}, "opset")):
        config = manifest(tmp_path / "c.yaml", "SubnetExport", {"dataset": dataset(digits), **spec})
        with pytest.raises(SpecError) as info:
            _seed_spec(config, arch_file)
        assert info.value.field == field and str(config) in str(info.value)


def test_seed_form_refuses_a_shape_off_the_arch_resolution(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    config = manifest(tmp_path / "c.yaml", "SupernetTraining", {
        "searchSpace": {"name": "mobilenetv2_tiny"}, "dataset": dataset(digits)})  # fmt: skip
    arch_file = save_arch(tiny_space().min(), tmp_path / "a.yaml")
    out = tmp_path / "out" / "m.onnx"
    run = gen5nas(
        "export", str(config), str(checkpoint), str(arch_file), "1,3,224,224", "--output", str(out)
    )
    assert run.returncode == 2
    assert "inputShape" in run.stderr and "[24, 24]" in run.stderr
    assert "Traceback" not in run.stderr
    assert not out.exists() and not list((tmp_path / "out").glob("*.onnx*"))


def test_seed_form_with_a_nassearch_config_uses_its_estimator(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    from gen5nas.estimator import start_server

    server = start_server(ports=0)
    try:
        config = manifest(tmp_path / "nassearch.yaml", "NASSearch", {
            "dataset": dataset(digits),
            "estimator": {
                "profile": "edge-npu",
                "servers": [{"host": "127.0.0.1", "ports": list(server.ports)}],
            },
        })  # fmt: skip
        arch_file = save_arch(tiny_space().min(), tmp_path / "a.yaml")
        out = tmp_path / "m.onnx"
        run = gen5nas(
            "export", str(config), str(checkpoint), str(arch_file), "1,3,24,24",
            "--output", str(out),
        )  # fmt: skip
    finally:
        server.stop(0)
    assert run.returncode == 0, run.stderr
    cost = json.loads((tmp_path / "m.card.json").read_text())["cost"]
    assert cost["profile"] == "edge-npu" and cost["via"].startswith("grpc 127.0.0.1:")
    assert cost["latency_ms"] > 0


def test_manifest_form_exports_a_study_trial(
    digits: Path, checkpoint: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    space = tiny_space()
    make_study(url, space, [(space.min(), "COMPLETE"), (space.max(), "FAIL")])
    spec = {"checkpoint": str(checkpoint), "trial": 0, "storage": url, "dataset": dataset(digits)}
    path = manifest(tmp_path / "subnetexport.yaml", "SubnetExport", spec, name="pick")
    run = gen5nas("export", "-f", str(path), "--work-dir", str(tmp_path / "w"))
    assert run.returncode == 0, run.stderr
    card = json.loads((tmp_path / "w" / "trial_0.card.json").read_text())
    assert card["source"]["trial"] == 0 and card["arch"] == space.min().to_yaml_dict()

    failed = manifest(tmp_path / "failed.yaml", "SubnetExport", {**spec, "trial": 1})
    run = gen5nas("export", "-f", str(failed), "--work-dir", str(tmp_path / "w2"))
    assert run.returncode == 2 and "trial 1" in run.stderr and "FAIL" in run.stderr
    assert not list((tmp_path / "w2").glob("*.onnx"))


def test_usage_errors(tmp_path: Path) -> None:
    run = gen5nas("export", "a.yaml", "b.pth")
    assert run.returncode == 2 and "CONFIG CHECKPOINT ARCH_YAML N,C,H,W" in run.stderr
    run = gen5nas("export", "a.yaml", "b.pth", "c.yaml", "1,3,x,24", "--output", "m.onnx")
    assert run.returncode == 2 and "file not found" in run.stderr


def test_retrain_command_resumes_when_rerun(digits: Path, checkpoint: Path, tmp_path: Path) -> None:
    spec = {
        "checkpoint": str(checkpoint),
        "arch": tiny_space().min().to_yaml_dict(),
        "dataset": dataset(digits),
        "retrain": {"epochs": 2, "maxItersPerEpoch": 2, "lr": 0.05},
    }
    path = manifest(tmp_path / "subnetexport.yaml", "SubnetExport", spec)
    run = gen5nas("retrain", "-f", str(path), "--work-dir", str(tmp_path / "w"), "--epochs", "1")
    assert run.returncode == 0, run.stderr
    assert "inherited" in run.stdout and "after 1 epoch(s)" in run.stdout
    run = gen5nas("retrain", "-f", str(path), "--work-dir", str(tmp_path / "w"))
    assert run.returncode == 0, run.stderr
    assert "resuming from" in run.stderr and "after 2 epoch(s)" in run.stdout
    report = json.loads((tmp_path / "w" / "retrain" / "retrain_report.json").read_text())
    assert report["epochs_completed"] == 2 and report["iterations"] == 4


@pytest.mark.parametrize(
    "path",
    [
        "examples/subnetexport.yaml",
        "examples/quickstart/subnetexport.yaml",
        "examples/detection/subnetexport.yaml",
    ],
)
def test_examples_are_valid_subnetexport_manifests(path: str) -> None:
    from gen5nas.spec.common import load_spec
    from gen5nas.spec.export import KIND, SubnetExportSpec

    manifest, spec = load_spec(REPO / path, KIND, SubnetExportSpec)
    assert manifest.kind == KIND and spec.trial is not None
    # the classification examples retrain; the detection one exports the inherited weights
    assert spec.retrain.enabled == ("detection" not in path)

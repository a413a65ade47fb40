"""`gen5nas run`: train -> search -> export on a tiny setting, every output checked against the
others; a rerun skips the finished steps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import yaml
from support.pipeline import write_manifest
from support.search import check_outputs, read_csv

from gen5nas.cli import main
from gen5nas.errors import SpecError
from gen5nas.pipeline.run import run_pipeline
from gen5nas.pipeline.spec import Pipeline
from gen5nas.spec import load_arch
from gen5nas.spec.common import load_spec
from gen5nas.spec.export import KIND as EXPORT_KIND
from gen5nas.spec.export import SubnetExportSpec

_write = write_manifest


def _tiny_pipeline(tmp_path: Path) -> Path:
    data = {
        "kind": "digits",
        "path": str(tmp_path / "digits"),
        "batchSize": 32,
        "numWorkers": 0,
        "maxTrainSamples": 256,
        "maxValSamples": 128,
    }
    _write(
        tmp_path / "train.yaml",
        "SupernetTraining",
        {
            "searchSpace": {"name": "mobilenetv2_tiny"},
            "dataset": data,
            "schedule": {"epochs": 1, "warmupEpochs": 0, "logIntervalIters": 4},
            "bnCalibrationBatches": 2,
        },
    )
    _write(
        tmp_path / "search.yaml",
        "NASSearch",
        {
            "dataset": data,
            "maxTrials": 5,
            "sampler": {"populationSize": 4},
            "evaluation": {"calibBatches": 2},
        },
    )
    return _write(
        tmp_path / "pipeline.yaml",
        "Pipeline",
        {"supernetTraining": "train.yaml", "nasSearch": "search.yaml"},
    )


@pytest.mark.slow
def test_run_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipeline_file = _tiny_pipeline(tmp_path)
    work = tmp_path / "work"
    assert main(["run", "-f", str(pipeline_file), "--work-dir", str(work)]) == 0
    printed = capsys.readouterr().out

    state = json.loads((work / "pipeline.json").read_text())
    assert set(state) == {"train", "search", "export"}
    assert all(record["finished"] for record in state.values())
    # 1. the supernet
    checkpoint = Path(state["train"]["checkpoint"])
    assert checkpoint.is_file() and checkpoint.parent == work / "train"
    # 2. the search: every output, consistent with the study it came from
    search = work / "search"
    study = optuna.load_study(
        study_name=state["search"]["study"], storage=state["search"]["storage"]
    )
    rows = check_outputs(search, study, "latency")
    assert sum(r["state"] == "COMPLETE" for r in rows) == 5
    front = sorted(int(r["trial"]) for r in rows if r["pareto"] == "True")
    assert sorted(state["search"]["front"]) == front
    best = state["search"]["best_trial"]
    assert best in front
    # the search's config copy and its <timestamp>/search.log, as `gen5nas search` leaves them
    assert (search / "search.yaml").read_text() == (tmp_path / "search.yaml").read_text()
    (search_log,) = search.glob("*/search.log")
    assert re.fullmatch(r"\d{8}_\d{6}(_\d+)?", search_log.parent.name)
    assert "search done" in search_log.read_text()
    # 3. the export: the best trade-off, as ONNX, with a card that says so
    onnx_path = Path(state["export"]["onnx"])
    assert onnx_path.is_file() and onnx_path.parent == work / "export"
    card = json.loads(Path(state["export"]["card"]).read_text())
    arch = load_arch(search / "fix_subnets" / f"trial_{best}.yaml")
    assert card["arch"] == arch.to_yaml_dict()
    assert card["source"]["trial"] == best
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    h, w = arch.resolution
    (out,) = session.run(
        None, {session.get_inputs()[0].name: np.zeros((1, 3, h, w), dtype=np.float32)}
    )
    assert out.shape == (1, 10)
    assert str(onnx_path) in printed and f"trial {best}" in printed

    # A rerun skips every finished step and changes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in (checkpoint, onnx_path, search / "subnets.csv")}
    result = run_pipeline(Pipeline(pipeline_file), work)
    assert result.ran == [] and result.best_trial == best and result.onnx == onnx_path
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # More trials: the search resumes its study (the 5 trials kept), training is skipped.
    first = {int(r["trial"]): r["accuracy_top1"] for r in rows}
    result = run_pipeline(Pipeline(pipeline_file), work, max_trials=7)
    assert result.ran[0] == "search" and "train" not in result.ran
    rows = read_csv(search / "subnets.csv")
    assert sum(r["state"] == "COMPLETE" for r in rows) == 7
    assert {int(r["trial"]): r["accuracy_top1"] for r in rows[:5]} == first
    assert not list(work.glob("search.*"))

    # Another search (a different cost key): a new study; the earlier outputs are moved aside.
    spec = yaml.safe_load((tmp_path / "search.yaml").read_text())
    spec["spec"]["costKey"] = "energy"
    (tmp_path / "search.yaml").write_text(yaml.safe_dump(spec))
    result = run_pipeline(Pipeline(pipeline_file), work, max_trials=3)
    assert "search" in result.ran
    (aside,) = work.glob("search.*")
    assert len(read_csv(aside / "subnets.csv")) == 7
    assert sum(r["state"] == "COMPLETE" for r in read_csv(search / "subnets.csv")) == 3


def test_pipeline_file_errors_name_the_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "p.yaml", "Pipeline", {"supernetTraining": "missing.yaml", "nasSearch": "x.yaml"}
    )
    with pytest.raises(SpecError) as err:
        Pipeline(path)
    assert err.value.field == "spec.supernetTraining" and "missing.yaml" in str(err.value)
    path = _write(tmp_path / "q.yaml", "Pipeline", {"supernetTraining": "a", "nasSerch": "b"})
    with pytest.raises(SpecError, match="nasSerch: unknown field"):
        Pipeline(path)


def test_the_later_steps_run_the_trained_task(tmp_path: Path) -> None:
    scenes = {"kind": "scenes", "path": str(tmp_path / "scenes")}
    train = {"task": "detection", "searchSpace": {"name": "mobilenetv2_tiny"}, "dataset": scenes}
    _write(tmp_path / "train.yaml", "SupernetTraining", train)
    path = _write(
        tmp_path / "pipeline.yaml",
        "Pipeline",
        {"supernetTraining": "train.yaml", "nasSearch": "search.yaml"},
    )
    _write(tmp_path / "search.yaml", "NASSearch", {"dataset": scenes})
    assert Pipeline(path).search.task is None  # follows the training's
    _write(tmp_path / "search.yaml", "NASSearch", {"task": "classification", "dataset": scenes})
    with pytest.raises(SpecError, match=r"task classification, but train\.yaml trains detection"):
        Pipeline(path)
    digits = {"kind": "digits", "path": str(tmp_path / "digits")}
    _write(tmp_path / "search.yaml", "NASSearch", {"dataset": digits})
    with pytest.raises(SpecError, match="coco or scenes") as err:
        Pipeline(path)
    assert err.value.field == "spec.dataset.kind" and "search.yaml" in str(err.value)


def test_quickstart_files_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
    pipeline = Pipeline(root / "quickstart.yaml")
    assert pipeline.search.search_space is not None
    assert pipeline.search.search_space.name == pipeline.train.search_space.name
    assert not pipeline.search.estimator.servers  # in-process estimator
    assert pipeline.search.storage.url is None  # SQLite in the work dir
    # The export recalibrates BN as the search did, so it reports the trial's figure.
    _, export = load_spec(root / "subnetexport.yaml", EXPORT_KIND, SubnetExportSpec)
    assert export.dataset == pipeline.search.dataset
    assert export.bn_calibration_batches == pipeline.search.evaluation.calib_batches

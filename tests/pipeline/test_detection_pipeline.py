"""`gen5nas run` for detection: train -> search -> export on tiny generated scenes (detection
layout), every output checked against the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from support.pipeline import write_manifest
from support.search import read_csv

from gen5nas.cli import main
from gen5nas.pipeline.spec import Pipeline
from gen5nas.spec import load_arch
from gen5nas.spec.common import load_spec
from gen5nas.spec.export import KIND as EXPORT_KIND
from gen5nas.spec.export import SubnetExportSpec
from gen5nas.tasks.base import get_task

DETECTION = get_task("detection")


def _tiny_detection_pipeline(tmp_path: Path) -> Path:
    data = {
        "kind": "scenes",
        "path": str(tmp_path / "scenes"),
        "numClasses": 3,
        "scenes": {"trainImages": 48, "valImages": 24, "imageSize": 64, "layout": "detection"},
        "batchSize": 16,
        "numWorkers": 0,
    }
    write_manifest(
        tmp_path / "train.yaml",
        "SupernetTraining",
        {
            "task": "detection",
            "searchSpace": {"name": "mobilenetv2_tiny_det"},
            "dataset": data,
            "distillation": {"enabled": False},
            "schedule": {"epochs": 1, "warmupEpochs": 0, "numRandomSubnets": 1},
            "bnCalibrationBatches": 1,
        },
    )
    write_manifest(
        tmp_path / "search.yaml",
        "NASSearch",
        {
            "dataset": data,
            "maxTrials": 4,
            "sampler": {"populationSize": 4},
            "evaluation": {"calibBatches": 1},
        },
    )
    return write_manifest(
        tmp_path / "pipeline.yaml",
        "Pipeline",
        {"supernetTraining": "train.yaml", "nasSearch": "search.yaml"},
    )


def _values(tree: Any) -> list[Any]:
    """Every leaf value of a JSON tree."""
    if isinstance(tree, dict):
        return [v for value in tree.values() for v in _values(value)]
    if isinstance(tree, list):
        return [v for value in tree for v in _values(value)]
    return [tree]


@pytest.mark.slow
def test_detection_run_end_to_end(tmp_path: Path) -> None:
    work = tmp_path / "work"
    assert (
        main(["run", "-f", str(_tiny_detection_pipeline(tmp_path)), "--work-dir", str(work)]) == 0
    )
    state = json.loads((work / "pipeline.json").read_text())
    assert all(record["finished"] for record in state.values())
    assert Path(state["train"]["checkpoint"]).is_file()

    # The search: one row per trial, each COMPLETE row carrying the trial's mAP (a fraction)
    # and the extra COCO metrics in the study; the backbone costed.
    study = optuna.load_study(
        study_name=state["search"]["study"], storage=state["search"]["storage"]
    )
    assert study.user_attrs.get("task") == "detection"
    rows = read_csv(work / "search" / "subnets.csv")
    trials = {t.number: t for t in study.trials}
    assert sorted(int(r["trial"]) for r in rows) == sorted(trials)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert len(complete) == 4
    for row in complete:
        trial = trials[int(row["trial"])]
        map_value = trial.values[0]
        assert 0.0 <= map_value <= 1.0
        assert map_value in {float(v) for v in row.values() if _is_number(v)}
        assert set(DETECTION.extra_metrics) <= set(trial.user_attrs)
        assert row["cost_scope"] == "backbone"
    best = state["search"]["best_trial"]
    assert best in state["search"]["front"]
    assert {int(r["trial"]) for r in rows if r["pareto"] == "True"} == set(state["search"]["front"])

    # The export: the best trade-off's arch, its card naming the task's metric, and an ONNX
    # graph with the detector's three raw outputs.
    card = json.loads(Path(state["export"]["card"]).read_text())
    arch = load_arch(work / "search" / "fix_subnets" / f"trial_{best}.yaml")
    assert card["arch"] == arch.to_yaml_dict() == trials[best].user_attrs["arch"]
    assert DETECTION.metric.label in _values(card)  # coco/bbox_mAP
    session = ort.InferenceSession(state["export"]["onnx"], providers=["CPUExecutionProvider"])
    assert len(session.get_outputs()) == 3
    h, w = arch.resolution
    feed = {session.get_inputs()[0].name: np.zeros((1, 3, h, w), dtype=np.float32)}
    cls_logits, box_regression, centerness = session.run(None, feed)
    points = cls_logits.shape[1]
    assert cls_logits.shape == (1, points, 3)
    assert box_regression.shape == (1, points, 4) and centerness.shape == (1, points, 1)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_the_detection_quickstart_files_agree() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "quickstart" / "detection"
    pipeline = Pipeline(root / "quickstart.yaml")
    assert pipeline.train.task == "detection"
    _, export = load_spec(root / "subnetexport.yaml", EXPORT_KIND, SubnetExportSpec)
    # One dataset for the three steps: the search and the export read the tree training wrote.
    assert pipeline.search.dataset == pipeline.train.dataset == export.dataset
    assert pipeline.search.search_space == pipeline.train.search_space
    assert not pipeline.search.estimator.servers and pipeline.search.storage.url is None
    # The export recalibrates BN as the search did, so it reports the trial's figure.
    assert export.bn_calibration_batches == pipeline.search.evaluation.calib_batches

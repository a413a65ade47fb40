"""A detection search speaks its task's metric: on a freshly initialised detection supernet and
a tiny COCO folder, the CSV column, the trial attrs, the study's labels, the progress and front
log lines and the Prometheus gauges are named by ``bbox_mAP``, never by classification's top-1."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from support.coco import CATEGORIES, write_coco
from support.metrics import scrape_port
from support.search import fresh_checkpoint, read_csv, write_search_manifest

from gen5nas.search.job import run_search
from gen5nas.search.metrics import SearchMetricsEndpoint
from gen5nas.search.settings import SearchSettings
from gen5nas.search.study import default_storage_url
from gen5nas.spec.common import load_spec
from gen5nas.spec.search import KIND, NASSearchSpec
from gen5nas.tasks.detection import DETECTION


def test_a_detection_search_names_every_output_by_bbox_map(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    ckpt = fresh_checkpoint(
        tmp_path / "det.pth", "mobilenetv2_tiny_det", len(CATEGORIES), task="detection"
    )
    manifest = write_search_manifest(
        tmp_path / "nassearch.yaml",
        task="detection",
        dataset={"kind": "coco", "path": str(write_coco(tmp_path / "coco")), "batchSize": 3,
                 "numWorkers": 0},
        maxTrials=2,  # the largest and the smallest subnets
        evaluation={"calibBatches": 1, "valBatches": 1},
    )  # fmt: skip
    _, spec = load_spec(manifest, KIND, NASSearchSpec)
    work = tmp_path / "work"
    settings = SearchSettings(spec, str(ckpt), str(work), default_storage_url(work), "det")
    with SearchMetricsEndpoint(0, 1, host="127.0.0.1") as endpoint:
        result = run_search(settings, endpoint)
        scraped = scrape_port(endpoint.port)

    study = optuna.load_study(study_name="det", storage=settings.storage_url)
    assert study.user_attrs["metric"] == "coco/bbox_mAP" and study.user_attrs["task"] == "detection"
    assert study.metric_names == ["coco/bbox_mAP", "backbone/latency_ms"]
    done = study.get_trials(states=[TrialState.COMPLETE])
    assert len(done) == 2
    for t in done:  # the task's metrics under their keys; classification's names nowhere
        assert t.user_attrs["bbox_mAP"] == t.values[0]
        assert 0.0 <= t.values[0] <= 1.0 and "bbox_mAP_50" in t.user_attrs
        assert not any("top1" in k or "top5" in k for k in t.user_attrs)

    rows = read_csv(work / "subnets.csv")
    assert "bbox_mAP" in rows[0] and "accuracy_top1" not in rows[0]
    by_number = {t.number: t for t in done}
    assert {int(r["trial"]): float(r["bbox_mAP"]) for r in rows} == {
        n: t.values[0] for n, t in by_number.items()
    }
    assert {r["cost_scope"] for r in rows} == {"backbone"}

    log = next(work.glob("*/search.log")).read_text()
    assert "top-1" not in log and "%@" not in log
    for t in done:  # the progress line of each trial, as Metric.format writes a fraction
        latency = t.user_attrs["latency_ms"]
        assert f"trial {t.number} bbox mAP {t.values[0]:.4g} latency_ms {latency:.4g} |" in log
    front = [int(n) for n in re.findall(r"front: trial (\d+) bbox mAP [-\d.e]+ latency_ms", log)]
    assert front == [r.number for r in result.front] and front
    assert result.metric is DETECTION.metric

    best = max(done, key=lambda t: (t.values[0], -t.number))
    assert scraped.value("gen5nas_search_best_bbox_map_ratio") == pytest.approx(best.values[0])
    assert scraped.value("gen5nas_search_best_bbox_map_latency_seconds") == pytest.approx(
        best.user_attrs["latency_ms"] / 1000
    )
    assert scraped.value("gen5nas_search_best_accuracy_ratio") is None

"""Training's /metrics on a tiny real run: scraped over HTTP from inside the run (a step hook)
and after it, against the records the trainer wrote to metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.metrics import Scrape, scrape_port
from support.train import tiny_spec, write_manifest

from gen5nas.cli import main
from gen5nas.data import write_synthetic
from gen5nas.metrics_http import MetricsEndpoint
from gen5nas.run_outputs import METRICS_FILE
from gen5nas.spec.training import SupernetTrainingSpec
from gen5nas.train.job import run_supernet_training
from gen5nas.train.metrics import TrainingMetrics


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics") / "data"
    return write_synthetic(root, num_classes=3, train_per_class=8, val_per_class=2)


def _records(work_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (work_dir / METRICS_FILE).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_one_epoch_exposes_epoch_throughput_and_each_pass_loss(data: Path, tmp_path: Path) -> None:
    spec = SupernetTrainingSpec.model_validate(
        tiny_spec(data, schedule={"epochs": 1, "warmupEpochs": 0, "numRandomSubnets": 1})
    )
    metrics = TrainingMetrics(spec.schedule.epochs)
    endpoint = metrics.serve(0, "127.0.0.1")
    during: list[tuple[int, Scrape]] = []

    def scrape_each_step(ctx: Any, out: Any) -> None:
        during.append((ctx.iteration, scrape_port(endpoint.port)))

    try:
        run_supernet_training(
            spec, tmp_path, device="cpu", hooks=(scrape_each_step,), metrics=metrics
        )
        after = scrape_port(endpoint.port)
    finally:
        metrics.close()

    train, epochs, vals = (_records(tmp_path, k) for k in ("train", "epoch", "val"))
    assert len(during) == 3 == len(train)  # maxItersPerEpoch 3, a record per step
    # Inside step i the endpoint shows the record of step i - 1 (logged after the hooks).
    for (iteration, m), previous in zip(during[1:], train, strict=False):
        assert m.value("gen5nas_train_iteration") == previous["iteration"] == iteration
        for name in ("max", "min", "random0"):
            assert m.value("gen5nas_train_loss", **{"pass": name}) == previous[f"loss/{name}"]
        assert m.value("gen5nas_train_epoch") == 0  # none completed yet
    assert during[0][1].values("gen5nas_train_loss") == []  # nothing logged before step 1

    last = train[-1]
    assert {labels["pass"] for labels, _ in after.values("gen5nas_train_loss")} == {
        "max", "min", "random0"
    }  # fmt: skip
    for name in ("max", "min", "random0"):
        assert after.value("gen5nas_train_loss", **{"pass": name}) == last[f"loss/{name}"]
    assert after.value("gen5nas_train_learning_rate") == last["lr"]
    assert after.value("gen5nas_train_epoch") == 1 == after.value("gen5nas_train_epochs")
    assert after.value("gen5nas_train_iteration") == 3
    assert after.value("gen5nas_train_images_per_second") == epochs[-1]["images_per_s"] > 0
    assert after.value("gen5nas_train_skipped_images_total") == 0
    for subnet in ("max", "min"):
        want = vals[-1][f"{subnet}/accuracy_top1"] / 100
        assert after.value("gen5nas_train_val_accuracy_ratio", subnet=subnet) == pytest.approx(want)


def test_another_tasks_score_gauge_is_named_by_its_metric() -> None:
    """Detection's val records carry bbox_mAP (a fraction): its own gauge, not top-1's."""
    from gen5nas.tasks.detection import DETECTION

    metrics = TrainingMetrics(2, DETECTION.metric)
    metrics.on_record("val", {"max/bbox_mAP": 0.25, "min/bbox_mAP": 0.125, "max/loss": 3.0}, 1, 8)
    with MetricsEndpoint(metrics.registry, 0, "127.0.0.1") as endpoint:
        m = scrape_port(endpoint.port)
    assert m.value("gen5nas_train_val_bbox_map_ratio", subnet="max") == 0.25
    assert m.value("gen5nas_train_val_bbox_map_ratio", subnet="min") == 0.125
    assert m.values("gen5nas_train_val_accuracy_ratio") == []


def test_cli_flag_serves_on_rank_0_and_a_bad_port_is_refused(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(
        tmp_path / "train.yaml", tiny_spec(data, schedule={"epochs": 1, "warmupEpochs": 0})
    )
    argv = ["train", "-f", str(manifest), "--work-dir", str(tmp_path / "w"), "--device", "cpu"]
    assert main([*argv, "--metrics-port", "70000"]) == 2
    assert "--metrics-port: must be a TCP port (0-65535), got 70000" in capsys.readouterr().err
    assert not (tmp_path / "w" / METRICS_FILE).exists()  # refused before any work
    assert main([*argv, "--metrics-port", "0"]) == 0
    out = capsys.readouterr().out
    assert "training metrics on http://127.0.0.1:" in out and "/metrics" in out

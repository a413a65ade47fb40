"""The Detection task through the steps' seams: registry, sandwich step, BN calibration,
evaluation (COCOeval on the evaluated images), export wrapper."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import pytest
import torch
from support.detection import synthetic_batch
from torch import Tensor, nn

from gen5nas.data import Batch
from gen5nas.detection.model import DetectionSupernet, DetectorRaw
from gen5nas.spec import load_space
from gen5nas.tasks.base import get_task
from gen5nas.tasks.detection import BBOX_METRICS, DETECTION
from gen5nas.train.bn_calibration import BatchCache, recalibrate_bn
from gen5nas.train.sandwich import SandwichStep, StepContext

torch.set_num_threads(2)

SPACE = load_space("mobilenetv2_tiny_det")
CATEGORY_IDS = [1, 3, 7]  # COCO ids of the contiguous classes 0, 1, 2


def test_detection_is_registered_with_its_metric_and_cost_scope() -> None:
    task = get_task("detection")
    assert task is DETECTION
    assert (task.metric.key, task.metric.label, task.metric.unit) == (
        "bbox_mAP",
        "coco/bbox_mAP",
        "fraction",
    )
    assert set(task.extra_metrics) == set(BBOX_METRICS) - {"bbox_mAP"}
    assert task.cost_scope == "backbone"


def test_sandwich_step_trains_every_pass_with_detection_losses() -> None:
    torch.manual_seed(0)
    net = DETECTION.build_supernet(SPACE, 3).train()
    step = SandwichStep(SPACE, num_random=1, task=DETECTION)
    out = step(net, synthetic_batch(2, seed=5), StepContext(epoch=0, iteration=0))
    assert set(out.losses) == {"max", "min", "random0"}
    assert all(torch.isfinite(v) and float(v) > 0 for v in out.losses.values())
    assert net.head.cls_logits.weight.grad is not None
    assert net.active_arch == SPACE.max() and net.dropout_active


def test_bn_calibration_and_export_wrapper_take_the_detector() -> None:
    torch.manual_seed(0)
    net = DETECTION.build_supernet(SPACE, 3)
    batches = BatchCache([synthetic_batch(2, seed=s) for s in range(2)], 2)
    net.set_min()
    assert recalibrate_bn(net, batches) == 4
    static = DETECTION.extract(net, SPACE.min()).eval()
    x = batches.batches[0].images
    with torch.no_grad():
        raw = net.eval()(x)
        tensors = DETECTION.export_wrapper(static)(x)
    assert len(tensors) == 3
    for a, b in zip(tensors, raw[:3], strict=True):
        assert float((a - b).abs().max()) <= 1e-5
    detached = DETECTION.detach(raw)
    assert isinstance(detached, DetectorRaw) and not detached.cls_logits.requires_grad


class _Oracle(nn.Module):
    """A detector that finds exactly the boxes of the batches it is fed, in order: one location
    at the centre of every box of the batch, confident in the box's class at its own image."""

    def __init__(self, batches: list[Batch], num_classes: int) -> None:
        super().__init__()
        self.targets = [b.targets for b in batches]
        self.num_classes = num_classes
        self.calls = 0

    def forward(self, x: Tensor) -> DetectorRaw:
        targets = self.targets[self.calls % len(self.targets)]
        self.calls += 1
        n, k = targets.shape[:2]
        boxes = targets[..., 1:].reshape(-1, 4)
        points = (boxes[:, :2] + boxes[:, 2:]) / 2
        cls = torch.full((n, n * k, self.num_classes), -10.0)
        for i in range(n):
            for j in range(k):
                if targets[i, j, 0] >= 0:
                    cls[i, i * k + j, int(targets[i, j, 0])] = 10.0
        ltrb = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], 1).clamp(min=1e-3)
        return DetectorRaw(
            cls,
            ltrb.expand(n, -1, -1),
            torch.full((n, n * k, 1), 10.0),
            points,
            torch.full((n * k, 2), 8.0),
        )


class _Loader(list[Batch]):
    def __init__(self, batches: list[Batch], dataset: Any) -> None:
        super().__init__(batches)
        self.dataset = dataset


def _coco_of(batches: list[Batch]) -> Any:
    from pycocotools.coco import COCO

    images, annotations = [], []
    for batch in batches:
        h, w = batch.images.shape[-2:]
        assert batch.meta is not None
        for targets, meta in zip(batch.targets, batch.meta, strict=True):
            image_id = int(meta[0])
            images.append({"id": image_id, "width": w, "height": h, "file_name": f"{image_id}"})
            for c, x1, y1, x2, y2 in targets.tolist():
                if c >= 0:
                    bbox = [x1, y1, x2 - x1, y2 - y1]
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": CATEGORY_IDS[int(c)],
                            "bbox": bbox,
                            "area": bbox[2] * bbox[3],
                            "iscrowd": 0,
                        }
                    )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": f"c{i}"} for i in CATEGORY_IDS],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_evaluate_scores_a_perfect_detector_at_map_one_on_the_images_it_saw() -> None:
    pytest.importorskip("gen5nas.detection.coco_eval")  # written beside this task (det-data)
    batches = [synthetic_batch(3, seed=s) for s in range(2)]
    batches[1].meta[:, 0] += 3  # type: ignore[index]  # distinct image ids
    dataset = type("Val", (), {"coco": _coco_of(batches), "category_ids": CATEGORY_IDS})()
    oracle = _Oracle(batches, 3).train()
    metrics = DETECTION.evaluate(oracle, _Loader(batches, dataset), torch.device("cpu"))
    assert oracle.training  # the mode is restored
    assert metrics["images"] == 6 and metrics["skipped"] == 0
    assert metrics["bbox_mAP"] == pytest.approx(1.0) and metrics["bbox_mAP_50"] == 1.0
    # the first batch only (a capped search evaluation): scored on its three images
    first = DETECTION.evaluate(
        _Oracle(batches, 3), _Loader(batches[:1], dataset), torch.device("cpu")
    )
    assert first["images"] == 3 and first["bbox_mAP"] == pytest.approx(1.0)


def test_evaluate_an_untrained_detector_gives_every_metric() -> None:
    pytest.importorskip("gen5nas.detection.coco_eval")
    batches = [synthetic_batch(2, seed=9)]
    dataset = type("Val", (), {"coco": _coco_of(batches), "category_ids": CATEGORY_IDS})()
    torch.manual_seed(0)
    net: DetectionSupernet = DETECTION.build_supernet(SPACE, 3)  # type: ignore[assignment]
    metrics = DETECTION.evaluate(net, BatchCache(_Loader(batches, dataset), 1), torch.device("cpu"))
    assert set(metrics) == {*BBOX_METRICS, "loss", "images", "skipped"}
    assert metrics["images"] == 2 and metrics["loss"] > 0
    assert all(-1.0 <= metrics[k] <= 1.0 for k in BBOX_METRICS)


def test_evaluate_refuses_a_loader_without_coco_annotations() -> None:
    from gen5nas.errors import Gen5NasError

    with pytest.raises(Gen5NasError, match="COCO annotations"):
        DETECTION.evaluate(nn.Identity(), [synthetic_batch(1)], torch.device("cpu"))


def test_the_search_evaluator_scores_a_detection_subnet() -> None:
    pytest.importorskip("gen5nas.detection.coco_eval")
    from gen5nas.search.evaluate import Evaluator, ResizeInput

    batches = [synthetic_batch(2, seed=s) for s in range(2)]
    batches[1].meta[:, 0] += 2  # type: ignore[index]
    dataset = type("Val", (), {"coco": _coco_of(batches), "category_ids": CATEGORY_IDS})()
    torch.manual_seed(0)
    net = DETECTION.build_supernet(SPACE, 3)
    evaluator = Evaluator(
        net,
        BatchCache(batches, 2),
        BatchCache(_Loader(batches, dataset), 2),
        lambda arch: (1.0, 2.0),
        task=DETECTION,
    )
    try:
        arch = SPACE.min()  # 48 px, fed the 64 px batches: the detector resizes them itself
        assert not isinstance(evaluator.subnet(arch), ResizeInput)
        outcome = evaluator.evaluate(arch)
    finally:
        evaluator.close()
    assert 0.0 <= outcome.accuracy <= 1.0
    assert set(outcome.extra) == set(DETECTION.extra_metrics)
    assert (outcome.latency_ms, outcome.energy_mj) == (1.0, 2.0)

"""gen5nas.detection.coco_eval: COCOeval bbox figures (perfect, shifted, none, restricted to
some images), silent, and the letterbox undone on the way to COCO records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support.coco import write_coco

from gen5nas.data.coco import CocoDetectionDataset, build_detection_loaders, coco_ground_truth
from gen5nas.detection.coco_eval import METRIC_KEYS, coco_bbox_metrics, to_coco_detections
from gen5nas.spec.common import DatasetSpec

# One 200x200 image per COCO size bucket's worth of boxes (areas 100, 2500, 14400) and one
# with two categories.
BOXES = {
    1: [(1, [10, 10, 10, 10]), (2, [40, 40, 50, 50])],
    2: [(2, [20, 30, 120, 120])],
    3: [(1, [150, 150, 12, 14]), (1, [5, 100, 40, 60])],
}


def _ground_truth() -> object:
    annotations = [
        {"id": n, "image_id": image_id, "category_id": cat, "bbox": box, "area": box[2] * box[3]}
        for n, (image_id, cat, box) in enumerate(
            ((i, c, b) for i, objects in BOXES.items() for c, b in objects), start=1
        )
    ]
    for ann in annotations:
        ann["iscrowd"] = 0
    return coco_ground_truth(
        {
            "images": [
                {"id": i, "width": 200, "height": 200, "file_name": f"{i}.png"} for i in BOXES
            ],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        }
    )


def _detections(shift: float = 0.0, images: tuple[int, ...] = tuple(BOXES)) -> list[dict]:
    return [
        {"image_id": i, "category_id": c, "bbox": [x + shift * w, y, w, h], "score": 0.9}
        for i in images
        for c, (x, y, w, h) in BOXES[i]
    ]


def test_perfect_detections_score_one_in_every_bucket(capsys: pytest.CaptureFixture) -> None:
    metrics = coco_bbox_metrics(_ground_truth(), _detections())
    assert list(metrics) == list(METRIC_KEYS)
    assert all(v == pytest.approx(1.0) for v in metrics.values())
    assert capsys.readouterr().out == ""  # COCOeval's summary is not printed


def test_shifted_boxes_score_lower() -> None:
    # A shift by 20% of the width: IoU 0.8 / 1.2 = 0.67, a hit at IoU 0.5, a miss at 0.75.
    metrics = coco_bbox_metrics(_ground_truth(), _detections(shift=0.2))
    assert metrics["bbox_mAP_50"] == pytest.approx(1.0)
    assert metrics["bbox_mAP_75"] == pytest.approx(0.0)
    assert 0.0 < metrics["bbox_mAP"] < 1.0


def test_no_detections_score_zero_and_an_empty_bucket_stays_minus_one(
    capsys: pytest.CaptureFixture,
) -> None:
    metrics = coco_bbox_metrics(_ground_truth(), [])
    assert all(v == 0.0 for v in metrics.values())
    small_only = coco_ground_truth(
        {
            "images": [{"id": 1, "width": 20, "height": 20, "file_name": "1.png"}],
            "annotations": [
                {
                    "id": 1,
                    "image_id": 1,
                    "category_id": 1,
                    "bbox": [2, 2, 8, 8],
                    "area": 64.0,
                    "iscrowd": 0,
                }
            ],
            "categories": [{"id": 1, "name": "a"}],
        }
    )
    for detections in ([], [{"image_id": 1, "category_id": 1, "bbox": [2, 2, 8, 8], "score": 1}]):
        metrics = coco_bbox_metrics(small_only, detections)
        assert metrics["bbox_mAP_m"] == metrics["bbox_mAP_l"] == -1.0
        expected = 1.0 if detections else 0.0
        assert metrics["bbox_mAP"] == pytest.approx(expected) == metrics["bbox_mAP_s"]
    assert capsys.readouterr().out == ""


def test_image_ids_restrict_the_evaluation() -> None:
    truth = _ground_truth()
    only_first = _detections(images=(1,))
    assert coco_bbox_metrics(truth, only_first, image_ids=[1])["bbox_mAP"] == pytest.approx(1.0)
    assert coco_bbox_metrics(truth, only_first)["bbox_mAP"] < 1.0  # the others' boxes missed


def test_detections_outside_the_ground_truth_are_refused() -> None:
    wrong_image = [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]
    with pytest.raises(ValueError, match=r"not in the ground truth, e\.g\. \[9\]"):
        coco_bbox_metrics(_ground_truth(), wrong_image)
    wrong_category = [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1], "score": 1.0}]
    with pytest.raises(ValueError, match=r"category ids not in the ground truth: \[5\]"):
        coco_bbox_metrics(_ground_truth(), wrong_category)


def test_to_coco_detections_undoes_the_letterbox(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "tiny")
    spec = DatasetSpec(kind="coco", path=str(root), batch_size=4, num_workers=0)
    loaders = build_detection_loaders(spec, (24, 40), train=False)
    assert loaders.val is not None
    dataset = loaders.val.dataset
    assert isinstance(dataset, CocoDetectionDataset)
    records = []
    for batch in loaders.val:
        predictions = []
        for targets in batch.targets:
            real = targets[targets[:, 0] >= 0]
            predictions.append(
                {"boxes": real[:, 1:], "scores": torch.ones(len(real)), "labels": real[:, 0].long()}
            )
        records += to_coco_detections(predictions, batch.meta, dataset.category_ids)
    truth = dataset.coco
    expected = sorted(
        (a["image_id"], a["category_id"], a["bbox"]) for a in truth.dataset["annotations"]
    )
    got = sorted((r["image_id"], r["category_id"], r["bbox"]) for r in records)
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], atol=1e-4)
    assert all(isinstance(r["score"], float) and isinstance(r["image_id"], int) for r in records)
    assert coco_bbox_metrics(truth, records)["bbox_mAP"] == pytest.approx(1.0)


def test_to_coco_detections_refuses_labels_out_of_range() -> None:
    meta = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    prediction = {"boxes": torch.zeros(1, 4), "scores": torch.ones(1), "labels": torch.tensor([2])}
    with pytest.raises(ValueError, match=r"labels must be 0\.\.1"):
        to_coco_detections([prediction], meta, [5, 7])
    with pytest.raises(ValueError, match="2 predictions for 1 meta rows"):
        to_coco_detections([prediction, prediction], meta, [5, 7])

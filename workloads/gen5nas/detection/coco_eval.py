"""COCO bbox evaluation: predictions to COCO result records, and COCOeval's summary metrics.

:func:`to_coco_detections` maps boxes from network-input pixels back to the original image
with the batch's ``meta`` (``(xy - pad) / scale``; not clipped to the image, COCOeval does
not need it) and contiguous labels to COCO category ids. :func:`coco_bbox_metrics` runs
pycocotools' COCOeval (iouType bbox, its default parameters: IoU 0.50:0.95, 100 detections
per image, areas small < 32², medium < 96², large beyond, in original pixels) with its
printing kept off stdout.

The metrics are fractions in [0, 1]; a size bucket without ground truth boxes in the
evaluated images has no defined AP and stays at COCOeval's -1 (e.g. ``bbox_mAP_l`` on
64-pixel images, where no box reaches 96²). No detections at all score 0 wherever there is
ground truth (COCOeval's own result; pycocotools' ``loadRes`` cannot take an empty list).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from gen5nas.data.coco import coco_ground_truth

METRIC_KEYS = (
    "bbox_mAP",
    "bbox_mAP_50",
    "bbox_mAP_75",
    "bbox_mAP_s",
    "bbox_mAP_m",
    "bbox_mAP_l",
)  # COCOeval.stats[0:6], in that order


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def to_coco_detections(
    predictions: Sequence[Mapping[str, Any]], meta: Any, category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """COCO result records (``image_id``, ``category_id``, ``bbox`` [x, y, w, h] in original
    pixels, ``score``) of per-image ``predictions`` (``boxes`` (D, 4) xyxy in input pixels,
    ``scores`` (D,), ``labels`` (D,) contiguous), ``meta`` the batch's (N, 4)
    ``[image_id, scale, pad_x, pad_y]`` rows; plain Python numbers (JSON, all_gather_object)."""
    rows = _numpy(meta).astype(np.float64).reshape(-1, 4)
    if len(predictions) != len(rows):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} meta rows")
    ids = np.asarray(category_ids, np.int64)
    records: list[dict[str, Any]] = []
    for prediction, (image_id, scale, pad_x, pad_y) in zip(predictions, rows, strict=True):
        boxes = _numpy(prediction["boxes"]).astype(np.float64).reshape(-1, 4)
        scores = _numpy(prediction["scores"]).astype(np.float64).reshape(-1)
        labels = _numpy(prediction["labels"]).astype(np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"image {int(image_id)}: {len(boxes)} boxes, {len(scores)} scores, "
                f"{len(labels)} labels"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(ids)):
            raise ValueError(
                f"image {int(image_id)}: labels must be 0..{len(ids) - 1} (contiguous), got "
                f"{labels.min()}..{labels.max()}"
            )
        original = (boxes - np.array([pad_x, pad_y, pad_x, pad_y])) / scale
        xywh = np.concatenate([original[:, :2], original[:, 2:] - original[:, :2]], axis=1)
        records.extend(
            {
                "image_id": int(image_id),
                "category_id": int(ids[label]),
                "bbox": [float(v) for v in box],
                "score": float(score),
            }
            for box, score, label in zip(xywh, scores, labels, strict=True)
        )
    return records


def _results(coco_gt: COCO, detections: Sequence[Mapping[str, Any]]) -> COCO:
    unknown_images = {d["image_id"] for d in detections} - set(coco_gt.getImgIds())
    if unknown_images:
        raise ValueError(
            f"detections for {len(unknown_images)} image(s) not in the ground truth, e.g. "
            f"{sorted(unknown_images)[:5]}"
        )
    unknown_categories = {d["category_id"] for d in detections} - set(coco_gt.getCatIds())
    if unknown_categories:
        raise ValueError(
            f"detections with category ids not in the ground truth: "
            f"{sorted(unknown_categories)[:5]}"
        )
    if detections:  # loadRes adds fields to the records: give it copies
        return coco_gt.loadRes([dict(d) for d in detections])
    return coco_ground_truth(
        {
            "images": coco_gt.dataset["images"],
            "categories": coco_gt.dataset["categories"],
            "annotations": [],
        }
    )


def coco_bbox_metrics(
    coco_gt: COCO,
    detections: Sequence[Mapping[str, Any]],
    *,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """COCOeval bbox summary of ``detections`` (records as from :func:`to_coco_detections`)
    against ``coco_gt``: the :data:`METRIC_KEYS` (fractions; -1 for an empty size bucket).
    ``image_ids``: evaluate on these images only (default: every image of ``coco_gt``, so
    an image without detections counts its boxes as missed)."""
    with contextlib.redirect_stdout(io.StringIO()):
        results = _results(coco_gt, detections)
        evaluator = COCOeval(coco_gt, results, iouType="bbox")
        if image_ids is not None:
            evaluator.params.imgIds = sorted({int(i) for i in image_ids})
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float(v) for key, v in zip(METRIC_KEYS, evaluator.stats[:6], strict=True)}


__all__ = ["METRIC_KEYS", "coco_bbox_metrics", "to_coco_detections"]

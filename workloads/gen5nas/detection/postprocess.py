"""From a detector's dense raw output to boxes: score, threshold, top-k, class-wise NMS.

A location's score for class c is sqrt(sigmoid(cls_c) x sigmoid(centerness)) (FCOS's ranking:
the centerness demotes boxes predicted far from an object's centre). Candidates over
``score_threshold`` (at most ``pre_nms_top_k`` per image, the best) are decoded at their points,
clipped to the image, and NMS'd per class (:func:`torchvision.ops.batched_nms`); the best
``max_detections`` remain. This is never part of the model, nor of its ONNX export.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from gen5nas.detection.loss import decode_boxes

SCORE_THRESHOLD = 0.05
NMS_IOU = 0.6
MAX_DETECTIONS = 100
PRE_NMS_TOP_K = 1000


@torch.no_grad()
def decode_detections(
    raw: Sequence[Tensor],
    points: Tensor,
    strides: Tensor | None,
    image_hw: tuple[int, int],
    score_threshold: float = SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU,
    max_detections: int = MAX_DETECTIONS,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> list[dict[str, Tensor]]:
    """Per image ``{"boxes": (D, 4) xyxy in image pixels, "scores": (D,), "labels": (D,)}``.

    ``raw``: a :class:`~gen5nas.detection.model.DetectorRaw` or the first three outputs of an
    exported detector (cls logits, box regression, centerness); ``points`` (A, 2) its point grid
    for ``image_hw`` (H, W) images. ``strides`` is not needed (the regressions are in pixels)
    and may be None; it is accepted so that a point grid can be passed on as it comes.
    """
    del strides
    cls_logits, box_regression, centerness = raw[0], raw[1], raw[2]
    scores_all = (torch.sigmoid(cls_logits.float()) * torch.sigmoid(centerness.float())).sqrt()
    num_classes = scores_all.shape[-1]
    out = []
    for scores, regression in zip(scores_all, box_regression.float(), strict=True):
        flat = scores.reshape(-1)
        keep = (flat > score_threshold).nonzero(as_tuple=True)[0]
        if keep.numel() > pre_nms_top_k:
            keep = keep[flat[keep].topk(pre_nms_top_k).indices]
        location, label = keep // num_classes, keep % num_classes
        boxes = decode_boxes(points[location], regression[location])
        boxes = clip_boxes_to_image(boxes, image_hw)
        kept = batched_nms(boxes, flat[keep], label, nms_iou)[:max_detections]
        out.append({"boxes": boxes[kept], "scores": flat[keep][kept], "labels": label[kept]})
    return out

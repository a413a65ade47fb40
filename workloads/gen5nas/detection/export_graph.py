"""What a static detector is exported as, and how a user reads its outputs.

- ``raw`` (the default): :class:`RawTensors`, the head's three dense tensors (``cls_logits``,
  ``box_regression``, ``centerness``); score, threshold and NMS are the user's, as
  :func:`gen5nas.detection.postprocess.decode_detections` does them, on the point grid the
  card carries (:func:`postprocess_card`).
- ``nms``: :class:`DetectionsGraph`, that decoding inside the graph (score, top-k, threshold,
  box decoding, clipping, class-wise NMS as :func:`torchvision.ops.batched_nms` does it, with
  :func:`torchvision.ops.nms`, which exports as ONNX ``NonMaxSuppression``, opset >= 11):
  ``boxes`` (D, 4), ``scores`` (D,), ``labels`` (D,) for one image, D <= ``max_detections``,
  varying with the image.

:class:`DetectionsGraph` runs ``decode_detections`` itself in eager mode and its traceable
version only while it is exported, so the export's onnxruntime parity check compares the ONNX
graph with the PyTorch decoding every evaluation uses. The traced version takes the top
``pre_nms_top_k`` scores first and thresholds them after (a static-size ``TopK``), where the
eager one thresholds first: the same candidates, barring ties at the k-th score. The parity
check takes the three outputs as a set of rows (``gen5nas.export.export.check_parity``): equal
counts per image, and each PyTorch row within ``parityAtol x max(1, max |torch|)`` of its
nearest onnxruntime row (the box pixels set the scale: 4.8e-3 at 48 px for the default 1e-4;
measured on 8 scenes at opset 17 and 23: 2e-5 px on boxes, 3e-7 on scores, labels equal).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, nms

from gen5nas.detection.levels import level_shapes
from gen5nas.detection.loss import decode_boxes
from gen5nas.detection.postprocess import (
    MAX_DETECTIONS,
    NMS_IOU,
    PRE_NMS_TOP_K,
    SCORE_THRESHOLD,
    decode_detections,
)
from gen5nas.detection.static import StaticDetector


class RawHeadOutputs(NamedTuple):
    """The exported raw outputs (their field names are the ONNX output names)."""

    cls_logits: Tensor  # (N, A, C)
    box_regression: Tensor  # (N, A, 4)
    centerness: Tensor  # (N, A, 1)


class Detections(NamedTuple):
    """One image's detections after NMS (their field names are the ONNX output names)."""

    boxes: Tensor  # (D, 4) xyxy, input pixels
    scores: Tensor  # (D,)
    labels: Tensor  # (D,) int64, contiguous class index


class RawTensors(nn.Module):
    """A detector whose output is its three raw tensors (what the ``raw`` graph returns)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> RawHeadOutputs:
        raw = self.model(x)
        return RawHeadOutputs(raw.cls_logits, raw.box_regression, raw.centerness)


def _exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or is_exporting())


class DetectionsGraph(nn.Module):
    """A detector and its decoding, for one image (the ``nms`` graph: module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        score_threshold: float = SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        max_detections: int = MAX_DETECTIONS,
        pre_nms_top_k: int = PRE_NMS_TOP_K,
    ) -> None:
        super().__init__()
        self.model = model
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.pre_nms_top_k = pre_nms_top_k

    def forward(self, x: Tensor) -> Detections:
        if x.shape[0] != 1:
            raise ValueError(f"the nms graph takes one image (batch 1), got {x.shape[0]}")
        raw = self.model(x)
        image_hw = (int(x.shape[-2]), int(x.shape[-1]))
        if _exporting():
            return self._traceable(raw, image_hw)
        found = decode_detections(
            raw,
            raw.points,
            raw.strides,
            image_hw,
            self.score_threshold,
            self.nms_iou,
            self.max_detections,
            self.pre_nms_top_k,
        )[0]
        return Detections(found["boxes"], found["scores"], found["labels"])

    def _traceable(self, raw: Any, image_hw: tuple[int, int]) -> Detections:
        cls_logits, regression = raw.cls_logits[0].float(), raw.box_regression[0].float()
        scores = (torch.sigmoid(cls_logits) * torch.sigmoid(raw.centerness[0].float())).sqrt()
        num_classes = int(scores.shape[-1])
        flat = scores.reshape(-1)
        top, index = flat.topk(min(self.pre_nms_top_k, int(flat.shape[0])))
        over = top > self.score_threshold
        top, index = top[over], index[over]
        location, label = index // num_classes, index % num_classes
        boxes = clip_boxes_to_image(
            decode_boxes(raw.points[location], regression[location]), image_hw
        )
        # batched_nms's coordinate trick (classes apart by more than any box) with the offset
        # the clipping bounds, a constant: torchvision's own traces an If around the NMS.
        offsets = label.to(boxes.dtype) * float(max(image_hw) + 1)
        kept = nms(boxes + offsets[:, None], top, self.nms_iou)[: self.max_detections]
        return Detections(boxes[kept], top[kept], label[kept])


def _decoding() -> dict[str, Any]:
    """How boxes come out of the raw outputs, with the defaults both graphs and the
    evaluation use."""
    return {
        "score": "sqrt(sigmoid(cls_logits[a, c]) * sigmoid(centerness[a])) per location a and "
        "class c",
        "score_threshold": SCORE_THRESHOLD,
        "pre_nms_top_k": PRE_NMS_TOP_K,
        "box": "x1 = px - l, y1 = py - t, x2 = px + r, y2 = py + b at the location's point "
        "(px, py), box_regression = (l, t, r, b); clipped to the input",
        "nms": "class-wise (torchvision.ops.batched_nms), the best max_detections kept",
        "nms_iou": NMS_IOU,
        "max_detections": MAX_DETECTIONS,
        "reference": "gen5nas.detection.postprocess.decode_detections",
        "coordinates": "input pixels of the letterboxed network input (scaled by "
        "min(H / h, W / w), centred, padded with the mean); original image = "
        "(xy - (pad_x, pad_y)) / scale",
    }


def postprocess_card(
    detector: StaticDetector, image_hw: tuple[int, int], mode: str = "raw"
) -> dict[str, Any]:
    """The card's ``postprocess`` section of ``detector`` exported at ``image_hw`` in ``mode``
    (``raw`` or ``nms``)."""
    if mode == "nms":
        return {
            "mode": "nms",
            "in_graph": True,
            "batch": 1,
            "outputs": {
                "boxes": "(D, 4) float32 x1, y1, x2, y2 in input pixels, D <= max_detections",
                "scores": "(D,) float32, best first",
                "labels": "(D,) int64 contiguous class index (source.classes order)",
            },
            **_decoding(),
        }
    points, strides = detector.point_grid(image_hw)
    locations, classes = int(points.shape[0]), int(detector.num_classes)
    shapes = level_shapes(detector.levels, detector.arch.resolution)
    return {
        "mode": "raw",
        "in_graph": False,
        "outputs": {
            "cls_logits": f"(N, {locations}, {classes}) float32 per-class logits: sigmoid them",
            "box_regression": f"(N, {locations}, 4) float32 distances l, t, r, b from the "
            "location's point to the box sides, input pixels",
            "centerness": f"(N, {locations}, 1) float32 logit: sigmoid it",
        },
        **_decoding(),
        "levels": [
            {"stride": lv.stride, "grid_hw": [h, w]}
            for lv, (h, w) in zip(detector.levels, shapes, strict=True)
        ],
        "grid": "location (i, j) of a level of stride S at (S j + 0.5, S i + 0.5); levels "
        "finest first, each row-major (the outputs' order along A)",
        "points": [[round(float(v), 6) for v in p] for p in points.tolist()],
        "strides": [[round(float(v), 6) for v in s] for s in strides.tolist()],
    }


__all__ = [
    "Detections",
    "DetectionsGraph",
    "RawHeadOutputs",
    "RawTensors",
    "postprocess_card",
]

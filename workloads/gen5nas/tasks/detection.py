"""Object detection, the second :class:`~gen5nas.tasks.base.Task`: an FCOS-style detector on the
elastic MBConv backbone, scored by COCO bbox mAP.

- model: :class:`gen5nas.detection.model.DetectionSupernet` (only the backbone is searched;
  the FPN neck and the shared head are fixed); :func:`gen5nas.detection.extract.extract_detector`
  cuts one arch's static detector. Outputs are a :class:`~gen5nas.detection.model.DetectorRaw`
  in the pixels of the images fed, whatever the subnet's resolution.
- ground truth: :func:`gen5nas.detection.loss.detection_loss` (focal + GIoU + centerness, FCOS
  assignment); ``label_smoothing`` does not apply to it and is ignored.
- distillation, the documented choice: **ground truth for every subnet**
  (``distillation.enabled: false`` in a detection spec, the sandwich step's own switch; the
  spec's default, true, is the classifier's). Measured with ``bench/bench_det_distillation.py``
  (600 sandwich steps, batch 16 of 512 bundled scenes in the detection layout at 64 px, 4
  classes, read by the training's loaders with their augmentation, max + min + 1 random
  subnet, the same seed, data and schedule; BN recalibrated, COCO bbox mAP on 128 held-out
  scenes): ground truth for all gives the max subnet 0.134 mAP (AP50 0.302) and the min 0.123
  (0.274); in-place distillation 0.082 (0.188) and 0.028 (0.082), at about the same cost
  (114 s and 135 s on one CPU thread of a shared machine). Early in training the
  largest subnet is a poor teacher of dense detections, and on a CPU schedule training never
  gets past early. With ``enabled: true`` the smaller subnets are distilled in place from the
  largest one's head outputs (:func:`gen5nas.detection.loss.detection_distillation_loss`: class
  probabilities by binary KL at temperature T, the boxes by GIoU and the centerness by binary
  KL, weighted by the teacher's confidence), not from features (a student's stage widths
  differ from the teacher's: that would need adapters the extracted detector would not carry).
- evaluation: forward, :func:`gen5nas.detection.postprocess.decode_detections`, then
  ``gen5nas.detection.coco_eval`` (COCO result dicts in original-image pixels through the
  batch's meta, COCOeval bbox); the detections of every rank are gathered and scored on the
  images that were evaluated (a subset of the val set when the search caps its batches).
  ``bbox_mAP`` is a fraction in [0, 1] (``coco/bbox_mAP``), with AP50, AP75 and AP s/m/l.
- cost: the backbone by default (the seed's choice); ``costScope: detector`` costs the whole
  static detector at the search resolution (NMS outside the graph). Export
  (:mod:`gen5nas.detection.export_graph`): the static detector's three raw tensors (cls
  logits, box regression, centerness), NMS outside the graph; ``postprocess: nms`` puts the
  decoding and NMS inside (batch 1).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from gen5nas.data import Batch, DataLoaders
from gen5nas.errors import Gen5NasError
from gen5nas.spec import Arch, SearchSpace
from gen5nas.spec.common import DatasetSpec
from gen5nas.tasks.base import CostScope, Metric, Postprocess, register_task
from gen5nas.train.distributed import all_gather_objects

BBOX_METRICS = (
    "bbox_mAP",
    "bbox_mAP_50",
    "bbox_mAP_75",
    "bbox_mAP_s",
    "bbox_mAP_m",
    "bbox_mAP_l",
)


def coco_subset(coco: Any, image_ids: Iterable[int]) -> Any:
    """``coco`` restricted to ``image_ids`` (itself when they are all of its images): COCOeval
    counts every ground-truth image, so an evaluation of some images must be scored on those."""
    from pycocotools.coco import COCO

    wanted = set(image_ids)
    if wanted == set(coco.getImgIds()):
        return coco
    sub = COCO()
    sub.dataset = {
        **{k: v for k, v in coco.dataset.items() if k not in ("images", "annotations")},
        "images": [coco.imgs[i] for i in sorted(wanted)],
        "annotations": [a for i in sorted(wanted) for a in coco.imgToAnns.get(i, [])],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        sub.createIndex()
    return sub


def _val_annotations(loader: Iterable[Batch]) -> tuple[Any, list[int]]:
    dataset = getattr(loader, "dataset", None)
    coco, category_ids = getattr(dataset, "coco", None), getattr(dataset, "category_ids", None)
    if coco is None or category_ids is None:
        raise Gen5NasError(
            "detection evaluation needs the val dataset's COCO annotations: the loader's "
            f"dataset ({type(dataset).__name__}) has no .coco / .category_ids"
        )
    return coco, list(category_ids)


@torch.no_grad()
def evaluate_detector(
    model: nn.Module,
    loader: Iterable[Batch],
    device: torch.device,
    channels_last: bool = False,
) -> dict[str, float]:
    """:data:`BBOX_METRICS` (fractions; see ``coco_eval`` for empty size buckets), ``loss``
    (per image), ``images`` and ``skipped`` over every rank's share of ``loader``."""
    coco, category_ids = _val_annotations(loader)
    from gen5nas.detection.coco_eval import coco_bbox_metrics, to_coco_detections
    from gen5nas.detection.loss import detection_loss
    from gen5nas.detection.postprocess import decode_detections

    was_training = model.training
    model.eval()
    detections: list[dict[str, Any]] = []
    image_ids: list[int] = []
    loss, images, skipped = 0.0, 0, 0
    try:
        for batch in loader:
            skipped += batch.skipped
            if len(batch) == 0:
                continue
            if batch.meta is None:
                raise Gen5NasError("a detection batch carries meta (image id, resize); got none")
            x = batch.images.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            raw = model(x)
            loss += float(detection_loss(raw, batch.targets.to(device))) * len(batch)
            hw = (int(x.shape[-2]), int(x.shape[-1]))
            predictions = [
                {k: v.cpu() for k, v in p.items()}
                for p in decode_detections(raw, raw.points, raw.strides, hw)
            ]
            detections += to_coco_detections(predictions, batch.meta, category_ids)
            image_ids += [int(i) for i in batch.meta[:, 0].tolist()]
            images += len(batch)
    finally:
        model.train(was_training)
    shares = all_gather_objects((detections, image_ids, loss, images, skipped))
    detections = [d for share in shares for d in share[0]]
    image_ids = [i for share in shares for i in share[1]]
    loss = sum(share[2] for share in shares)
    images = sum(share[3] for share in shares)
    skipped = sum(share[4] for share in shares)
    if images:
        metrics = coco_bbox_metrics(coco_subset(coco, image_ids), detections)
    else:
        metrics = dict.fromkeys(BBOX_METRICS, 0.0)
    return {
        **{key: float(metrics[key]) for key in BBOX_METRICS},
        "loss": loss / max(1, images),
        "images": float(images),
        "skipped": float(skipped),
    }


class Detection:
    name = "detection"
    metric = Metric("bbox_mAP", "coco/bbox_mAP", "bbox mAP", "mAP", "fraction")
    extra_metrics: Sequence[str] = BBOX_METRICS[1:]
    cost_scope: CostScope = "backbone"
    cost_scopes: Sequence[CostScope] = ("backbone", "detector")
    postprocess_modes: Sequence[Postprocess] = ("raw", "nms")

    def build_loaders(
        self,
        dataset: DatasetSpec,
        resolution: tuple[int, int],
        *,
        work_dir: str | Path | None = None,
        seed: int = 0,
    ) -> DataLoaders:
        from gen5nas.data.coco import build_detection_loaders

        return build_detection_loaders(dataset, resolution, work_dir=work_dir, seed=seed)

    def build_supernet(
        self,
        space: SearchSpace,
        num_classes: int,
        *,
        activation: str = "relu6",
        dropout: float = 0.2,
        drop_path: float = 0.0,
    ) -> nn.Module:
        from gen5nas.detection.model import DetectionSupernet

        return DetectionSupernet(
            space, num_classes, activation=activation, dropout=dropout, drop_path=drop_path
        )

    def extract(self, supernet: nn.Module, arch: Arch) -> nn.Module:
        from gen5nas.detection.extract import extract_detector
        from gen5nas.detection.model import DetectionSupernet

        assert isinstance(supernet, DetectionSupernet)
        return extract_detector(supernet, arch)

    def ground_truth_loss(self, output: Any, batch: Batch, label_smoothing: float) -> Tensor:
        from gen5nas.detection.loss import detection_loss

        return detection_loss(output, batch.targets)

    def distillation_loss(self, student: Any, teacher: Any, temperature: float) -> Tensor:
        from gen5nas.detection.loss import detection_distillation_loss

        return detection_distillation_loss(student, teacher, temperature)

    def detach(self, output: Any) -> Any:
        return type(output)(*(t.detach() for t in output))

    def evaluate(
        self,
        model: nn.Module,
        loader: Iterable[Batch],
        device: torch.device,
        channels_last: bool = False,
    ) -> dict[str, float]:
        return evaluate_detector(model, loader, device, channels_last)

    def export_wrapper(self, model: nn.Module, postprocess: Postprocess = "raw") -> nn.Module:
        from gen5nas.detection.export_graph import DetectionsGraph, RawTensors

        if postprocess == "nms":
            return DetectionsGraph(model)
        if postprocess != "raw":
            raise ValueError(f"detection exports raw or nms, not {postprocess!r}")
        return RawTensors(model)

    def postprocess_card(
        self, model: nn.Module, image_hw: tuple[int, int], postprocess: Postprocess = "raw"
    ) -> dict[str, Any]:
        from gen5nas.detection.export_graph import postprocess_card
        from gen5nas.detection.static import StaticDetector

        assert isinstance(model, StaticDetector)
        return postprocess_card(model, image_hw, postprocess)


DETECTION = register_task(Detection())

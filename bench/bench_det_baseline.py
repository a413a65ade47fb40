"""Trivial detection baselines: the bbox mAP a trained detector must clearly beat.

On the validation split of a detection training spec's dataset (default: the detection
quickstart's scenes), scored by the project's COCOeval (``coco_bbox_metrics``, the val COCO
file the training's evaluation reads):

- mean box per class: every val image gets one box per class, that class's mean training box
  (in coordinates relative to the image, so any image size works) scored by the class's boxes
  per training image; what knowing only where objects usually are, and how often, is worth;
- untrained detector: the spec's max subnet at initialisation (seed, the task's own
  ``build_supernet``), BN recalibrated on the spec's ``bnCalibrationBatches``, scored by
  ``Detection.evaluate`` as a trained one is.

Usage: python bench/bench_det_baseline.py \
          [--config examples/quickstart/detection/supernettraining.yaml] \
          [--work-dir work_dirs/quickstart-detection/train]    # where the tree is (or goes)

Seconds on 2 CPU cores; the scenes tree is written first if the work dir has none.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gen5nas.data.coco import CocoDetectionDataset, coco_files, load_coco_split
from gen5nas.detection.coco_eval import coco_bbox_metrics
from gen5nas.spec.common import load_spec
from gen5nas.spec.training import KIND, SupernetTrainingSpec
from gen5nas.tasks.base import get_task
from gen5nas.train.bn_calibration import recalibrate_bn


def mean_box_detections(train: Any, val_coco: Any, category_ids: list[int]) -> list[dict]:
    """One detection per (val image, class): the class's mean relative training box."""
    assert train.raw is not None
    sizes = {img["id"]: (img["width"], img["height"]) for img in train.raw["images"]}
    wh = np.array([sizes[int(i)] for i in train.image_ids], np.float64)
    per_box_wh = np.repeat(wh, np.diff(train.starts), axis=0)  # (M, 2), each box's image
    relative = train.boxes / np.tile(per_box_wh, 2)
    detections = []
    for label, cid in enumerate(category_ids):
        mine = train.labels == label
        if not mine.any():
            continue
        x1, y1, x2, y2 = relative[mine].mean(axis=0)
        score = float(mine.sum()) / len(train.image_ids)
        for img in val_coco.dataset["images"]:
            w, h = img["width"], img["height"]
            bbox = [x1 * w, y1 * h, (x2 - x1) * w, (y2 - y1) * h]
            detections.append(
                {"image_id": img["id"], "category_id": cid, "bbox": bbox, "score": score}
            )
    return detections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/quickstart/detection/supernettraining.yaml")
    parser.add_argument("--work-dir", default="work_dirs/quickstart-detection/train")
    args = parser.parse_args()
    _, spec = load_spec(args.config, KIND, SupernetTrainingSpec)
    task = get_task(str(spec.task))
    space = spec.search_space.resolve()
    loaders = task.build_loaders(
        spec.dataset, space.max_resolution(), work_dir=Path(args.work_dir), seed=spec.seed
    )
    assert loaders.val is not None
    val = loaders.val.dataset
    assert isinstance(val, CocoDetectionDataset)
    train = load_coco_split(coco_files(spec.dataset, loaders.root, "train"), keep_raw=True)
    prior = coco_bbox_metrics(val.coco, mean_box_detections(train, val.coco, val.category_ids))

    torch.manual_seed(spec.seed)
    net = task.build_supernet(space, loaders.num_classes)
    net.set_max()  # type: ignore[operator]
    recalibrate_bn(net, loaders.calibration(spec.bn_calibration_batches, seed=spec.seed))
    untrained = task.evaluate(net, loaders.val, torch.device("cpu"))

    print(
        f"{len(val)} val images of {loaders.root} ({loaders.num_classes} classes), COCOeval bbox:"
    )
    for name, m in (("mean box per class", prior), ("untrained detector (max)", untrained)):
        print(f"  {name:26} mAP {m['bbox_mAP']:.3f}  AP50 {m['bbox_mAP_50']:.3f}")


if __name__ == "__main__":
    main()

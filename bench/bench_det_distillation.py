"""Detection's sandwich rule: in-place distillation vs ground truth for every subnet.

Two supernets of ``mobilenetv2_tiny_det``, the same seed, data and schedule, trained by
:class:`~gen5nas.train.sandwich.SandwichStep` with the Detection task: one distils the
smaller subnets from the largest one's head outputs (``distillation.enabled: true``), the other
trains every subnet on the ground truth (``false``). Scenes are drawn by the bundled generator
(64 px, 4 classes, up to 4 objects); after BN recalibration the max and min subnets are scored
by COCOeval (bbox mAP) on held-out scenes. Prints one line per mode.

    python bench/bench_det_distillation.py --steps 600      # ~6 min per mode on one CPU thread
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import time
from typing import Any

import numpy as np
import torch

from gen5nas.data import Batch
from gen5nas.data.scenes import SceneSettings, draw_scene
from gen5nas.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gen5nas.spec import load_space
from gen5nas.tasks.detection import DETECTION
from gen5nas.train.bn_calibration import recalibrate_bn
from gen5nas.train.sandwich import SandwichStep, StepContext

CLASSES = 4
SIZE = 64


def scene_batches(split: str, count: int, batch: int, first_id: int) -> list[Batch]:
    settings = SceneSettings(num_classes=CLASSES, image_size=SIZE, train_images=count)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    out = []
    for start in range(0, count, batch):
        images, rows = [], []
        for n in range(start, min(count, start + batch)):
            scene = draw_scene(settings, split, n)
            pixels = torch.from_numpy(scene.image).permute(2, 0, 1).float() / 255
            images.append((pixels - mean) / std)
            boxes = []
            for obj in scene.objects:
                ys, xs = np.nonzero(obj.mask)
                boxes.append([obj.category, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            rows.append(boxes)
        targets = torch.full((len(images), max(1, *map(len, rows)), 5), -1.0)
        for i, boxes in enumerate(rows):
            if boxes:
                targets[i, : len(boxes)] = torch.tensor(boxes, dtype=torch.float32)
        meta = torch.zeros(len(images), 4, dtype=torch.float64)
        meta[:, 0] = torch.arange(start, start + len(images)) + first_id
        meta[:, 1] = 1.0
        out.append(Batch(torch.stack(images), targets, 0, meta))
    return out


def coco_of(batches: list[Batch]) -> Any:
    from pycocotools.coco import COCO

    images, annotations = [], []
    for batch in batches:
        assert batch.meta is not None
        for targets, meta in zip(batch.targets, batch.meta, strict=True):
            image_id = int(meta[0])
            images.append({"id": image_id, "width": SIZE, "height": SIZE})
            for c, x1, y1, x2, y2 in targets.tolist():
                if c >= 0:
                    annotations.append(
                        {
                            "id": len(annotations) + 1,
                            "image_id": image_id,
                            "category_id": int(c) + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1),
                            "iscrowd": 0,
                        }
                    )
    coco = COCO()
    categories = [{"id": c + 1, "name": str(c)} for c in range(CLASSES)]
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class ValBatches(list[Batch]):
    """Batches with the ``dataset`` (COCO ground truth, category ids) evaluation reads."""

    def __init__(self, batches: list[Batch]) -> None:
        super().__init__(batches)
        self.dataset = type("Val", (), {"coco": coco_of(batches), "category_ids": [1, 2, 3, 4]})()


def run(distill: bool, steps: int, train: list[Batch], val: ValBatches) -> str:
    space = load_space("mobilenetv2_tiny_det")
    torch.manual_seed(0)
    net = DETECTION.build_supernet(space, CLASSES).train()
    step = SandwichStep(space, num_random=1, distill=distill, task=DETECTION)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)
    started = time.perf_counter()
    for it in range(steps):
        lr = 0.1 * min(1.0, (it + 1) / 30) * 0.5 * (1 + math.cos(math.pi * it / steps))
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        step(net, train[it % len(train)], StepContext(it // len(train), it))
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    seconds = time.perf_counter() - started
    scores = []
    for arch in (space.max(), space.min()):
        net.set_active(arch)
        recalibrate_bn(net, train[:4])
        m = DETECTION.evaluate(net, val, torch.device("cpu"))
        scores.append(f"mAP {m['bbox_mAP']:.3f} AP50 {m['bbox_mAP_50']:.3f}")
    mode = "distillation" if distill else "ground truth"
    return f"{mode:>12}: max {scores[0]} | min {scores[1]} | {steps} steps in {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--train-images", type=int, default=512)
    parser.add_argument("--val-images", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train = scene_batches("train", args.train_images, 16, 0)
    val = ValBatches(scene_batches("val", args.val_images, 32, 10**6))
    for distill in (True, False):
        print(run(distill, args.steps, train, val), flush=True)


if __name__ == "__main__":
    main()

"""Synthetic detection batches in the contract's Batch format (coloured rectangles on noise), a
tiny scenes dataset and a fresh detection checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gen5nas.data import Batch

COLOURS = torch.tensor([[1.5, -1.0, -1.0], [-1.0, 1.5, -1.0], [-1.0, -1.0, 1.5], [1.5, 1.5, -1.0]])


def synthetic_batch(
    n: int = 4,
    hw: tuple[int, int] = (64, 64),
    num_classes: int = 3,
    max_boxes: int = 3,
    seed: int = 0,
) -> Batch:
    """``n`` images with 1..max_boxes filled boxes each, class c painted in colour c; targets
    (n, K, 5) rows [class, x1, y1, x2, y2] padded with class -1; meta [id, 1, 0, 0]."""
    g = torch.Generator().manual_seed(seed)
    h, w = hw
    images = torch.randn(n, 3, h, w, generator=g) * 0.3
    rows: list[list[list[float]]] = []
    for i in range(n):
        count = int(torch.randint(1, max_boxes + 1, (1,), generator=g))
        boxes = []
        for _ in range(count):
            c = int(torch.randint(0, num_classes, (1,), generator=g))
            bw = int(torch.randint(w // 6, w // 2, (1,), generator=g))
            bh = int(torch.randint(h // 6, h // 2, (1,), generator=g))
            x1 = int(torch.randint(0, w - bw, (1,), generator=g))
            y1 = int(torch.randint(0, h - bh, (1,), generator=g))
            images[i, :, y1 : y1 + bh, x1 : x1 + bw] = COLOURS[c % len(COLOURS), :, None, None]
            boxes.append([float(c), float(x1), float(y1), float(x1 + bw), float(y1 + bh)])
        rows.append(boxes)
    k = max(len(r) for r in rows)
    targets = torch.full((n, k, 5), -1.0)
    for i, boxes in enumerate(rows):
        targets[i, : len(boxes)] = torch.tensor(boxes)
    meta = torch.zeros(n, 4, dtype=torch.float64)
    meta[:, 0] = torch.arange(n)
    meta[:, 1] = 1.0
    return Batch(images, targets, 0, meta)


DET_SPACE = "mobilenetv2_tiny_det"
DET_CLASSES = 4


def scenes_dataset(root: Path, batch: int = 8) -> dict[str, Any]:
    """A tiny generated detection dataset (16 train, 8 val scenes of 64 px, 4 classes), written
    under ``root`` by the first step that reads it."""
    return {
        "kind": "scenes",
        "path": str(root),
        "numClasses": DET_CLASSES,
        "batchSize": batch,
        "numWorkers": 0,
        "scenes": {"trainImages": 16, "valImages": 8, "imageSize": 64, "layout": "detection"},
    }


def save_detection_supernet(path: Path, seed: int = 0) -> Path:
    """A freshly initialised detection supernet of the tiny detection space, saved as training
    would save it."""
    from gen5nas.data.scenes import category_names
    from gen5nas.spec import load_space
    from gen5nas.tasks.detection import DETECTION
    from gen5nas.train.checkpoint import make_meta, save_checkpoint

    space = load_space(DET_SPACE)
    torch.manual_seed(seed)
    net = DETECTION.build_supernet(space, DET_CLASSES)
    meta = make_meta(space, DET_CLASSES, classes=category_names(DET_CLASSES), task=DETECTION.name)
    return save_checkpoint(
        {"model": net.state_dict(), "epoch": 0, "iteration": 0, "meta": meta}, path
    )

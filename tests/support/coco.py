"""Tiny COCO-layout folders for the detection tests (not a test module): black images with a
solid rectangle per object, its colour telling its category, and the instances json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

# COCO ids out of order and with gaps: the contiguous index follows the sorted ids.
CATEGORIES = [{"id": 7, "name": "green"}, {"id": 3, "name": "red"}, {"id": 11, "name": "blue"}]
COLOURS = {3: (255, 0, 0), 7: (0, 255, 0), 11: (0, 0, 255)}

# (width, height, [(category id, x, y, w, h), ...]) per image; the last has no annotations.
IMAGES: list[tuple[int, int, list[tuple[int, int, int, int, int]]]] = [
    (48, 32, [(3, 4, 6, 12, 10), (11, 30, 14, 14, 12)]),
    (40, 40, [(7, 20, 2, 16, 20)]),
    (32, 48, [(11, 2, 30, 10, 14), (3, 18, 4, 10, 10), (7, 6, 8, 8, 8)]),
    (36, 28, [(7, 4, 4, 10, 8)]),
    (44, 36, [(3, 24, 12, 16, 18), (11, 2, 2, 8, 8)]),
    (30, 30, []),
]


def coco_json(images: list[tuple[int, int, list[tuple[int, int, int, int, int]]]], first_id: int):
    records: dict[str, Any] = {"images": [], "annotations": [], "categories": CATEGORIES}
    for n, (width, height, objects) in enumerate(images):
        image_id = first_id + n
        records["images"].append(
            {"id": image_id, "file_name": f"{image_id}.png", "width": width, "height": height}
        )
        for cat, x, y, w, h in objects:
            records["annotations"].append(
                {
                    "id": len(records["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return records


def write_split(
    root: Path,
    split: str,
    images: list[tuple[int, int, list[tuple[int, int, int, int, int]]]] = IMAGES,
    first_id: int = 101,
) -> Path:
    """``root/<split>/<id>.png`` and ``root/annotations/instances_<split>.json``; returns the
    json's path."""
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    data = coco_json(images, first_id)
    for record, (width, height, objects) in zip(data["images"], images, strict=True):
        img = Image.new("RGB", (width, height), (0, 0, 0))
        draw = ImageDraw.Draw(img)
        for cat, x, y, w, h in objects:
            draw.rectangle((x, y, x + w - 1, y + h - 1), fill=COLOURS[cat])
        img.save(folder / record["file_name"])
    (root / "annotations").mkdir(exist_ok=True)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(json.dumps(data))
    return path


def write_coco(root: Path) -> Path:
    """A train and a val split of :data:`IMAGES` (val ids from 201)."""
    write_split(root, "train")
    write_split(root, "val", first_id=201)
    return root

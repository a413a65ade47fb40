"""Writing the scenes tree: ImageFolder images, per-pixel class masks and COCO annotations
(uncompressed-RLE segmentations of the visible pixels), drawn in worker processes."""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gen5nas.data.generate import write_tree
from gen5nas.data.scenes import SPLITS, Scene, SceneSettings, category, category_names, draw_scene


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a bool mask: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def bbox_of(mask: np.ndarray) -> list[float]:
    """COCO box [x, y, width, height] (pixel edges) around a mask's pixels."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def _annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": first_id + j,
            "image_id": image_id,
            "category_id": obj.category + 1,
            "bbox": bbox_of(obj.mask),
            "area": float(obj.mask.sum()),
            "segmentation": rle_encode(obj.mask),
            "iscrowd": 0,
        }
        for j, obj in enumerate(scene.objects)
    ]


# ---- writing -----------------------------------------------------------------------------------
def _write_chunk(settings: SceneSettings, root: str, split: str, start: int, stop: int) -> list:
    """Draw and save scenes ``start..stop-1`` of ``split``; returns their COCO records."""
    names = category_names(settings.num_classes)
    images, annotations = [], []
    for n in range(start, stop):
        scene = draw_scene(settings, split, n)
        rel = f"{names[scene.label]}/{n:06d}.png"
        Image.fromarray(scene.image, "RGB").save(Path(root, split, rel), compress_level=1)
        Image.fromarray(scene.class_mask(), "L").save(
            Path(root, "masks", split, rel), compress_level=1
        )
        size = settings.image_size
        images.append({"id": n + 1, "file_name": rel, "width": size, "height": size})
        annotations.extend(_annotations(scene, n + 1, first_id=0))
    return [images, annotations]


def _write_chunk_args(job: tuple[SceneSettings, str, str, int, int]) -> list:
    return _write_chunk(*job)


def write_scenes(root: str | Path, settings: SceneSettings | None = None, workers: int = 1) -> Path:
    """The scenes tree of ``settings`` at ``root`` (written once; concurrent writers end with one
    complete tree). ``workers`` > 1 draws in that many processes (same bytes)."""
    settings = settings or SceneSettings()
    names = category_names(settings.num_classes)
    categories = [
        {"id": c + 1, "name": names[c], "supercategory": category(c)[0]}
        for c in range(settings.num_classes)
    ]

    def fill(tmp: Path) -> None:
        for split in SPLITS:
            for name in names:
                (tmp / split / name).mkdir(parents=True)
                (tmp / "masks" / split / name).mkdir(parents=True)
        (tmp / "annotations").mkdir()
        for split in SPLITS:
            total = settings.train_images if split == "train" else settings.val_images
            step = max(1, math.ceil(total / max(1, workers * 4)))
            chunks = [(s, min(total, s + step)) for s in range(0, total, step)]
            jobs = [(settings, str(tmp), split, a, b) for a, b in chunks]
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    parts = list(pool.map(_write_chunk_args, jobs))
            else:
                parts = [_write_chunk(*job) for job in jobs]
            images = [img for part in parts for img in part[0]]
            annotations = [ann for part in parts for ann in part[1]]
            for i, ann in enumerate(annotations):
                ann["id"] = i + 1
            coco = {
                "info": {"description": "gen5nas generated scenes", "settings": settings.record()},
                "images": images,
                "annotations": annotations,
                "categories": categories,
            }
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))

    recipe: dict[str, object] = {"kind": "scenes", **settings.record(), "version": 1}
    return write_tree(Path(root), recipe, fill)


__all__ = ["bbox_of", "rle_encode", "write_scenes"]

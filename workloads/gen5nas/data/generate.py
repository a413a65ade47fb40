"""Datasets written to disk as ImageFolder trees (``train/<class>/*.png``, ``val/...``), so the
demo and the tests go through the same loader as real data.

- :func:`write_digits`: scikit-learn's handwritten digits (1797 real 8x8 scans, 10 classes),
  upsampled to 3-channel 32x32 PNGs; a deterministic stratified split (every 5th image of a
  class goes to val: 1442 train / 355 val).
- :func:`write_synthetic`: a generated tree of any size: each class is a colour and a stripe
  orientation/frequency plus noise, learnable but not trivially so.

Both write into a temporary sibling directory and rename it into place, so a crash never
leaves a half-written tree that a later run would mistake for a complete one, and concurrent
writers (several ranks on one node) end with one complete tree.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

_MARKER = ".gen5nas-dataset.json"


def _is_complete(root: Path, recipe: dict[str, object]) -> bool:
    marker = root / _MARKER
    return marker.is_file() and json.loads(marker.read_text()) == recipe


def write_tree(root: Path, recipe: dict[str, object], fill: Callable[[Path], None]) -> Path:
    """Run ``fill(tmp_dir)`` and move the result to ``root`` atomically (unless already there)."""
    if _is_complete(root, recipe):
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and is not a gen5nas-generated {recipe['kind']} dataset with the same "
            "settings; remove it or choose another dataset.path"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        fill(tmp)
        (tmp / _MARKER).write_text(json.dumps(recipe))
        if root.exists():
            # An empty leftover directory; or another writer's complete tree (then rmdir fails
            # and so does the rename below, which is fine).
            with contextlib.suppress(OSError):
                root.rmdir()
        try:
            os.rename(tmp, root)
        except OSError:
            if not _is_complete(root, recipe):  # another writer won the race: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_digits(root: str | Path, size: int = 32) -> Path:
    """scikit-learn's digits as ``root/{train,val}/<digit>/<n>.png`` (3-channel, size x size)."""
    from sklearn.datasets import load_digits

    def fill(tmp: Path) -> None:
        digits = load_digits()
        per_class: dict[int, int] = {}
        for n, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            k = per_class.get(int(target), 0)
            per_class[int(target)] = k + 1
            split = "val" if k % 5 == 4 else "train"
            gray = Image.fromarray((pixels * (255.0 / 16.0)).round().astype(np.uint8), "L")
            img = gray.resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
            folder = tmp / split / str(int(target))
            folder.mkdir(parents=True, exist_ok=True)
            img.save(folder / f"{n:04d}.png")

    return write_tree(Path(root), {"kind": "digits", "size": size, "version": 1}, fill)


def write_synthetic(
    root: str | Path,
    num_classes: int = 10,
    train_per_class: int = 64,
    val_per_class: int = 16,
    size: tuple[int, int] = (32, 32),
    seed: int = 0,
) -> Path:
    """A synthetic ImageFolder tree; the same arguments always give the same images."""
    h, w = size

    def image(rng: np.random.Generator, c: int) -> Image.Image:
        hue = np.array([math.cos(2 * math.pi * c / num_classes + k * 2.1) for k in range(3)])
        angle = math.pi * c / num_classes + rng.normal(0, 0.1)
        freq = 2 + (c % 3) + rng.uniform(-0.3, 0.3)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        stripes = np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle)))
        phase_shift = rng.uniform(0, 2 * math.pi)
        stripes = np.sin(np.arcsin(np.clip(stripes, -1, 1)) + phase_shift)
        pixels = 0.5 + 0.25 * stripes[..., None] * hue + rng.normal(0, 0.08, (h, w, 3))
        return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")

    def fill(tmp: Path) -> None:
        rng = np.random.default_rng(seed)
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for c in range(num_classes):
                folder = tmp / split / f"class_{c:03d}"
                folder.mkdir(parents=True)
                for n in range(count):
                    image(rng, c).save(folder / f"{n:05d}.png")

    recipe = {
        "kind": "synthetic",
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "size": [h, w],
        "seed": seed,
        "version": 1,
    }
    return write_tree(Path(root), recipe, fill)

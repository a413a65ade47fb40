"""Detection transforms: an image and its boxes moved together to the loader's resolution.

Every image is resized by one factor ``scale`` (aspect kept) and placed at an integer offset
``(pad_x, pad_y)`` in an ``(H, W)`` canvas filled with the normalisation mean (0 after
normalising); a box maps as ``xy * scale + pad``, so ``(input_xy - pad) / scale`` gives the
original coordinates back (the ``meta`` of the detection ``Batch``).

- validation: the letterbox, ``scale = min(H / h, W / w)``, centred;
- training: a horizontal flip (p 0.5), then the letterbox scale times a jitter factor drawn
  from ``scale_range``, placed at a random offset (a smaller image is padded, a larger one
  cropped); boxes are clipped to the canvas and those narrower or lower than
  ``min_box_size`` pixels after that are dropped. The training meta ignores the flip.

Randomness comes from the ``torch.Generator`` passed in (seeded per sample by the dataset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from gen5nas.data.transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DetectionAugment:
    hflip: bool = True
    scale_range: tuple[float, float] = (0.75, 1.25)  # times the letterbox scale
    min_box_size: float = 1.0  # training boxes thinner than this (input pixels) are dropped


@dataclass(frozen=True)
class Placed:
    image: Tensor  # float32 (3, H, W), normalised
    boxes: np.ndarray  # float32 (K, 4) xyxy, input pixels
    labels: np.ndarray  # int64 (K,)
    scale: float
    pad_x: int
    pad_y: int


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def letterbox_scale(size_hw: tuple[int, int], resolution: tuple[int, int]) -> float:
    """The largest scale at which an image of ``size_hw`` fits ``resolution`` (both (h, w))."""
    return min(resolution[0] / size_hw[0], resolution[1] / size_hw[1])


def place(
    img: Image.Image,
    boxes: np.ndarray,
    labels: np.ndarray,
    resolution: tuple[int, int],
    scale: float,
    pad: tuple[int, int],
    min_box_size: float = 0.0,
) -> Placed:
    """``img`` resized by ``scale`` and pasted at ``pad`` (x, y; negative: cropped) into a
    ``resolution`` canvas, with its xyxy ``boxes`` moved alike, clipped to the canvas; boxes
    of width or height 0, or below ``min_box_size``, afterwards are dropped."""
    height, width = resolution
    new_w = max(1, round(img.width * scale))
    new_h = max(1, round(img.height * scale))
    resized = img.resize((new_w, new_h), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(resized, np.float32).copy()).permute(2, 0, 1) / 255.0
    pixels = (pixels - _MEAN) / _STD
    canvas = torch.zeros(3, height, width)
    px, py = pad
    # The overlap of the pasted image and the canvas, in canvas and in image coordinates.
    x0, y0 = max(0, px), max(0, py)
    x1, y1 = min(width, px + new_w), min(height, py + new_h)
    if x1 > x0 and y1 > y0:
        canvas[:, y0:y1, x0:x1] = pixels[:, y0 - py : y1 - py, x0 - px : x1 - px]
    moved = boxes.astype(np.float64) * scale + np.array([px, py, px, py], np.float64)
    moved[:, 0::2] = moved[:, 0::2].clip(0, width)
    moved[:, 1::2] = moved[:, 1::2].clip(0, height)
    sizes = np.minimum(moved[:, 2] - moved[:, 0], moved[:, 3] - moved[:, 1])
    keep = (sizes > 0) & (sizes >= min_box_size)
    return Placed(canvas, moved[keep].astype(np.float32), labels[keep], scale, px, py)


def val_transform(
    img: Image.Image, boxes: np.ndarray, labels: np.ndarray, resolution: tuple[int, int]
) -> Placed:
    """The centred letterbox."""
    scale = letterbox_scale((img.height, img.width), resolution)
    pad_x = (resolution[1] - max(1, round(img.width * scale))) // 2
    pad_y = (resolution[0] - max(1, round(img.height * scale))) // 2
    return place(img, boxes, labels, resolution, scale, (pad_x, pad_y))


def train_transform(
    img: Image.Image,
    boxes: np.ndarray,
    labels: np.ndarray,
    resolution: tuple[int, int],
    cfg: DetectionAugment,
    generator: torch.Generator | None,
) -> Placed:
    """Flip, scale jitter and a random placement (see the module docstring)."""

    def uniform() -> float:
        return float(torch.rand((), generator=generator))

    if cfg.hflip and uniform() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        boxes = boxes.copy()
        boxes[:, [0, 2]] = img.width - boxes[:, [2, 0]]
    lo, hi = cfg.scale_range
    scale = letterbox_scale((img.height, img.width), resolution) * (lo + (hi - lo) * uniform())
    free_x = resolution[1] - max(1, round(img.width * scale))
    free_y = resolution[0] - max(1, round(img.height * scale))
    # A free margin (>= 0) puts the image anywhere inside; a negative one crops anywhere.
    pad_x = min(0, free_x) + int(uniform() * (abs(free_x) + 1))
    pad_y = min(0, free_y) + int(uniform() * (abs(free_y) + 1))
    return place(img, boxes, labels, resolution, scale, (pad_x, pad_y), cfg.min_box_size)


__all__ = [
    "DetectionAugment",
    "Placed",
    "letterbox_scale",
    "place",
    "train_transform",
    "val_transform",
]

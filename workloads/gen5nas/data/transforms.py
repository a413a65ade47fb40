"""Train/val transforms at a given (max) resolution.

Loaders produce images at the search space's largest resolution; the supernet resizes them to
each subnet's resolution in ``forward``, so one loader serves every subnet of a sandwich step.

ImageNet-style data gets the standard recipe: RandomResizedCrop(scale 0.08-1) + horizontal
flip for training, resize to ``res / 0.875`` + centre crop for validation. Small, centred
images (the digits demo, synthetic trees, scenes) get a milder crop and no val crop (the
object fills the frame), the digits and synthetic trees no flip (a mirrored digit is another
symbol).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms import v2 as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    val_crop_fraction: float = 0.875  # val: resize to res / fraction, then centre crop

    @classmethod
    def for_kind(cls, kind: str) -> AugmentConfig:
        if kind in ("digits", "synthetic"):
            return cls(crop_scale=(0.6, 1.0), hflip=False, val_crop_fraction=1.0)
        if kind == "scenes":  # every category is its own mirror image (up to rotation)
            return cls(crop_scale=(0.6, 1.0), hflip=True, val_crop_fraction=1.0)
        return cls()


def _finish() -> list[T.Transform]:
    return [
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def train_transform(resolution: tuple[int, int], cfg: AugmentConfig) -> T.Compose:
    steps: list[T.Transform] = [
        T.RandomResizedCrop(resolution, scale=cfg.crop_scale, antialias=True)
    ]
    if cfg.hflip:
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + _finish())


def val_transform(resolution: tuple[int, int], cfg: AugmentConfig) -> T.Compose:
    h, w = resolution
    resize = (round(h / cfg.val_crop_fraction), round(w / cfg.val_crop_fraction))
    return T.Compose([T.Resize(resize, antialias=True), T.CenterCrop(resolution), *_finish()])

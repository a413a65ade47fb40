"""Where the detector looks: the backbone stages that feed the neck, and the image position
and stride of every output location.

Levels are chosen from the space, not the arch (depths and widths are elastic, the stages and
their strides are not): the last stage of each of the last :data:`NUM_LEVELS` distinct
cumulative output strides (fewer when the space has fewer distinct strides). A conv of odd
kernel k, padding k // 2 and stride s maps n pixels to ceil(n / s), and nested ceilings of
integer divisions compose, so a level of cumulative stride S has ceil(H / S) x ceil(W / S)
locations at network resolution (H, W).

Outputs are given in the pixels of the image the detector was *fed*: when the network runs at
another resolution (the supernet resizes its input to the active arch's), every point and
stride is scaled by the image size over the network's, per axis; hence strides are (x, y)
pairs. Location (i, j) of a level sits at (S j + 0.5, S i + 0.5) in network pixels (pixel
centres at +0.5): the centre of its receptive field, since every conv is centred (odd kernel,
padding k // 2) and output j of a stride-s conv is centred on input s j. Unlike the
mid-cell convention ((j + 0.5) S), it stays inside the image when a side is not a multiple of S.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gen5nas.spec import SearchSpace
from gen5nas.spec.plan import STEM_STRIDE

NUM_LEVELS = 3


@dataclass(frozen=True)
class FeatureLevel:
    stage: int  # the backbone stage whose output feeds this level
    stride: int  # its cumulative output stride (network pixels per location)


def feature_levels(space: SearchSpace, num_levels: int = NUM_LEVELS) -> tuple[FeatureLevel, ...]:
    """The neck's inputs, finest first (see the module docstring)."""
    last_of_stride: dict[int, int] = {}
    stride = STEM_STRIDE
    for i, s in enumerate(space.arch_setting.stride):
        stride *= s
        last_of_stride[stride] = i  # a later stage of the same stride replaces an earlier one
    strides = sorted(last_of_stride)[-num_levels:]
    return tuple(FeatureLevel(last_of_stride[s], s) for s in strides)


def level_shapes(
    levels: tuple[FeatureLevel, ...], resolution: tuple[int, int]
) -> list[tuple[int, int]]:
    h, w = resolution
    return [(math.ceil(h / lv.stride), math.ceil(w / lv.stride)) for lv in levels]


def point_grid(
    levels: tuple[FeatureLevel, ...],
    resolution: tuple[int, int],
    image_hw: tuple[int, int],
    device: torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """``(points (A, 2), strides (A, 2))``, both (x, y) in pixels of an ``image_hw`` image fed
    to a network running at ``resolution``; level after level, each row-major (the order of
    the head's outputs)."""
    fy, fx = image_hw[0] / resolution[0], image_hw[1] / resolution[1]
    points, strides = [], []
    for lv, (h, w) in zip(levels, level_shapes(levels, resolution), strict=True):
        ys = (torch.arange(h, dtype=torch.float32, device=device) * lv.stride + 0.5) * fy
        xs = (torch.arange(w, dtype=torch.float32, device=device) * lv.stride + 0.5) * fx
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
        step = torch.tensor([lv.stride * fx, lv.stride * fy], device=device)
        strides.append(step.expand(h * w, 2))
    return torch.cat(points), torch.cat(strides)

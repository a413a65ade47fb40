"""The neck: an FPN (Lin et al. 2017) of fixed width over the backbone levels.

Each level gets a 1x1 lateral conv + BN to ``channels``; from the coarsest level down, the
coarser map is upsampled (nearest, to the finer map's size: sizes are ceil-halved, so not
always exactly twice) and added; a 3x3 conv + BN + activation then smooths each sum. The
laterals are :class:`~gen5nas.supernet.blocks.DynamicConvBNAct` built for the stage's largest
width: like every elastic op they read the input width from the tensor, so the same neck takes
any arch's stage widths, and :meth:`FPN.to_static` cuts the laterals for one arch's widths.
The rest of the neck has a fixed shape and is copied as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.supernet.blocks import DynamicConvBNAct
from gen5nas.supernet.ops import make_activation


def conv_bn_act(channels: int, kernel: int, activation: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(channels),
        make_activation(activation),
    )


class FPN(nn.Module):
    """Top-down feature pyramid; ``lateral[i]`` is elastic in the supernet, static once cut."""

    def __init__(self, lateral: Sequence[nn.Module], output: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(lateral) != len(output):
            raise ValueError(f"{len(lateral)} laterals but {len(output)} output convs")
        self.lateral = nn.ModuleList(lateral)
        self.output = nn.ModuleList(output)

    @classmethod
    def elastic(cls, max_in_channels: Sequence[int], channels: int, activation: str) -> FPN:
        """The supernet's neck: ``max_in_channels`` are the levels' largest stage widths."""
        return cls(
            [DynamicConvBNAct(c, channels, 1, 1, None) for c in max_in_channels],
            [conv_bn_act(channels, 3, activation) for _ in max_in_channels],
        )

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        maps = [lateral(f) for lateral, f in zip(self.lateral, features, strict=True)]
        for i in range(len(maps) - 2, -1, -1):
            coarser = F.interpolate(maps[i + 1], size=maps[i].shape[-2:], mode="nearest")
            maps[i] = maps[i] + coarser
        return [out(m) for out, m in zip(self.output, maps, strict=True)]

    def to_static(self, in_channels: Sequence[int]) -> FPN:
        """This neck for levels of widths ``in_channels``, with plain modules (copies)."""
        lateral = [
            m.to_static(c)
            for m, c in zip(self.lateral, in_channels, strict=True)
            if isinstance(m, DynamicConvBNAct)
        ]
        if len(lateral) != len(self.lateral):
            raise TypeError("to_static needs the elastic neck (it is static already)")
        return FPN(lateral, [copy.deepcopy(m) for m in self.output]).train(self.training)

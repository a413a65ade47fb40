"""The supernet: a MobileNetV2 of elastic MBConv blocks holding every subnet of a search space.

Layout (torchvision's MobileNetV2 made elastic): stem 3x3/2 conv + BN + act, one stage per
``arch_setting`` entry of up to ``num_blocks[max]`` inverted-residual blocks (the stride on the
first block), a 1x1 conv + BN + act to ``last_num_out_channels``, global average pooling,
dropout, and a linear classifier. :meth:`Supernet.set_active` picks the subnet that
``forward`` runs; :func:`gen5nas.supernet.extract_subnet` cuts it out as a static network.
"""

from __future__ import annotations

from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.spec import Arch, SearchSpace
from gen5nas.supernet.ops import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    DynamicLinear,
    copy_activation,
    drop_path,
    make_activation,
)
from gen5nas.supernet.static import StaticMBConv


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below it nor 10% below ``value``
    (torchvision's ``_make_divisible``; monotonic, so a smaller subnet never gets more)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class DynamicConvBNAct(nn.Module):
    """Elastic conv + BN (+ activation when ``activation`` is given)."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int,
        stride: int = 1,
        activation: str | None = None,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, max_kernel, stride, depthwise)
        self.bn = DynamicBatchNorm2d(max_out)
        self.act = make_activation(activation) if activation else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))

    def to_static(self, in_channels: int) -> nn.Sequential:
        out = self.conv.out_channels_for(in_channels)
        layers = [self.conv.to_static(in_channels), self.bn.to_static(out)]
        if not isinstance(self.act, nn.Identity):
            layers.append(copy_activation(self.act))
        return nn.Sequential(*layers)


class DynamicMBConv(nn.Module):
    """Elastic inverted residual: [1x1 expand] -> kxk depthwise -> 1x1 project, BN after each.

    The expand conv exists iff the stage's largest expand ratio is > 1 (then it is always used,
    whatever the active ratio). The skip connection is taken when stride == 1 and the active
    input width equals the active output width.
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int,
        max_expand_ratio: float,
        stride: int,
        activation: str,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.has_expand = max_expand_ratio > 1
        max_mid = make_divisible(max_in * max_expand_ratio) if self.has_expand else max_in
        self.expand = (
            DynamicConvBNAct(max_in, max_mid, 1, 1, activation) if self.has_expand else None
        )
        self.depthwise = DynamicConvBNAct(
            max_mid, max_mid, max_kernel, stride, activation, depthwise=True
        )
        self.project = DynamicConvBNAct(max_mid, max_out, 1, 1, None)
        self.active_in = max_in
        self.active_out = max_out

    def set_active(
        self, in_channels: int, kernel_size: int, expand_ratio: float, out_channels: int
    ) -> None:
        """``in_channels`` is the width the block will be fed (the previous layer's active out);
        the expand width follows from it: ``make_divisible(in_channels * expand_ratio, 8)``."""
        if self.expand is not None:
            self.expand.conv.set_active(out_channels=make_divisible(in_channels * expand_ratio))
        self.depthwise.conv.set_active(kernel_size=kernel_size)
        self.project.conv.set_active(out_channels=out_channels)
        self.active_in = in_channels
        self.active_out = out_channels

    def forward(self, x: Tensor, drop_prob: float = 0.0) -> Tensor:
        """``drop_prob``: stochastic depth of the residual branch (ignored without the skip)."""
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if self.stride == 1 and x.shape[1] == out.shape[1]:
            out = drop_path(out, drop_prob) + x
        return out

    def to_static(self) -> StaticMBConv:
        layers: list[nn.Module] = []
        width = self.active_in
        for part in (self.expand, self.depthwise, self.project):
            if part is None:
                continue
            layers.append(part.to_static(width))
            width = part.conv.out_channels_for(width)
        residual = self.stride == 1 and self.active_in == self.active_out
        return StaticMBConv(nn.Sequential(*layers), residual)


class Supernet(nn.Module):
    """Every subnet of ``space`` in one network with shared weights.

    ``set_active(arch)`` selects the subnet that ``forward`` runs (``set_max``/``set_min`` for the
    sandwich rule's extremes). ``forward`` resizes the input (bilinear, ``align_corners=False``)
    to the active resolution when it differs, so one data loader serves every subnet.

    ``dropout_active`` (default True) applies the classifier dropout in training mode; set it to
    False while training the smaller subnets of a sandwich step (BigNAS regularises only the
    largest one). Dropout is never applied in eval mode, whatever this flag says.

    ``drop_path`` (stochastic depth) follows the same gate: in training mode with
    ``dropout_active``, the residual branch of active block i of n is dropped per sample with
    probability ``drop_path * i / (n - 1)`` (0 at the first block, AttentiveNAS-style). Extracted
    subnets have no drop-path: it is a training regulariser of the max subnet only.

    Initialisation (BigNAS): only blocks after the first of a stage start with the last BN's
    gamma at 0: they have stride 1 and equal in/out widths in every arch, so they are always
    residual and a zero gamma makes them start as identities. A stage's first block is residual
    only in some archs (stride 1 and the previous width equal to its own, e.g. the default
    space's stage 1 when the stem runs at 16 channels); it keeps gamma = 1 because, in the archs
    where it has no skip, a zero gamma would make it output a constant (beta = 0): that subnet's
    logits would ignore the input and no gradient would reach the layers before it until the
    gamma grew.
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        activation: str = "relu6",
        dropout: float = 0.2,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.space = space
        self.num_classes = num_classes
        self.activation = activation
        setting = space.arch_setting
        in_channels = setting.first_num_out_channels[1]
        self.stem = DynamicConvBNAct(3, in_channels, 3, 2, activation)
        self.stages = nn.ModuleList()
        for i in range(setting.num_stages):
            out_channels = setting.num_out_channels[i][1]
            blocks = nn.ModuleList()
            for j in range(setting.num_blocks[i][1]):
                blocks.append(
                    DynamicMBConv(
                        max_in=in_channels if j == 0 else out_channels,
                        max_out=out_channels,
                        max_kernel=setting.kernel_size[i][1],
                        max_expand_ratio=max(setting.expand_ratio[i].values()),
                        stride=setting.stride[i] if j == 0 else 1,
                        activation=activation,
                    )
                )
            self.stages.append(blocks)
            in_channels = out_channels
        self.last = DynamicConvBNAct(
            in_channels, setting.last_num_out_channels[1], 1, 1, activation
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(setting.last_num_out_channels[1], num_classes)
        self.dropout_active = True
        self.drop_path = drop_path
        self._init_weights()
        self._depths: list[int] = []
        self._active: Arch = space.max()
        self.set_active(self._active)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        # BigNAS: blocks after the first of a stage are always residual; a zero gamma on their
        # last BN makes them start as identities, which stabilises training of deep subnets.
        for i in range(len(self.stages)):
            for block in self.blocks(i)[1:]:
                nn.init.zeros_(block.project.bn.bn.weight)

    def blocks(self, stage: int) -> list[DynamicMBConv]:
        """The blocks of stage ``stage`` (all of them, active or not)."""
        return [cast(DynamicMBConv, block) for block in cast(nn.ModuleList, self.stages[stage])]

    # ---- choosing the subnet ----------------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        """Select the subnet ``forward`` runs; :class:`ArchError` if ``arch`` is outside the space."""
        self.space.check(arch)
        self.stem.conv.set_active(out_channels=arch.first_num_out_channels)
        width = arch.first_num_out_channels
        for i, stage in enumerate(arch.stages):
            blocks = self.blocks(i)
            for j in range(stage.num_blocks):
                blocks[j].set_active(
                    width, stage.kernel_size, stage.expand_ratio, stage.num_out_channels
                )
                width = stage.num_out_channels
        self.last.conv.set_active(out_channels=arch.last_num_out_channels)
        self._depths = [stage.num_blocks for stage in arch.stages]
        self._active = arch

    @property
    def active_arch(self) -> Arch:
        return self._active

    def set_max(self) -> None:
        self.set_active(self.space.max())

    def set_min(self) -> None:
        self.set_active(self.space.min())

    # ---- running it ---------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Each active stage's output (after the input resize and the stem)."""
        size = tuple(self._active.resolution)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        x = self.stem(x)
        rate = self.drop_path if self.training and self.dropout_active else 0.0
        last = max(1, sum(self._depths) - 1)
        index = 0
        features = []
        for blocks, depth in zip(self.stages, self._depths, strict=True):
            for j in range(depth):
                # a ModuleList (kept typed-cheap here)
                x = blocks[j](x, rate * index / last)  # type: ignore[index]
                index += 1
            features.append(x)
        return features

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.last(self.forward_features(x)[-1])).flatten(1)
        if self.dropout_active:
            x = self.dropout(x)
        return self.classifier(x)

    def num_active_params(self) -> int:
        """Parameters of the active subnet (as extracted)."""
        from gen5nas.supernet.extract import extract_subnet

        return sum(p.numel() for p in extract_subnet(self, self._active).parameters())

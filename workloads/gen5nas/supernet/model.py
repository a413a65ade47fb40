"""The supernet: a MobileNetV2 of elastic MBConv blocks holding every subnet of a search space.

Layout (torchvision's MobileNetV2 made elastic): stem 3x3/2 conv + BN + act, one stage per
``arch_setting`` entry of up to ``num_blocks[max]`` inverted-residual blocks (the stride on the
first block), a 1x1 conv + BN + act to ``last_num_out_channels``, global average pooling,
dropout, and a linear classifier. Every layer's size comes from :mod:`gen5nas.spec.plan`: the
full-size layers from ``supernet_plan(space)``, the active widths from ``network_plan(space,
arch)``. :meth:`Supernet.set_active` picks the subnet that ``forward`` runs;
:func:`gen5nas.supernet.extract_subnet` cuts it out as a static network.

The stem and stages are :class:`ElasticBackbone`, the part every task's supernet shares (the
detector, :mod:`gen5nas.detection`, puts its neck and head on it instead of the classifier);
:func:`gen5nas.supernet.extract_backbone` cuts out that part alone.
"""

from __future__ import annotations

from typing import cast

import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.spec import Arch, SearchSpace
from gen5nas.spec.plan import (
    IMAGE_CHANNELS,
    STEM_KERNEL,
    STEM_STRIDE,
    NetworkPlan,
    network_plan,
    supernet_plan,
)
from gen5nas.supernet.blocks import DynamicConvBNAct, DynamicMBConv
from gen5nas.supernet.ops import DynamicLinear


def resize_input(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``x`` at ``size`` (bilinear, no corner alignment), as it is when it already is."""
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x


class ElasticBackbone(nn.Module):
    """The elastic feature extractor every task's supernet shares: the stem and the stages.

    It holds what the task heads have in common: ``space``, ``activation``, the active arch and
    its plan (:meth:`set_active`, ``set_max``/``set_min``), ``drop_path`` and the gate
    ``dropout_active``, and :meth:`forward_features`. A subclass adds its head after
    ``super().__init__`` and then calls :meth:`_init_weights` and ``set_active(space.max())``
    (in that order, so that a classifier supernet's initial weights for a seed stay what they
    were before this base existed). See :class:`Supernet` for dropout, drop-path and the
    initialisation.
    """

    def __init__(
        self,
        space: SearchSpace,
        activation: str = "relu6",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        self.space = space
        self.activation = activation
        full = supernet_plan(space)
        self.stem = DynamicConvBNAct(
            IMAGE_CHANNELS, full.stem_channels, STEM_KERNEL, STEM_STRIDE, activation
        )
        self.stages = nn.ModuleList(
            nn.ModuleList(DynamicMBConv(block, activation) for block in stage)
            for stage in full.stages
        )
        self.dropout_active = True
        self.drop_path = drop_path
        self._plan = full
        self._active: Arch = space.max()

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
        plan = network_plan(self.space, arch)  # validates first: nothing changes on an error
        self.stem.conv.set_active(out_channels=plan.stem_channels)
        for i, stage in enumerate(plan.stages):
            blocks = self.blocks(i)
            for j, block in enumerate(stage):
                blocks[j].set_active(block)
        self._plan = plan
        self._active = arch

    @property
    def active_plan(self) -> NetworkPlan:
        """The layers of the active subnet (see :func:`gen5nas.spec.plan.network_plan`)."""
        return self._plan

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
        x = self.stem(resize_input(x, self._plan.resolution))
        rate = self.drop_path if self.training and self.dropout_active else 0.0
        depths = self._plan.depths
        last = max(1, sum(depths) - 1)
        index = 0
        features = []
        for blocks, depth in zip(self.stages, depths, strict=True):
            for j in range(depth):
                # a ModuleList (kept typed-cheap here)
                x = blocks[j](x, rate * index / last)  # type: ignore[index]
                index += 1
            features.append(x)
        return features


class Supernet(ElasticBackbone):
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
        super().__init__(space, activation, drop_path)
        self.num_classes = num_classes
        full = self._plan
        self.last = DynamicConvBNAct(full.features_channels, full.last_channels, 1, 1, activation)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(space.arch_setting.last_num_out_channels[1], num_classes)
        self._init_weights()
        self.set_active(self._active)

    def set_active(self, arch: Arch) -> None:
        super().set_active(arch)
        self.last.conv.set_active(out_channels=self._plan.last_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.last(self.forward_features(x)[-1])).flatten(1)
        if self.dropout_active:
            x = self.dropout(x)
        return self.classifier(x)

    def num_active_params(self) -> int:
        """Parameters of the active subnet (as extracted)."""
        from gen5nas.supernet.extract import extract_subnet

        return sum(p.numel() for p in extract_subnet(self, self._active).parameters())

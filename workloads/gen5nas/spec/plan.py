"""The plan of a subnet's layers: every width, kernel, stride and skip, decided once (torch-free).

:func:`network_plan` turns (space, arch) into a :class:`NetworkPlan` (timm's ``decode_arch_def``
idea): the stem's width, each block's in/mid/out widths, kernel, stride, whether it has an
expand conv and whether it is residual, the last conv's width and the input resolution. The
supernet (``gen5nas.supernet``: its full-size layers and ``set_active``), the static subnet it
extracts, and the estimator's torch-free ONNX graph (``gen5nas.estimator.arch_graph``) all
read their layers from it, so they cannot disagree about the network.

The layout is MobileNetV2's (torchvision's, made elastic): a 3x3/2 stem conv, one stage per
``arch_setting`` entry of inverted-residual blocks (the stage's stride on its first block), a
1x1 conv to ``last_num_out_channels``, then the task's head. Also here, because the supernet
and the ONNX graph both need them without a second copy: the activation names
(:class:`Activation`) and :func:`make_divisible`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gen5nas.spec.space import Arch, SearchSpace

IMAGE_CHANNELS = 3
STEM_KERNEL = 3
STEM_STRIDE = 2


# The activations a supernet may use (one per network, after every conv but the project). No
# docstring: pydantic would put it in the CRDs as the field's description.
class Activation(StrEnum):
    relu6 = "relu6"
    relu = "relu"
    hswish = "hswish"
    silu = "silu"


ACTIVATIONS: tuple[str, ...] = tuple(a.value for a in Activation)


def check_activation(name: str) -> Activation:
    """``name`` as an :class:`Activation`; ``ValueError`` naming the allowed ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {list(ACTIVATIONS)}")
    return Activation(name)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor``, never below it nor 10% below ``value``
    (torchvision's ``_make_divisible``; monotonic, so a smaller subnet never gets more)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class BlockPlan:
    """One inverted residual: [1x1 expand] -> kxk depthwise (stride) -> 1x1 project."""

    stage: int
    index: int  # within the stage
    in_channels: int
    mid_channels: int  # the depthwise conv's width: in_channels when there is no expand conv
    out_channels: int
    kernel_size: int
    stride: int
    expand: bool  # a 1x1 expand conv exists (the stage's largest ratio is > 1)
    residual: bool  # the skip is taken: stride 1 and in_channels == out_channels


@dataclass(frozen=True)
class NetworkPlan:
    resolution: tuple[int, int]
    stem_channels: int
    stages: tuple[tuple[BlockPlan, ...], ...]
    last_channels: int

    @property
    def blocks(self) -> tuple[BlockPlan, ...]:
        return tuple(block for stage in self.stages for block in stage)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(len(stage) for stage in self.stages)

    @property
    def features_channels(self) -> int:
        """The width the last conv is fed: the last block's output."""
        return self.stages[-1][-1].out_channels


def _plan(
    space: SearchSpace, arch: Arch, ratios: list[float], resolution: tuple[int, int]
) -> NetworkPlan:
    setting = space.arch_setting
    width = arch.first_num_out_channels
    stages = []
    for i, stage in enumerate(arch.stages):
        # The expand conv exists iff the stage's largest ratio is > 1, whatever the active one:
        # the supernet has one set of layers per stage, which every depth of it shares.
        expand = max(setting.expand_ratio[i].values()) > 1
        blocks = []
        for j in range(stage.num_blocks):
            stride = setting.stride[i] if j == 0 else 1
            out = stage.num_out_channels
            blocks.append(
                BlockPlan(
                    stage=i,
                    index=j,
                    in_channels=width,
                    mid_channels=make_divisible(width * ratios[i]) if expand else width,
                    out_channels=out,
                    kernel_size=stage.kernel_size,
                    stride=stride,
                    expand=expand,
                    residual=stride == 1 and width == out,
                )
            )
            width = out
        stages.append(tuple(blocks))
    return NetworkPlan(
        resolution=resolution,
        stem_channels=arch.first_num_out_channels,
        stages=tuple(stages),
        last_channels=arch.last_num_out_channels,
    )


def network_plan(space: SearchSpace, arch: Arch) -> NetworkPlan:
    """The layers of ``arch``'s subnet; :class:`gen5nas.errors.ArchError` when it is outside
    ``space``. Each block's mid width is ``make_divisible(in_channels * expand_ratio)``."""
    space.check(arch)
    ratios = [stage.expand_ratio for stage in arch.stages]
    return _plan(space, arch, ratios, arch.resolution)


def supernet_plan(space: SearchSpace) -> NetworkPlan:
    """The supernet's full-size layers: :func:`network_plan` of ``space.max()``, except that a
    stage's mid width is sized for the largest ratio of its table, which need not be the one at
    its largest depth (the CompOFA table is not required to grow with the depth)."""
    setting = space.arch_setting
    ratios = [max(table.values()) for table in setting.expand_ratio]
    return _plan(space, space.max(), ratios, space.max_resolution())

"""The supernet's elastic blocks, built and set from a :class:`gen5nas.spec.plan.BlockPlan`.

A block is made once from the supernet plan's block (its full-size layers) and told which
subnet to run by the active arch's plan of the same block: every width, the kernel and the
skip come from the plan, none is worked out here.
"""

from __future__ import annotations

from torch import Tensor, nn

from gen5nas.spec.plan import BlockPlan
from gen5nas.supernet.ops import (
    DynamicBatchNorm2d,
    DynamicConv2d,
    copy_activation,
    drop_path,
    make_activation,
)
from gen5nas.supernet.static import StaticMBConv


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

    ``full`` is the block's plan in the supernet plan (its largest widths and kernel); the
    expand conv exists iff ``full.expand`` and is then used by every subnet, whatever its
    ratio. :meth:`set_active` takes the same block's plan for the subnet to run.
    """

    def __init__(self, full: BlockPlan, activation: str) -> None:
        super().__init__()
        self.stride = full.stride
        self.has_expand = full.expand
        self.expand = (
            DynamicConvBNAct(full.in_channels, full.mid_channels, 1, 1, activation)
            if full.expand
            else None
        )
        mid = full.mid_channels
        self.depthwise = DynamicConvBNAct(
            mid, mid, full.kernel_size, full.stride, activation, depthwise=True
        )
        self.project = DynamicConvBNAct(mid, full.out_channels, 1, 1, None)
        self.active = full

    def set_active(self, block: BlockPlan) -> None:
        """Run ``block``: a plan of this same block (same stride and expand conv, widths and
        kernel no larger than the full-size ones; the convs refuse anything larger)."""
        if (block.stride, block.expand) != (self.stride, self.has_expand):
            raise ValueError(
                f"block plan stage {block.stage} index {block.index} (stride {block.stride}, "
                f"expand {block.expand}) is not this block's (stride {self.stride}, "
                f"expand {self.has_expand})"
            )
        if self.expand is not None:
            self.expand.conv.set_active(out_channels=block.mid_channels)
        self.depthwise.conv.set_active(kernel_size=block.kernel_size)
        self.project.conv.set_active(out_channels=block.out_channels)
        self.active = block

    def forward(self, x: Tensor, drop_prob: float = 0.0) -> Tensor:
        """``drop_prob``: stochastic depth of the residual branch (ignored without the skip)."""
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        if self.active.residual:
            out = drop_path(out, drop_prob) + x
        return out

    def to_static(self) -> StaticMBConv:
        block = self.active
        layers: list[nn.Module] = []
        if self.expand is not None:
            layers.append(self.expand.to_static(block.in_channels))
        layers.append(self.depthwise.to_static(block.mid_channels))
        layers.append(self.project.to_static(block.mid_channels))
        return StaticMBConv(nn.Sequential(*layers), block.residual)

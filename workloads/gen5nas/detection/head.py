"""The FCOS head (Tian et al. 2019), shared by every level, kept light for small images.

Two towers of ``num_convs`` 3x3 conv + GroupNorm + activation, one for classification, one for
the box; then class logits (per class, sigmoid; the bias starts at the focal-loss prior
-log((1 - p) / p), p = 0.01, so the many background locations start with a small loss), and
from the box tower the ltrb regression and the centerness logit (the FCOS-v2 placement). The
regression is softplus(scale_l * x), positive and in units of the level's stride, scale_l one
learned scalar per level; :mod:`.model` multiplies it by the stride in image pixels.
GroupNorm, not BatchNorm, in the towers: the levels share the towers, so BN statistics would
mix levels of very different sizes (FCOS uses GN for this reason).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gen5nas.supernet.ops import make_activation

PRIOR_PROB = 0.01


def _groups(channels: int) -> int:
    """At most 8 GroupNorm groups that divide ``channels``."""
    return math.gcd(channels, 8)


def _tower(channels: int, num_convs: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(num_convs):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.GroupNorm(_groups(channels), channels),
            make_activation(activation),
        ]
    return nn.Sequential(*layers)


def _flatten(x: Tensor) -> Tensor:
    """(N, C, H, W) -> (N, H * W, C), row-major locations (the order of the point grid)."""
    n, c = x.shape[:2]
    return x.permute(0, 2, 3, 1).reshape(n, -1, c)


class FCOSHead(nn.Module):
    def __init__(
        self,
        channels: int,
        num_classes: int,
        num_levels: int,
        num_convs: int = 1,
        activation: str = "relu6",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_tower = _tower(channels, num_convs, activation)
        self.box_tower = _tower(channels, num_convs, activation)
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_regression = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))

    def reset_parameters(self) -> None:
        """FCOS's initialisation: convs N(0, 0.01), zero biases, the class prior bias."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        assert self.cls_logits.bias is not None
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        nn.init.ones_(self.scales)

    def forward(self, features: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(cls_logits (N, A, C), box (N, A, 4) in strides, centerness (N, A, 1))``."""
        cls, box, ctr = [], [], []
        for level, x in enumerate(features):
            c = self.cls_tower(x)
            b = self.box_tower(x)
            cls.append(_flatten(self.cls_logits(c)))
            box.append(_flatten(F.softplus(self.scales[level] * self.box_regression(b))))
            ctr.append(_flatten(self.centerness(b)))
        return torch.cat(cls, 1), torch.cat(box, 1), torch.cat(ctr, 1)

"""The static (plain PyTorch) network a subnet becomes once extracted from the supernet.

Only ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``, activations, pooling and dropout: no
elastic code, no input resizing (feed it ``arch.resolution``). Exports to ONNX as is.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from gen5nas.spec import Arch


class StaticMBConv(nn.Module):
    """An inverted residual block: ``layers`` (expand?, depthwise, project) plus the skip."""

    def __init__(self, layers: nn.Sequential, residual: bool) -> None:
        super().__init__()
        self.layers = layers
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return out + x if self.residual else out

    def extra_repr(self) -> str:
        return f"residual={self.residual}"


class StaticBackbone(nn.Module):
    """The stem and stages of a subnet (``stem``, ``stage0`` ... ``stage{N-1}``, each stage an
    ``nn.Sequential`` of :class:`StaticMBConv`): the feature extractor a task's head sits on."""

    def __init__(self, arch: Arch, stem: nn.Module, stages: list[nn.Sequential]) -> None:
        super().__init__()
        self.stem = stem
        for i, stage in enumerate(stages):
            self.add_module(f"stage{i}", stage)
        self.arch = arch
        self.num_stages = len(stages)

    def stage(self, i: int) -> nn.Sequential:
        return cast(nn.Sequential, getattr(self, f"stage{i}"))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Each stage's output, as :meth:`Supernet.forward_features` (input at arch.resolution)."""
        x = self.stem(x)
        features = []
        for i in range(self.num_stages):
            x = self.stage(i)(x)
            features.append(x)
        return features


class StaticSubnet(nn.Sequential):
    """A subnet as an ``nn.Sequential``: ``stem``, ``stage0`` ... ``stage{N-1}`` (each an
    ``nn.Sequential`` of :class:`StaticMBConv`), ``last`` (1x1 conv + BN + act), ``pool``,
    ``flatten``, ``dropout``, ``classifier``. ``arch`` is the architecture it was cut as."""

    def __init__(
        self,
        arch: Arch,
        stem: nn.Module,
        stages: list[nn.Sequential],
        last: nn.Module,
        dropout: float,
        classifier: nn.Linear,
    ) -> None:
        super().__init__()
        self.add_module("stem", stem)
        for i, stage in enumerate(stages):
            self.add_module(f"stage{i}", stage)
        self.add_module("last", last)
        self.add_module("pool", nn.AdaptiveAvgPool2d(1))
        self.add_module("flatten", nn.Flatten(1))
        self.add_module("dropout", nn.Dropout(dropout))
        self.add_module("classifier", classifier)
        self.arch = arch
        self.num_stages = len(stages)

    def stage(self, i: int) -> nn.Sequential:
        return cast(nn.Sequential, getattr(self, f"stage{i}"))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Each stage's output, as :meth:`Supernet.forward_features` (input at arch.resolution)."""
        x = cast(nn.Module, self.stem)(x)
        features = []
        for i in range(self.num_stages):
            x = self.stage(i)(x)
            features.append(x)
        return features

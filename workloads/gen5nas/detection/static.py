"""The static detector of one arch: plain modules only (a
:class:`~gen5nas.supernet.static.StaticBackbone`, the FPN with static laterals, the head).

Unlike a static classifier it takes images of any size, resized to ``arch.resolution`` as the
supernet does (``resizes_input``), and answers in the pixels of the image it was fed: its raw
outputs and point grid are the supernet's for the same arch and input. Fed ``arch.resolution``
(the ONNX export) it resizes nothing.
"""

from __future__ import annotations

from torch import Tensor, nn

from gen5nas.detection.head import FCOSHead
from gen5nas.detection.levels import FeatureLevel, point_grid
from gen5nas.detection.model import DetectorRaw, raw_outputs
from gen5nas.detection.neck import FPN
from gen5nas.spec import Arch
from gen5nas.supernet.model import resize_input
from gen5nas.supernet.static import StaticBackbone


class StaticDetector(nn.Module):
    resizes_input = True  # the search's evaluator feeds it the loader's images as they are

    def __init__(
        self,
        arch: Arch,
        backbone: StaticBackbone,
        neck: FPN,
        head: FCOSHead,
        levels: tuple[FeatureLevel, ...],
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.arch = arch
        self.levels = levels
        self.num_classes = head.num_classes

    def point_grid(self, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(points, strides)`` for ``image_hw`` images (see :mod:`gen5nas.detection.levels`)."""
        return point_grid(self.levels, self.arch.resolution, image_hw)

    def forward(self, x: Tensor) -> DetectorRaw:
        image_hw = (int(x.shape[-2]), int(x.shape[-1]))
        features = self.backbone.forward_features(resize_input(x, self.arch.resolution))
        maps = self.neck([features[lv.stage] for lv in self.levels])
        return raw_outputs(self.head, maps, self.levels, self.arch.resolution, image_hw)

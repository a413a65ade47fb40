"""The detection supernet: the elastic MBConv backbone, a fixed FPN neck and a fixed FCOS head.

Only the backbone is searched (:class:`~gen5nas.supernet.model.ElasticBackbone`: the same stem,
stages, search space and ``set_active`` as the classifier); the neck (:mod:`.neck`) takes the
last stage of each of the last three output strides (:mod:`.levels`) through elastic 1x1
laterals, so every arch's widths fit, and the head (:mod:`.head`) is shared by the levels.

``forward(images) -> DetectorRaw`` is the same in train and eval mode; nothing after the head
(score threshold, NMS) is in the model: :mod:`.postprocess` does it. Like the classifier, the
supernet resizes its input to the active resolution; the raw outputs are in the pixels of the
image it was fed (:mod:`.levels`), so one loader at the largest resolution serves every subnet
and the losses, the decoding and COCO's coordinates never need to know the subnet's resolution.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from gen5nas.detection.head import FCOSHead
from gen5nas.detection.levels import FeatureLevel, feature_levels, point_grid
from gen5nas.detection.neck import FPN
from gen5nas.spec import Arch, SearchSpace
from gen5nas.supernet.model import ElasticBackbone

NECK_CHANNELS = 32
HEAD_CONVS = 1


class DetectorRaw(NamedTuple):
    """A detector's dense output for N images at A locations (all levels, finest first)."""

    cls_logits: Tensor  # (N, A, C) per-class logits (sigmoid)
    box_regression: Tensor  # (N, A, 4) distances left, top, right, bottom, image pixels, > 0
    centerness: Tensor  # (N, A, 1) logit
    points: Tensor  # (A, 2) x, y of each location, image pixels (constant, no gradient)
    strides: Tensor  # (A, 2) its level's stride along x, y, image pixels (constant)


def raw_outputs(
    head: FCOSHead,
    maps: list[Tensor],
    levels: tuple[FeatureLevel, ...],
    resolution: tuple[int, int],
    image_hw: tuple[int, int],
) -> DetectorRaw:
    """The head on the neck's ``maps`` of a network at ``resolution`` fed ``image_hw`` images."""
    cls, box, ctr = head(maps)
    points, strides = point_grid(levels, resolution, image_hw, device=cls.device)
    if points.shape[0] != cls.shape[1]:
        raise RuntimeError(
            f"the head gave {cls.shape[1]} locations, the level grid {points.shape[0]}"
        )
    box = box * strides.repeat(1, 2).to(box.dtype)  # (sx, sy) -> (sx, sy, sx, sy)
    return DetectorRaw(cls, box, ctr, points, strides)


class DetectionSupernet(ElasticBackbone):
    """Every subnet of ``space`` as a detector with shared weights (see the module docstring).

    The steps' surface of :class:`~gen5nas.supernet.Supernet`: ``space``, ``num_classes``,
    ``activation``, ``set_active``/``set_max``/``set_min``, ``active_arch``, ``active_plan``,
    ``dropout_active``, ``drop_path``, :meth:`num_active_params`. ``dropout`` is accepted and
    kept (``dropout_rate``) for the task interface, but no layer uses it: a dense head has no
    pooled vector to drop, and FCOS uses none. ``drop_path`` works as in the classifier.
    The arch's ``last_num_out_channels`` is unused (there is no last 1x1 conv).
    """

    def __init__(
        self,
        space: SearchSpace,
        num_classes: int,
        *,
        activation: str = "relu6",
        dropout: float = 0.2,
        drop_path: float = 0.0,
        neck_channels: int = NECK_CHANNELS,
        head_convs: int = HEAD_CONVS,
    ) -> None:
        super().__init__(space, activation, drop_path)
        self.num_classes = num_classes
        self.dropout_rate = dropout
        self.levels = feature_levels(space)
        full = self._plan
        widths = [full.stages[lv.stage][-1].out_channels for lv in self.levels]
        self.neck = FPN.elastic(widths, neck_channels, activation)
        self.head = FCOSHead(neck_channels, num_classes, len(self.levels), head_convs, activation)
        self._init_weights()
        self.head.reset_parameters()
        self.set_active(self._active)

    def level_widths(self, arch: Arch | None = None) -> list[int]:
        """The stage widths the neck receives for ``arch`` (default: the active one)."""
        stages = (arch or self._active).stages
        return [stages[lv.stage].num_out_channels for lv in self.levels]

    def point_grid(self, image_hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """``(points, strides)`` of the active subnet fed ``image_hw`` images (:mod:`.levels`)."""
        return point_grid(self.levels, self._plan.resolution, image_hw)

    def forward(self, x: Tensor) -> DetectorRaw:
        image_hw = (int(x.shape[-2]), int(x.shape[-1]))
        features = self.forward_features(x)
        maps = self.neck([features[lv.stage] for lv in self.levels])
        return raw_outputs(self.head, maps, self.levels, self._plan.resolution, image_hw)

    def num_active_params(self) -> int:
        """Parameters of the active subnet (as extracted: backbone, neck and head)."""
        from gen5nas.detection.extract import extract_detector

        return sum(p.numel() for p in extract_detector(self, self._active).parameters())

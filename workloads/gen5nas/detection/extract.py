"""Cut one arch's detector out of the detection supernet: the backbone as the classifier's
extraction cuts it (:func:`gen5nas.supernet.extract_backbone`), the neck's laterals for the
arch's stage widths, the fixed rest copied."""

from __future__ import annotations

import copy

from gen5nas.detection.model import DetectionSupernet
from gen5nas.detection.static import StaticDetector
from gen5nas.spec import Arch
from gen5nas.supernet.extract import extract_backbone


def extract_detector(supernet: DetectionSupernet, arch: Arch) -> StaticDetector:
    """A :class:`StaticDetector` for ``arch``, weights and BN running stats copied (no storage
    shared), in the supernet's train/eval mode; :class:`gen5nas.errors.ArchError` when ``arch``
    is outside the space (the supernet's active arch is left as it was)."""
    backbone = extract_backbone(supernet, arch)  # validates the arch first
    neck = supernet.neck.to_static(supernet.level_widths(arch))
    head = copy.deepcopy(supernet.head)
    detector = StaticDetector(arch, backbone, neck, head, supernet.levels)
    return detector.train(supernet.training)

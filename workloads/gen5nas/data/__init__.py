"""Datasets: a checked, fault-tolerant ImageFolder loader, the digits demo data, a synthetic
tree generator and the generated scenes (all ImageFolder trees; the scenes also as COCO boxes
and masks), COCO-format detection data, and ``build_loaders`` / ``build_detection_loaders``
used by train, search and retrain.

Where each concern lives: ``imagefolder`` (the checked loader), ``loaders`` (``build_loaders``,
sharding), ``transforms`` (augmentation), ``coco`` (checked COCO files, the detection dataset,
collate and ``build_detection_loaders``), ``det_transforms`` (flip, scale jitter, letterbox
with the boxes), ``generate`` (digits, synthetic trees, atomic tree writing), ``scenes`` (a
scene's settings, categories and drawing), ``scene_paint`` (shapes, textures, backgrounds,
clutter, occluders), ``scene_writer`` (the ImageFolder tree, masks and COCO annotations on
disk).
"""

from gen5nas.data.generate import write_digits, write_synthetic
from gen5nas.data.imagefolder import (
    Batch,
    ImageFolderDataset,
    batch_to,
    collate_skipping,
    scan_imagefolder,
)
from gen5nas.data.loaders import DataLoaders, ShardSampler, build_loaders, dist_info
from gen5nas.data.scene_writer import write_scenes
from gen5nas.data.scenes import SceneSettings
from gen5nas.data.transforms import AugmentConfig

__all__ = [
    "AugmentConfig",
    "Batch",
    "DataLoaders",
    "ImageFolderDataset",
    "SceneSettings",
    "ShardSampler",
    "batch_to",
    "build_loaders",
    "collate_skipping",
    "dist_info",
    "scan_imagefolder",
    "write_digits",
    "write_scenes",
    "write_synthetic",
]

"""An ImageFolder dataset that checks its tree before training and survives bad images.

``scan_imagefolder`` validates a ``<root>/<class>/<image>`` tree up front (missing directory,
no classes, a class with no images: a :class:`SpecError` naming the path), so a bad dataset
fails before any compute is spent. At load time an unreadable image (truncated, not an image)
is skipped and counted instead of killing a multi-day run: in training the next readable
image takes its place (every rank keeps the same batch size, which DDP needs), in validation
it is dropped. The count travels with each batch (see :func:`collate_skipping`), so it is
exact with any number of loader workers.

Augmentation is seeded per sample: the sampler hands out ``(index, seed)`` keys and the
random crop/flip of that sample draws from ``seed`` alone. The images a step sees therefore
depend only on (seed, epoch, position), not on the number of workers or on where a run was
interrupted, which is what makes a resumed run bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from gen5nas.errors import SpecError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# Tries before a training sample gives up on finding a readable neighbour.
_MAX_SUBSTITUTES = 16


@dataclass(frozen=True)
class ImageFolderIndex:
    """The files of one split: ``samples[i] = (path, class_index)``."""

    root: Path
    classes: list[str]
    samples: list[tuple[str, int]]


def scan_imagefolder(
    root: str | Path, classes: Sequence[str] | None = None, field: str = "dataset.path"
) -> ImageFolderIndex:
    """Index ``root/<class>/*.<image ext>``; refuse a missing dir, no classes, an empty class.

    ``classes`` (e.g. the training split's) must match the folders found: a validation split
    with a different class list would silently mislabel every image.
    """
    root = Path(root)
    if not root.is_dir():
        raise SpecError(f"directory not found: {root}", field=field)
    found = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise SpecError(
            f"{root} has no class folders; expected the ImageFolder layout "
            f"{root}/<class>/<image>.jpg",
            field=field,
        )
    if classes is not None and list(classes) != found:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        raise SpecError(
            f"{root} has different classes from the training split: missing {missing[:5]}, "
            f"extra {extra[:5]} (both splits need the same class folders)",
            field=field,
        )
    samples: list[tuple[str, int]] = []
    empty = []
    for index, name in enumerate(found):
        files = sorted(
            entry.path
            for entry in os.scandir(root / name)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not files:
            empty.append(name)
        samples.extend((path, index) for path in files)
    if empty:
        raise SpecError(
            f"{len(empty)} class folder(s) under {root} hold no images ({', '.join(empty[:5])}"
            f"{', ...' if len(empty) > 5 else ''}); allowed extensions: "
            f"{', '.join(IMAGE_EXTENSIONS)}",
            field=field,
        )
    return ImageFolderIndex(root, found, samples)


def load_rgb(path: str) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")  # convert() loads the pixels: a truncated file fails here


SampleKey = int | tuple[int, int]
Item = tuple[Tensor, int, int] | None  # (image, target, unreadable images skipped) or dropped


def split_key(key: SampleKey) -> tuple[int, int | None]:
    """(index, augmentation seed or None) of a sampler key."""
    return (key, None) if isinstance(key, int) else key


def read_substituting(
    path_of: Callable[[int], str], i: int, n: int, substitute: bool
) -> tuple[Image.Image, int, int] | None:
    """Sample ``i``'s image as (image, index read, unreadable images skipped). Unreadable:
    with ``substitute`` the next readable sample (of ``n``, wrapping) takes its place, else
    None."""
    skipped = 0
    for attempt in range(_MAX_SUBSTITUTES if substitute else 1):
        j = (i + attempt) % n
        path = path_of(j)
        try:
            return load_rgb(path), j, skipped
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
            skipped += 1
            log.warning("skipping unreadable image %s: %s", path, exc)
    if substitute:
        raise RuntimeError(
            f"{_MAX_SUBSTITUTES} consecutive unreadable images from {path_of(i)}: "
            "the dataset looks broken"
        )
    return None


class ImageFolderDataset(Dataset[Item]):
    """Samples of an :class:`ImageFolderIndex` through ``transform``.

    Keys are ``index`` or ``(index, seed)``; with a seed the transform's randomness comes from
    it alone. ``substitute_unreadable``: training replaces an unreadable image by the next
    readable one; validation returns ``None`` (dropped by :func:`collate_skipping`).
    """

    def __init__(
        self,
        index: ImageFolderIndex,
        transform: Callable[[Image.Image], Tensor],
        substitute_unreadable: bool,
        subset: Sequence[int] | None = None,
    ) -> None:
        self.index = index
        self.transform = transform
        self.substitute_unreadable = substitute_unreadable
        self.subset = list(subset) if subset is not None else None

    @property
    def classes(self) -> list[str]:
        return self.index.classes

    def __len__(self) -> int:
        return len(self.subset) if self.subset is not None else len(self.index.samples)

    def targets(self) -> list[int]:
        return [self._sample(i)[1] for i in range(len(self))]

    def _sample(self, i: int) -> tuple[str, int]:
        return self.index.samples[self.subset[i] if self.subset is not None else i]

    def __getitem__(self, key: SampleKey) -> Item:
        i, seed = split_key(key)
        read = read_substituting(
            lambda j: self._sample(j)[0], i, len(self), self.substitute_unreadable
        )
        if read is None:
            return None
        img, used, skipped = read
        return self._transform(img, seed), self._sample(used)[1], skipped

    def _transform(self, img: Image.Image, seed: int | None) -> Tensor:
        if seed is None:
            return self.transform(img)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(img)


@dataclass
class Batch:
    images: Tensor
    targets: Tensor
    skipped: int  # unreadable images met while building this batch
    # Per-image facts a task needs beside the targets (detection: image id and the resize that
    # maps network-input boxes back to the original image); None for classification.
    meta: Tensor | None = None

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def pin_memory(self) -> Batch:
        meta = None if self.meta is None else self.meta.pin_memory()
        return Batch(self.images.pin_memory(), self.targets.pin_memory(), self.skipped, meta)


def collate_skipping(items: Sequence[Item]) -> Batch:
    """Stack the readable items; count the unreadable ones (dropped or substituted)."""
    kept = [item for item in items if item is not None]
    skipped = len(items) - len(kept) + sum(item[2] for item in kept)
    if not kept:
        return Batch(torch.empty(0, 3, 1, 1), torch.empty(0, dtype=torch.long), skipped)
    return Batch(
        torch.stack([item[0] for item in kept]),
        torch.tensor([item[1] for item in kept], dtype=torch.long),
        skipped,
    )


def batch_to(batch: Batch | Any, device: torch.device, channels_last: bool = False) -> Batch:
    """Move a batch to ``device`` (non-blocking from pinned memory)."""
    images = batch.images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    meta = getattr(batch, "meta", None)  # stays on the CPU: read by host-side evaluation
    return Batch(images, batch.targets.to(device, non_blocking=True), batch.skipped, meta)

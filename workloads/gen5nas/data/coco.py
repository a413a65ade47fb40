"""COCO-format detection data: a checked annotation file, a dataset, a collate and
``build_detection_loaders`` (the detection counterpart of ``loaders.build_loaders``).

A split is an images folder and an instances json. Both are checked before any work, and a
bad file is a :class:`SpecError` naming the file, the JSON field and the spec field: a missing
file, one over :data:`MAX_ANNOTATION_BYTES` (refused before parsing: json holds several times
its size in memory, on every rank), not JSON, a wrong structure, an image file that does not
exist, a box outside its image (beyond :data:`BOX_TOLERANCE` pixels; within it the box is
clipped), a category id that is not in ``categories``, duplicate ids. An image without
annotations is kept (a negative example, as COCO does). A missing ``area`` is the box's,
a missing ``iscrowd`` is 0; crowd boxes are no training targets (COCOeval ignores them).

Layouts: kind ``coco`` reads ``<path>/train`` + ``<path>/annotations/instances_train.json``
and ``<path>/val`` + ``<path>/annotations/instances_val.json``, or the files the spec's
``coco`` settings name (relative to ``path``); kind ``scenes`` reads the generated tree's
COCO files (``scene_writer``). Categories, sorted by id, are the contiguous class indices.

Samples are ``(image, targets (K, 5), meta (4,), skipped)`` (see ``det_transforms`` for the
geometry); :func:`collate_detection` pads them into the detection :class:`Batch`. Unreadable
images are substituted in training and dropped in validation, and counted, as in
``imagefolder``. The datasets keep compact arrays, not the parsed json (loader workers fork
them); the validation dataset also keeps its images' ground truth as a pycocotools ``COCO``
(``.coco``) for COCOeval.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from gen5nas.data.det_transforms import DetectionAugment, Placed, train_transform, val_transform
from gen5nas.data.imagefolder import Batch, SampleKey, read_substituting, split_key
from gen5nas.data.loaders import DataLoaders, assemble_loaders, prepare_dataset, sample_subset
from gen5nas.errors import SpecError
from gen5nas.spec.common import DatasetKind, DatasetSpec

# COCO 2017's train file is 448 MiB, LVIS v1's 1.1 GiB; parsing holds several times the size.
MAX_ANNOTATION_BYTES = 2 * 1024**3
# Float slack (pixels) for a box edge beyond its image: annotation tools round.
BOX_TOLERANCE = 1.0

SPLITS = ("train", "val")

DetectionItem = tuple[Tensor, Tensor, Tensor, int] | None  # image, targets, meta, skipped


@dataclass(frozen=True)
class CocoFiles:
    """Where one split lives, and the spec fields that name each path (for errors)."""

    images: Path
    annotations: Path
    images_field: str
    annotations_field: str


def coco_files(spec: DatasetSpec, root: Path, split: str) -> CocoFiles:
    """The images folder and annotation file of ``split``: the spec's ``coco`` settings when
    given (relative to ``root``), else the COCO layout (the scenes tree uses it too)."""
    images: Path = root / split
    annotations: Path = root / "annotations" / f"instances_{split}.json"
    images_field = annotations_field = "dataset.path"
    settings = spec.coco if spec.kind == DatasetKind.coco else None
    if settings is not None:
        named = settings.train_images if split == "train" else settings.val_images
        images, images_field = root / named, f"dataset.coco.{split}Images"
        named = settings.train_annotations if split == "train" else settings.val_annotations
        annotations, annotations_field = root / named, f"dataset.coco.{split}Annotations"
    return CocoFiles(images, annotations, images_field, annotations_field)


@dataclass(frozen=True)
class CocoSplit:
    """A checked split as arrays: image ``i`` is ``paths[i]`` with id ``image_ids[i]`` and
    boxes ``boxes[starts[i]:starts[i + 1]]`` (xyxy, original pixels, crowds left out)."""

    files: CocoFiles
    categories: list[tuple[int, str]]  # (COCO id, name), sorted by id
    image_ids: np.ndarray  # int64 (I,)
    paths: np.ndarray  # str (I,)
    starts: np.ndarray  # int64 (I + 1,)
    boxes: np.ndarray  # float32 (M, 4)
    labels: np.ndarray  # int64 (M,), contiguous
    raw: dict[str, Any] | None  # the checked json, when kept for the ground truth

    def __len__(self) -> int:
        return len(self.image_ids)


class _Problem(Exception):
    """A defect at a JSON path of the annotation file."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _records(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    if key not in data:
        raise _Problem(key, "missing (a COCO instances file has images, annotations, categories)")
    records = data[key]
    if not isinstance(records, list):
        raise _Problem(key, f"must be a list, got {type(records).__name__}")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise _Problem(f"{key}[{i}]", f"must be an object, got {type(record).__name__}")
    return records


def _field(record: dict[str, Any], where: str, name: str, ok: Any, allowed: str) -> Any:
    value = record.get(name)
    if not ok(value):
        got = "missing" if name not in record else repr(value)[:60]
        raise _Problem(f"{where}.{name}", f"{got}; expected {allowed}")
    return value


def _check(data: Any) -> tuple[list[tuple[int, str]], dict[int, dict[str, Any]]]:
    """Check the structure; complete ``area``/``iscrowd``; clip boxes within the tolerance.
    Returns the categories and the images by id."""
    if not isinstance(data, dict):
        raise _Problem("top level", "must be an object with images, annotations, categories")
    categories: dict[int, str] = {}
    for i, cat in enumerate(_records(data, "categories")):
        cid = _field(cat, f"categories[{i}]", "id", _int, "an integer")
        name = _field(cat, f"categories[{i}]", "name", lambda v: isinstance(v, str), "a string")
        if cid in categories:
            raise _Problem(f"categories[{i}].id", f"{cid} appears twice")
        categories[cid] = name
    if not categories:
        raise _Problem("categories", "is empty; detection needs at least one category")
    images: dict[int, dict[str, Any]] = {}
    for i, img in enumerate(_records(data, "images")):
        where = f"images[{i}]"
        iid = _field(img, where, "id", _int, "an integer")
        _field(img, where, "file_name", lambda v: isinstance(v, str) and v, "a file name")
        for name in ("width", "height"):
            _field(img, where, name, lambda v: _number(v) and v > 0, "a positive number")
        if iid in images:
            raise _Problem(f"{where}.id", f"{iid} appears twice")
        images[iid] = img
    if not images:
        raise _Problem("images", "is empty; a split needs at least one image")
    seen: set[int] = set()
    for i, ann in enumerate(_records(data, "annotations")):
        where = f"annotations[{i}]"
        aid = _field(ann, where, "id", _int, "an integer")
        if aid in seen:
            raise _Problem(f"{where}.id", f"{aid} appears twice")
        seen.add(aid)
        iid = _field(ann, where, "image_id", lambda v: _int(v) and v in images, "an image id")
        _field(
            ann, where, "category_id", lambda v: _int(v) and v in categories, "an id in categories"
        )
        box = _field(
            ann,
            where,
            "bbox",
            lambda v: isinstance(v, list) and len(v) == 4 and all(map(_number, v)),
            "[x, y, width, height] (4 numbers)",
        )
        x, y, w, h = box
        if w < 0 or h < 0:
            raise _Problem(f"{where}.bbox", f"{box}: negative width or height")
        width, height = images[iid]["width"], images[iid]["height"]
        t = BOX_TOLERANCE
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            raise _Problem(
                f"{where}.bbox",
                f"{box} lies outside its image {iid} ({width}x{height}) by more than {t} px",
            )
        x0, y0 = min(max(x, 0), width), min(max(y, 0), height)
        ann["bbox"] = [x0, y0, min(x + w, width) - x0, min(y + h, height) - y0]
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
        _field(ann, where, "area", lambda v: _number(v) and v >= 0, "a number >= 0")
        ann.setdefault("iscrowd", 0)
        _field(ann, where, "iscrowd", lambda v: v in (0, 1), "0 or 1")
    return sorted(categories.items()), images


def _read_json(files: CocoFiles) -> Any:
    path, field = files.annotations, files.annotations_field
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise SpecError(f"annotation file {path} {what}", field=field)
    size = path.stat().st_size
    if size > MAX_ANNOTATION_BYTES:
        raise SpecError(
            f"annotation file {path} is {size} bytes, over the {MAX_ANNOTATION_BYTES} bytes "
            f"({MAX_ANNOTATION_BYTES / 1024**3:g} GiB) this loader parses",
            field=field,
        )
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"annotation file {path} is not JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}",
            field=field,
        ) from None
    except (ValueError, RecursionError) as exc:
        raise SpecError(f"annotation file {path} is not JSON: {exc}", field=field) from None


def _check_image_files(files: CocoFiles, images: dict[int, dict[str, Any]]) -> np.ndarray:
    """The image paths, in file order; every one must exist (one listing per folder)."""
    if not files.images.is_dir():
        raise SpecError(f"images directory not found: {files.images}", field=files.images_field)
    paths = [files.images / img["file_name"] for img in images.values()]
    listings: dict[Path, set[str]] = {}
    missing = []
    for i, path in enumerate(paths):
        folder = path.parent
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if folder.is_dir() else set()
        if path.name not in listings[folder]:
            missing.append(i)
    if missing:
        first = missing[0]
        name = list(images.values())[first]["file_name"]
        raise SpecError(
            f"{files.annotations}: images[{first}].file_name {name!r}: no such file "
            f"{paths[first]} ({len(missing)} of {len(paths)} referenced images missing)",
            field=files.images_field,
        )
    return np.array([str(p) for p in paths])


def load_coco_split(files: CocoFiles, keep_raw: bool = False) -> CocoSplit:
    """Read and check one split (see the module docstring); ``keep_raw`` keeps the checked
    json (for the ground truth of COCOeval)."""
    data = _read_json(files)
    try:
        categories, images = _check(data)
    except _Problem as exc:
        raise SpecError(f"{files.annotations}: {exc}", field=files.annotations_field) from None
    paths = _check_image_files(files, images)
    contiguous = {cid: k for k, (cid, _) in enumerate(categories)}
    per_image: dict[int, list[dict[str, Any]]] = {iid: [] for iid in images}
    for ann in data["annotations"]:
        if not ann["iscrowd"]:
            per_image[ann["image_id"]].append(ann)
    counts = [len(anns) for anns in per_image.values()]
    starts = np.zeros(len(images) + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    boxes = np.zeros((int(starts[-1]), 4), np.float32)
    labels = np.zeros(int(starts[-1]), np.int64)
    row = 0
    for anns in per_image.values():
        for ann in anns:
            x, y, w, h = ann["bbox"]
            boxes[row] = (x, y, x + w, y + h)
            labels[row] = contiguous[ann["category_id"]]
            row += 1
    return CocoSplit(
        files,
        categories,
        np.fromiter(images, np.int64, len(images)),
        paths,
        starts,
        boxes,
        labels,
        data if keep_raw else None,
    )


def coco_ground_truth(data: dict[str, Any], image_ids: Sequence[int] | None = None) -> COCO:
    """A pycocotools ``COCO`` of ``data`` (only ``image_ids``' images and boxes if given),
    built without its index-building chatter on stdout."""
    if image_ids is not None:
        keep = set(image_ids)
        data = {
            **data,
            "images": [img for img in data["images"] if img["id"] in keep],
            "annotations": [ann for ann in data["annotations"] if ann["image_id"] in keep],
        }
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetectionDataset(Dataset[DetectionItem]):
    """Detection samples of a :class:`CocoSplit` at ``resolution`` (H, W).

    ``train``: flip/jitter augmentation seeded by the key's seed, unreadable images substituted;
    else the letterbox and unreadable images dropped (``None``). ``subset``: indices into the
    split. ``.category_ids`` maps contiguous indices to COCO ids; ``.coco`` (validation) is the
    ground truth of exactly the images served.
    """

    def __init__(
        self,
        split: CocoSplit,
        resolution: tuple[int, int],
        *,
        train: bool,
        augment: DetectionAugment | None = None,
        subset: Sequence[int] | None = None,
    ) -> None:
        self.split = split
        self.resolution = resolution
        self.train = train
        self.augment = augment or DetectionAugment()
        self.indices = np.asarray(subset if subset is not None else range(len(split)), np.int64)
        self._coco: COCO | None = None
        if split.raw is not None:
            ids = None if subset is None else split.image_ids[self.indices].tolist()
            self._coco = coco_ground_truth(split.raw, ids)

    @property
    def classes(self) -> list[str]:
        return [name for _, name in self.split.categories]

    @property
    def category_ids(self) -> list[int]:
        return [cid for cid, _ in self.split.categories]

    @property
    def coco(self) -> COCO:
        if self._coco is None:
            raise RuntimeError("this dataset was built without its ground truth (training)")
        return self._coco

    def __len__(self) -> int:
        return len(self.indices)

    def annotations(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4) xyxy original pixels, contiguous labels (K,)) of sample ``i``."""
        j = int(self.indices[i])
        a, b = int(self.split.starts[j]), int(self.split.starts[j + 1])
        return self.split.boxes[a:b], self.split.labels[a:b]

    def __getitem__(self, key: SampleKey) -> DetectionItem:
        i, seed = split_key(key)
        read = read_substituting(
            lambda j: str(self.split.paths[self.indices[j]]), i, len(self), self.train
        )
        if read is None:
            return None
        img, used, skipped = read
        boxes, labels = self.annotations(used)
        placed: Placed
        if self.train:
            generator = None if seed is None else torch.Generator().manual_seed(seed)
            placed = train_transform(img, boxes, labels, self.resolution, self.augment, generator)
        else:
            placed = val_transform(img, boxes, labels, self.resolution)
        targets = torch.cat(
            [
                torch.from_numpy(placed.labels.astype(np.float32)).unsqueeze(1),
                torch.from_numpy(placed.boxes).reshape(-1, 4),
            ],
            dim=1,
        )
        image_id = float(self.split.image_ids[self.indices[used]])
        meta = torch.tensor(
            [image_id, placed.scale, placed.pad_x, placed.pad_y], dtype=torch.float64
        )
        return placed.image, targets, meta, skipped


def collate_detection(items: Sequence[DetectionItem]) -> Batch:
    """The detection :class:`Batch`: targets padded to the batch's most boxes with rows of -1;
    unreadable images counted (dropped or substituted)."""
    kept = [item for item in items if item is not None]
    skipped = len(items) - len(kept) + sum(item[3] for item in kept)
    if not kept:
        return Batch(
            torch.empty(0, 3, 1, 1),
            torch.empty(0, 0, 5),
            skipped,
            torch.empty(0, 4, dtype=torch.float64),
        )
    most = max(int(item[1].shape[0]) for item in kept)
    targets = torch.full((len(kept), most, 5), -1.0)
    for n, item in enumerate(kept):
        targets[n, : item[1].shape[0]] = item[1]
    return Batch(
        torch.stack([item[0] for item in kept]),
        targets,
        skipped,
        torch.stack([item[2] for item in kept]),
    )


def build_detection_loaders(
    spec: DatasetSpec,
    resolution: tuple[int, int],
    *,
    work_dir: str | Path | None = None,
    seed: int = 0,
    train: bool = True,
    val: bool = True,
    augment: DetectionAugment | None = None,
) -> DataLoaders:
    """Train/val detection loaders for ``spec`` (kind ``coco`` or ``scenes``) at
    ``resolution`` (the space's largest), with the sharding, sampling and seeds of
    ``build_loaders``. Every file is checked first (see the module docstring)."""
    if spec.kind not in (DatasetKind.coco, DatasetKind.scenes):
        raise SpecError(
            f"detection reads kind coco or scenes (COCO annotations), not {spec.kind.value}",
            field="dataset.kind",
        )
    root = prepare_dataset(spec, work_dir, resolution)
    files = {split: coco_files(spec, root, split) for split in SPLITS}
    train_split = load_coco_split(files["train"]) if train or not val else None
    val_split = load_coco_split(files["val"], keep_raw=True) if val else None
    reference = train_split if train_split is not None else val_split
    assert reference is not None
    if (
        train_split is not None
        and val_split is not None
        and train_split.categories != val_split.categories
    ):
        raise SpecError(
            f"{files['val'].annotations}: categories differ from those of "
            f"{files['train'].annotations} (both splits need the same ids and names): "
            f"{val_split.categories[:5]} vs {train_split.categories[:5]}",
            field=files["val"].annotations_field,
        )
    classes = [name for _, name in reference.categories]
    if spec.num_classes is not None and spec.num_classes != len(classes):
        raise SpecError(
            f"{spec.num_classes} given, but {reference.files.annotations} has "
            f"{len(classes)} categories",
            field="dataset.numClasses",
        )
    train_set = val_set = None
    if train and train_split is not None:
        train_set = CocoDetectionDataset(
            train_split,
            resolution,
            train=True,
            augment=augment,
            subset=sample_subset(len(train_split), spec.max_train_samples),
        )
    if val_split is not None:
        val_set = CocoDetectionDataset(
            val_split,
            resolution,
            train=False,
            subset=sample_subset(len(val_split), spec.max_val_samples),
        )
    return assemble_loaders(
        spec,
        root,
        classes,
        train_set,
        val_set,
        collate=collate_detection,
        seed=seed,
        train_source=files["train"].images,
    )


__all__ = [
    "BOX_TOLERANCE",
    "MAX_ANNOTATION_BYTES",
    "CocoDetectionDataset",
    "CocoFiles",
    "CocoSplit",
    "build_detection_loaders",
    "coco_files",
    "coco_ground_truth",
    "collate_detection",
    "load_coco_split",
]

"""gen5nas.data.coco: COCO folders as detection batches (categories, augmentation that keeps
boxes on their objects, the letterbox's meta, padding, sharding) and the checked input."""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.coco import COLOURS, IMAGES, write_coco

from gen5nas.data import coco as coco_module
from gen5nas.data.coco import CocoDetectionDataset, build_detection_loaders, collate_detection
from gen5nas.data.det_transforms import place
from gen5nas.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from gen5nas.errors import SpecError
from gen5nas.spec.common import DatasetSpec
from gen5nas.spec.space import parse_model

CLASS_IDS = sorted(COLOURS)  # contiguous index -> COCO id


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_coco(tmp_path_factory.mktemp("coco") / "tiny")


def _spec(path: Path, **extra: object) -> DatasetSpec:
    return DatasetSpec(kind="coco", path=str(path), batch_size=2, num_workers=0, **extra)


def _original_boxes(image_index: int) -> np.ndarray:
    return np.array([(x, y, x + w, y + h) for _, x, y, w, h in IMAGES[image_index][2]])


def _object_box(image: torch.Tensor, category_id: int) -> tuple[np.ndarray, int]:
    """The pixel box of an object's colour in a normalised image, and its pixel count."""
    rgb = image * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(
        3, 1, 1
    )
    channel = COLOURS[category_id].index(255)
    others = [c for c in range(3) if c != channel]
    mask = (rgb[channel] > 0.5) & (rgb[others] < 0.5).all(0)
    ys, xs = np.nonzero(mask.numpy())
    if len(xs) == 0:
        return np.zeros(4), 0
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float), len(xs)


def test_loads_both_splits_with_contiguous_categories(folder: Path) -> None:
    loaders = build_detection_loaders(_spec(folder), (32, 32))
    assert loaders.classes == ["red", "green", "blue"]  # sorted by COCO id: 3, 7, 11
    assert loaders.root == folder
    assert loaders.val is not None and loaders.train is not None
    val_set = loaders.val.dataset
    assert isinstance(val_set, CocoDetectionDataset)
    assert val_set.category_ids == CLASS_IDS
    assert sorted(val_set.coco.getImgIds()) == list(range(201, 207))
    batches = list(loaders.val)
    assert sum(len(b) for b in batches) == len(IMAGES)  # the image without boxes is kept
    ids = torch.cat([b.meta[:, 0] for b in batches]).long().tolist()
    assert ids == list(range(201, 207))
    for batch in batches:
        assert batch.targets.dtype == torch.float32 and batch.meta.dtype == torch.float64
        for targets, image_id in zip(batch.targets, batch.meta[:, 0].long(), strict=True):
            objects = IMAGES[int(image_id) - 201][2]
            labels = targets[targets[:, 0] >= 0, 0].long().tolist()
            assert labels == [CLASS_IDS.index(cat) for cat, *_ in objects]


def test_val_meta_maps_boxes_back_to_the_original_exactly(folder: Path) -> None:
    resolution = (24, 40)  # neither square nor any image's aspect
    loaders = build_detection_loaders(_spec(folder), resolution, train=False)
    assert loaders.train is None and loaders.val is not None
    for batch in loaders.val:
        assert batch.images.shape[-2:] == resolution
        for image, targets, (image_id, scale, pad_x, pad_y) in zip(
            batch.images, batch.targets, batch.meta.numpy(), strict=True
        ):
            index = int(image_id) - 201
            boxes = targets[targets[:, 0] >= 0, 1:].double().numpy()
            back = (boxes - [pad_x, pad_y, pad_x, pad_y]) / scale
            np.testing.assert_allclose(back, _original_boxes(index).reshape(-1, 4), atol=1e-4)
            for (cat, *_), box in zip(IMAGES[index][2], boxes, strict=True):
                found, _ = _object_box(image, cat)
                np.testing.assert_allclose(found, box, atol=1.5)  # the pixels moved alike


def test_training_augmentation_keeps_boxes_on_their_objects(folder: Path) -> None:
    loaders = build_detection_loaders(_spec(folder), (32, 32), val=False)
    assert loaders.train is not None
    dataset = loaders.train.dataset
    assert isinstance(dataset, CocoDetectionDataset)
    red_centres, scales = [], set()
    for seed in range(12):
        for i in range(len(dataset)):
            item = dataset[(i, seed)]
            assert item is not None
            image, targets, meta, _ = item
            scales.add(round(float(meta[1]), 4))
            kept = {int(t[0]) for t in targets}
            for label, *box in targets.tolist():
                found, _ = _object_box(image, CLASS_IDS[int(label)])
                np.testing.assert_allclose(found, box, atol=1.5)
                if i == 0 and CLASS_IDS[int(label)] == 3:
                    red_centres.append((box[0] + box[2]) / 2)
            for cat, *_ in IMAGES[int(meta[0]) - 101][2]:
                if CLASS_IDS.index(cat) not in kept:  # dropped: cropped away (a sliver at most)
                    assert _object_box(image, cat)[1] <= 32
    # Flipped and not: image 0's red box starts at the left; the scale is jittered.
    assert min(red_centres) < 16 < max(red_centres)
    assert len(scales) > 10
    again = dataset[(2, 5)]
    first = dataset[(2, 5)]
    assert again is not None and first is not None
    assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_placement_clips_boxes_and_drops_degenerate_ones() -> None:
    img = Image.new("RGB", (20, 20))
    boxes = np.array([[2, 2, 8, 8], [12, 12, 18, 18], [0, 0, 20, 20], [14, 5, 19, 5.5]], float)
    placed = place(img, boxes, np.arange(4), (10, 10), 1.0, (-10, -10), min_box_size=1.0)
    # box 0 lies outside the crop, box 3 is half a pixel high: both dropped
    assert placed.labels.tolist() == [1, 2]
    np.testing.assert_allclose(placed.boxes, [[2, 2, 8, 8], [0, 0, 10, 10]])
    assert placed.image.shape == (3, 10, 10)


def test_collate_pads_targets_with_minus_one_and_counts_skipped() -> None:
    meta = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    two = torch.tensor([[0, 1, 1, 4, 4], [2, 2, 2, 6, 6]], dtype=torch.float32)
    items = [
        (torch.zeros(3, 8, 8), two, meta, 1),
        None,
        (torch.ones(3, 8, 8), torch.zeros(0, 5), meta, 0),
    ]
    batch = collate_detection(items)
    assert len(batch) == 2 and batch.skipped == 2
    assert batch.targets.shape == (2, 2, 5)
    assert torch.equal(batch.targets[0], two)
    assert (batch.targets[1] == -1).all()
    assert batch.meta is not None and batch.meta.shape == (2, 4)
    empty = collate_detection([None, None])
    assert len(empty) == 0 and empty.skipped == 2 and empty.targets.shape == (0, 0, 5)


def _rank(rank: int, world: int, data: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world
    )
    try:
        loaders = build_detection_loaders(_spec(Path(data)), (32, 32))
        assert loaders.val is not None and loaders.train is not None
        val_ids = [int(i) for b in loaders.val for i in b.meta[:, 0]]
        train = [len(b) for b in loaders.train]
        Path(out, f"{rank}.json").write_text(json.dumps({"val": val_ids, "train": train}))
    finally:
        dist.destroy_process_group()


def test_two_ranks_cover_validation_once(folder: Path, tmp_path: Path) -> None:
    # Forked, not spawned: the ranks start in milliseconds instead of importing torch again.
    context = mp.get_context("fork")
    ranks = [context.Process(target=_rank, args=(r, 2, str(folder), str(tmp_path))) for r in (0, 1)]
    for process in ranks:
        process.start()
    try:
        for process in ranks:
            process.join(timeout=60)
    finally:
        for process in ranks:
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in ranks] == [0, 0]
    shares = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    val = [i for share in shares for i in share["val"]]
    assert sorted(val) == list(range(201, 207))
    assert all(share["val"] for share in shares)  # both ranks got some
    assert [share["train"] for share in shares] == [[2], [2]]  # 3 images per rank, full batches


def _rewrite(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _set(record_key: str, index: int, field: str, value: object) -> Callable[[dict], object]:
    return lambda data: data[record_key][index].__setitem__(field, value)


VAL_JSON = "annotations/instances_val.json"
BAD_INPUTS = {
    "missing file": (lambda root: (root / VAL_JSON).unlink(), None, "not found"),
    "not JSON": (lambda root: (root / VAL_JSON).write_text("{not json"), None, "is not JSON"),
    "not an object": (lambda root: (root / VAL_JSON).write_text("[]"), None, "top level"),
    "no annotations": (
        lambda root: _rewrite(root / VAL_JSON, lambda d: d.pop("annotations")),
        None,
        "annotations: missing",
    ),
    "bbox of 3 numbers": (
        lambda root: _rewrite(root / VAL_JSON, _set("annotations", 1, "bbox", [1, 2, 3])),
        None,
        r"annotations\[1\]\.bbox: \[1, 2, 3\]; expected \[x, y, width, height\]",
    ),
    "box outside its image": (
        lambda root: _rewrite(root / VAL_JSON, _set("annotations", 0, "bbox", [40, 6, 12, 10])),
        None,
        r"annotations\[0\]\.bbox: \[40, 6, 12, 10\] lies outside its image 201 \(48x32\)",
    ),
    "unknown category": (
        lambda root: _rewrite(root / VAL_JSON, _set("annotations", 2, "category_id", 5)),
        None,
        r"annotations\[2\]\.category_id: 5; expected an id in categories",
    ),
    "unknown image": (
        lambda root: _rewrite(root / VAL_JSON, _set("annotations", 2, "image_id", 999)),
        None,
        r"annotations\[2\]\.image_id: 999",
    ),
    "duplicate image id": (
        lambda root: _rewrite(root / VAL_JSON, _set("images", 1, "id", 201)),
        None,
        r"images\[1\]\.id: 201 appears twice",
    ),
    "missing image file": (
        lambda root: (root / "val" / "203.png").unlink(),
        "dataset.coco.valImages",
        r"images\[2\]\.file_name '203.png': no such file .*\(1 of 6",
    ),
    "categories differ": (
        lambda root: _rewrite(root / VAL_JSON, _set("categories", 0, "name", "lime")),
        None,
        "categories differ from those of",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file_and_the_field(folder: Path, tmp_path: Path, case: str) -> None:
    root = write_coco(tmp_path / "bad")
    breaks, field, message = BAD_INPUTS[case]
    breaks(root)
    with pytest.raises(SpecError, match=message) as err:
        build_detection_loaders(_spec(root), (32, 32))
    # kind coco always has its file settings (the COCO layout by default): errors name them
    assert err.value.field == (field or "dataset.coco.valAnnotations")
    assert str(root / VAL_JSON) in str(err.value)


def test_box_within_the_tolerance_is_clipped(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "edge")
    _rewrite(root / VAL_JSON, _set("annotations", 0, "bbox", [4, 6, 44.5, 26.8]))
    loaders = build_detection_loaders(_spec(root), (32, 48), train=False)
    assert loaders.val is not None
    dataset = loaders.val.dataset
    assert isinstance(dataset, CocoDetectionDataset)
    assert dataset.coco.loadAnns([1])[0]["bbox"] == [4, 6, 44, 26]  # the 48x32 image's edge


def test_oversized_annotation_file_is_refused_before_parsing(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coco_module, "MAX_ANNOTATION_BYTES", 100)
    with pytest.raises(SpecError, match=r"instances_train\.json is \d+ bytes, over the 100"):
        build_detection_loaders(_spec(folder), (32, 32))


def test_other_kinds_and_class_counts_are_refused(folder: Path) -> None:
    with pytest.raises(SpecError) as err:
        build_detection_loaders(DatasetSpec(kind="digits"), (32, 32))
    assert err.value.field == "dataset.kind"
    with pytest.raises(SpecError, match="has 3 categories") as err:
        build_detection_loaders(_spec(folder, num_classes=4), (32, 32))
    assert err.value.field == "dataset.numClasses"


def test_subset_and_calibration(folder: Path) -> None:
    loaders = build_detection_loaders(_spec(folder, max_val_samples=4), (32, 32))
    assert loaders.val is not None
    dataset = loaders.val.dataset
    assert isinstance(dataset, CocoDetectionDataset) and len(dataset) == 4
    # The ground truth is that of the images served, nothing else.
    served = sorted(int(b.meta[i, 0]) for b in loaders.val for i in range(len(b)))
    assert sorted(dataset.coco.getImgIds()) == served
    first = [b.targets for b in loaders.calibration(2, seed=1)]
    second = [b.targets for b in loaders.calibration(2, seed=1)]
    assert len(first) == 2 and all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_unreadable_images_are_substituted_in_training_and_dropped_in_validation(
    tmp_path: Path,
) -> None:
    root = write_coco(tmp_path / "broken")
    (root / "train" / "101.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "val" / "202.png").write_bytes(b"")
    loaders = build_detection_loaders(_spec(root), (32, 32))
    assert loaders.train is not None and loaders.val is not None
    train = list(loaders.train)
    assert all(len(b) == 2 for b in train) and sum(b.skipped for b in train) == 1
    val = list(loaders.val)
    assert sum(len(b) for b in val) == 5 and sum(b.skipped for b in val) == 1


def test_scenes_kind_serves_every_annotated_object(tmp_path: Path) -> None:
    spec = parse_model(
        DatasetSpec,
        {
            "kind": "scenes",
            "numClasses": 4,
            "batchSize": 4,
            "numWorkers": 0,
            "scenes": {"trainImages": 8, "valImages": 12, "imageSize": 32, "seed": 1},
        },
    )
    loaders = build_detection_loaders(spec, (32, 32), work_dir=tmp_path)
    assert loaders.root == tmp_path / "data" / "scenes"
    assert loaders.val is not None
    truth = json.loads((loaders.root / VAL_JSON).read_text())
    targets = torch.cat([b.targets.reshape(-1, 5) for b in loaders.val])
    labels = sorted(int(t) for t in targets[targets[:, 0] >= 0, 0])
    assert labels == sorted(a["category_id"] - 1 for a in truth["annotations"])
    assert len(labels) > 12  # several objects per image

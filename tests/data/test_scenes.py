"""The generated scenes: deterministic from the seed, read by the ImageFolder loader, COCO
annotations that pycocotools loads and that agree with the images and the masks, concurrent
writers, and the spec's checks."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from gen5nas.data import build_loaders
from gen5nas.data.scene_writer import bbox_of, rle_encode, write_scenes
from gen5nas.data.scenes import SceneSettings, category, category_names, draw_scene
from gen5nas.errors import SpecError
from gen5nas.spec.common import DatasetSpec
from gen5nas.spec.space import parse_model

SMALL = SceneSettings(num_classes=6, train_images=36, val_images=24, image_size=40, seed=3)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes") / "tree", SMALL)


def test_same_seed_same_bytes_whatever_the_workers(tree: Path, tmp_path: Path) -> None:
    again = write_scenes(tmp_path / "again", SMALL, workers=2)
    assert _digest(again) == _digest(tree)
    other = write_scenes(tmp_path / "other", replace(SMALL, seed=4))
    changed = {k for k, v in _digest(other).items() if _digest(tree).get(k) != v}
    assert len(changed) > 50  # another seed draws other scenes


def test_scene_is_a_function_of_settings_split_and_index() -> None:
    a, b = draw_scene(SMALL, "train", 5), draw_scene(SMALL, "train", 5)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, draw_scene(SMALL, "val", 5).image)
    assert a.label == 5 % SMALL.num_classes


def test_categories_mix_shapes_and_textures() -> None:
    pairs = [category(c) for c in range(32)]
    assert len(set(pairs)) == 32
    first = pairs[:10]
    assert len({s for s, _ in first}) == 8 and len({t for _, t in first}) == 4
    assert category_names(12) == sorted(category_names(12))  # folder order = category order


def test_imagefolder_loader_reads_the_tree(tmp_path: Path) -> None:
    spec = parse_model(
        DatasetSpec,
        {
            "kind": "scenes",
            "numClasses": 6,
            "batchSize": 6,
            "numWorkers": 0,
            "scenes": {"trainImages": 36, "valImages": 24, "imageSize": 40, "seed": 3},
        },
    )
    loaders = build_loaders(spec, (32, 32), work_dir=tmp_path)
    assert loaders.root == tmp_path / "data" / "scenes"
    assert loaders.classes == category_names(6)
    assert _digest(loaders.root) == _digest(write_scenes(tmp_path / "ref", SMALL))
    assert loaders.train is not None and loaders.val is not None
    batch = next(iter(loaders.train))
    assert tuple(batch.images.shape) == (6, 3, 32, 32)
    targets = [t for b in loaders.val for t in b.targets.tolist()]
    assert sorted(targets) == sorted(n % 6 for n in range(24))  # balanced, all read


def _coco(tree: Path, split: str) -> COCO:
    return COCO(str(tree / "annotations" / f"instances_{split}.json"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_coco_annotations_load_and_fit_their_images(tree: Path, split: str) -> None:
    coco = _coco(tree, split)
    count = SMALL.train_images if split == "train" else SMALL.val_images
    assert len(coco.getImgIds()) == count
    assert sorted(coco.getCatIds()) == list(range(1, SMALL.num_classes + 1))
    per_image = []
    areas = []
    for img in coco.loadImgs(coco.getImgIds()):
        path = tree / split / img["file_name"]
        with Image.open(path) as im:
            assert im.size == (img["width"], img["height"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        per_image.append(len(anns))
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0
            assert x + w <= img["width"] and y + h <= img["height"]
            assert ann["iscrowd"] == 0 and ann["category_id"] in coco.cats
            m = coco.annToMask(ann)
            assert m.sum() == ann["area"] > 0
            ys, xs = np.nonzero(m)
            assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == [
                x,
                y,
                w,
                h,
            ]
            areas.append(ann["area"])
    assert max(per_image) >= 3 and min(per_image) >= 1  # several objects per image
    assert max(areas) > 20 * min(areas)  # sizes from small to large


def test_classification_label_is_the_main_object(tree: Path) -> None:
    coco = _coco(tree, "train")
    agree = 0
    for img in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        folder = img["file_name"].split("/")[0]
        largest = max(anns, key=lambda a: a["area"])
        agree += coco.cats[largest["category_id"]]["name"] == folder
    assert agree >= 0.9 * SMALL.train_images


def test_masks_match_the_annotations(tree: Path) -> None:
    coco = _coco(tree, "val")
    for img in coco.loadImgs(coco.getImgIds()):
        mask = np.asarray(Image.open(tree / "masks" / "val" / img["file_name"]))
        expected = np.zeros_like(mask)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            expected[coco.annToMask(ann) > 0] = ann["category_id"]
        assert np.array_equal(mask, expected)


def _box_sides(settings: SceneSettings, n: int) -> tuple[list[float], float]:
    """The longer side of every box (a fraction of the image) and the boxes per scene."""
    sides = []
    for i in range(n):
        for obj in draw_scene(settings, "val", i).objects:
            _, _, w, h = bbox_of(obj.mask)
            sides.append(max(w, h) / settings.image_size)
    return sides, len(sides) / n


def test_detection_layout_spreads_sizes_and_adds_objects() -> None:
    classification = replace(SMALL, image_size=64)
    detection = replace(classification, layout="detection")
    sides_c, per_scene_c = _box_sides(classification, 80)
    sides_d, per_scene_d = _box_sides(detection, 80)
    # Classification's smaller objects stay small: few boxes between small and main ones.
    between_c = sum(0.3 < s < 0.5 for s in sides_c)
    between_d = sum(0.3 < s < 0.5 for s in sides_d)
    assert between_d > 3 * max(1, between_c)
    assert per_scene_d > per_scene_c
    assert min(sides_d) < 0.2 and max(sides_d) > 0.7  # small to large
    # A classification tree does not depend on the setting; a detection tree is another tree.
    assert "layout" not in classification.record()
    assert detection.record()["layout"] == "detection"
    with pytest.raises(ValueError, match="layout must be one of classification, detection"):
        SceneSettings(layout="segmentation")


def test_rle_round_trips_through_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for first_pixel in (False, True):
        m = rng.random((7, 9)) < 0.4
        m[0, 0] = first_pixel
        rle = mask_utils.frPyObjects(rle_encode(m), 7, 9)
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)


def _write(root: str) -> str:
    return str(write_scenes(root, SMALL))


def test_concurrent_writers_end_with_one_complete_tree(tree: Path, tmp_path: Path) -> None:
    root = tmp_path / "shared"
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_write, [str(root)] * 3)
    assert results == [str(root)] * 3
    assert _digest(root) == _digest(tree)
    assert [p.name for p in tmp_path.iterdir()] == ["shared"]  # no temporary left behind


def test_other_settings_on_an_existing_tree_are_refused(tree: Path) -> None:
    with pytest.raises(FileExistsError, match="same settings"):
        write_scenes(tree, replace(SMALL, noise=0.0))


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"kind": "scenes", "numClasses": 40}, None, "2 to 32"),
        ({"kind": "digits", "scenes": {"seed": 1}}, None, "for kind scenes"),
        ({"kind": "scenes", "scenes": {"imageSize": 8}}, "scenes.imageSize", "16"),
        ({"kind": "scenes", "scenes": {"occlusion": 2}}, "scenes.occlusion", "1"),
    ],
)
def test_spec_refuses_bad_scenes_settings(raw: dict, field: str | None, message: str) -> None:
    with pytest.raises(SpecError, match=message) as err:
        parse_model(DatasetSpec, raw, source="dataset")
    if field:
        assert err.value.field == field

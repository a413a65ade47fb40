"""gen5nas.data: ImageFolder checks, bad images, generated trees, sharding and seeded augmentation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from gen5nas.data import (
    AugmentConfig,
    ShardSampler,
    build_loaders,
    scan_imagefolder,
    write_digits,
    write_synthetic,
)
from gen5nas.errors import SpecError
from gen5nas.spec.common import DatasetSpec


def _tree(root: Path, classes: dict[str, int], size: int = 12) -> Path:
    for name, count in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (size, size), (i * 10 % 255, 80, 160)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(
        tmp_path_factory.mktemp("syn") / "tree", num_classes=4, train_per_class=12, val_per_class=5
    )


def test_missing_directory_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="directory not found") as err:
        scan_imagefolder(tmp_path / "nope")
    assert err.value.field == "dataset.path"


def test_no_class_folders_explains_the_layout(tmp_path: Path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(SpecError, match="<class>/<image>"):
        scan_imagefolder(tmp_path)


def test_empty_class_is_named(tmp_path: Path) -> None:
    _tree(tmp_path, {"cat": 2, "dog": 0})
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(SpecError, match=r"dog") as err:
        scan_imagefolder(tmp_path)
    assert ".png" in str(err.value)  # says which extensions count


def test_val_classes_must_match_train(tmp_path: Path) -> None:
    _tree(tmp_path / "train", {"a": 2, "b": 2})
    _tree(tmp_path / "val", {"a": 1, "c": 1})
    spec = DatasetSpec(kind="imagefolder", path=str(tmp_path), batch_size=2, num_workers=0)
    with pytest.raises(SpecError, match=r"missing \['b'\], extra \['c'\]"):
        build_loaders(spec, (8, 8))


def test_batch_larger_than_the_split_is_refused_up_front(synthetic: Path) -> None:
    spec = DatasetSpec(kind="imagefolder", path=str(synthetic), batch_size=1000, num_workers=0)
    with pytest.raises(SpecError) as err:
        build_loaders(spec, (16, 16))
    assert err.value.field == "dataset.batchSize"


def test_coco_is_refused_by_the_classification_loader(tmp_path: Path) -> None:
    spec = DatasetSpec(kind="coco", path=str(tmp_path))
    with pytest.raises(SpecError) as err:
        build_loaders(spec, (16, 16))
    assert err.value.field == "dataset.kind"


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    _tree(tmp_path / "train", {"a": 4, "b": 4})
    _tree(tmp_path / "val", {"a": 3, "b": 3})
    (tmp_path / "train" / "a" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    truncated = (tmp_path / "val" / "b" / "1.png").read_bytes()
    (tmp_path / "val" / "b" / "1.png").write_bytes(truncated[: len(truncated) // 2])
    (tmp_path / "val" / "a" / "2.png").write_bytes(b"")
    spec = DatasetSpec(kind="imagefolder", path=str(tmp_path), batch_size=4, num_workers=0)
    loaders = build_loaders(spec, (8, 8))
    train = list(loaders.train)
    # Training keeps full batches (DDP needs equal sizes): the bad image is replaced.
    assert all(len(b) == 4 for b in train)
    assert sum(b.skipped for b in train) == 1  # every image is drawn once per epoch
    assert loaders.train is not None
    replaced = loaders.train.dataset[0]
    assert replaced is not None and replaced[2] == 1
    val = list(loaders.val)
    assert sum(len(b) for b in val) == 4  # 6 images, 2 unreadable: dropped, not substituted
    assert sum(b.skipped for b in val) == 2
    assert "skipping unreadable image" in caplog.text


def test_digits_tree_is_deterministic_and_reused(tmp_path: Path) -> None:
    root = write_digits(tmp_path / "digits")
    train = scan_imagefolder(root / "train")
    val = scan_imagefolder(root / "val")
    assert train.classes == [str(d) for d in range(10)]
    assert len(train.samples) + len(val.samples) == 1797
    assert 0.18 < len(val.samples) / 1797 < 0.22
    img = Image.open(val.samples[0][0])
    assert img.size == (32, 32) and img.mode == "RGB"
    stamp = (root / "train" / "0").stat().st_mtime_ns
    assert write_digits(tmp_path / "digits") == root  # complete: not rewritten
    assert (root / "train" / "0").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_generated_tree_refuses_to_overwrite_foreign_data(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a gen5nas-generated"):
        write_synthetic(tmp_path / "mine")
    assert (tmp_path / "mine" / "precious.txt").exists()


def test_synthetic_tree_is_reproducible(tmp_path: Path) -> None:
    a = write_synthetic(tmp_path / "a", num_classes=3, train_per_class=2, val_per_class=1, seed=3)
    b = write_synthetic(tmp_path / "b", num_classes=3, train_per_class=2, val_per_class=1, seed=3)
    for rel in ("train/class_002/00001.png", "val/class_000/00000.png"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_training_shards_are_equal_and_disjoint() -> None:
    shards = [ShardSampler(103, rank, 3, shuffle=True, seed=5) for rank in range(3)]
    keys = [list(s) for s in shards]
    assert [len(k) for k in keys] == [34, 34, 34]
    indices = [i for k in keys for i, _ in k]
    assert len(set(indices)) == len(indices)
    shards[0].set_epoch(1)
    assert list(shards[0]) != keys[0]  # a new order each epoch


def test_validation_shards_cover_every_image_once() -> None:
    seen = sorted(i for rank in range(3) for i in ShardSampler(10, rank, 3))
    assert seen == list(range(10))


def test_resuming_mid_epoch_yields_the_rest_of_the_same_epoch() -> None:
    sampler = ShardSampler(40, 0, 1, shuffle=True, seed=1)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=16)
    assert list(sampler) == full[16:] and len(sampler) == 24


def test_augmentation_does_not_depend_on_the_number_of_workers(synthetic: Path) -> None:
    batches = []
    for workers in (0, 2):
        spec = DatasetSpec(
            kind="imagefolder", path=str(synthetic), batch_size=8, num_workers=workers
        )
        loaders = build_loaders(spec, (16, 16), seed=7, val=False, augment=AugmentConfig())
        assert loaders.train_sampler is not None
        loaders.train_sampler.set_epoch(2)
        batches.append([b.images for b in loaders.train])
    assert len(batches[0]) == len(batches[1]) == 6
    for x, y in zip(*batches, strict=True):
        assert torch.equal(x, y)


def test_calibration_batches_are_fixed(synthetic: Path) -> None:
    spec = DatasetSpec(kind="imagefolder", path=str(synthetic), batch_size=4, num_workers=0)
    loaders = build_loaders(spec, (16, 16))
    loader = loaders.calibration(3)
    first = [b.images for b in loader]
    second = [b.images for b in loaders.calibration(3)]
    assert len(first) == 3
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_generated_kinds_go_through_build_loaders(tmp_path: Path) -> None:
    spec = DatasetSpec(
        kind="synthetic",
        num_classes=3,
        batch_size=4,
        num_workers=0,
        max_train_samples=24,
        max_val_samples=6,
    )
    loaders = build_loaders(spec, (20, 16), work_dir=tmp_path)
    assert loaders.num_classes == 3
    assert loaders.root == tmp_path / "data" / "synthetic"
    batch = next(iter(loaders.train))
    assert batch.images.shape == (4, 3, 20, 16)
    val = next(iter(loaders.val))
    assert val.images.shape[-2:] == (20, 16)


def _write_digits_into(root: str) -> None:
    write_digits(root)


def test_concurrent_writers_end_with_one_complete_tree(tmp_path: Path) -> None:
    # Several ranks on one node may generate the dataset at once; none may crash.
    import multiprocessing

    root = tmp_path / "digits"
    ctx = multiprocessing.get_context("fork")  # no torch re-import per writer
    procs = [ctx.Process(target=_write_digits_into, args=(str(root),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert write_digits(root) == root  # complete, so not rewritten
    assert sorted(p.name for p in (root / "train").iterdir()) == [str(i) for i in range(10)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".digits.")]  # no leftovers

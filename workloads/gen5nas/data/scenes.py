"""Generated scenes: a bundled dataset where capacity matters (no download, numpy + PIL only).

Every image is a scene: a textured background with clutter (strokes, specks), one large *main*
object and up to ``max_objects - 1`` smaller ones, an occluding bar now and then, and pixel
noise. An object's category is a (shape, texture) pair -- 8 shapes (circle, ring, crescent,
triangle, square, star, cross, arrow) times 4 textures (solid, stripes, checker, dots), up to
32 categories -- drawn in a random colour pair, scale, rotation and position. Category ``c`` is
shape ``c % 8`` with texture ``(c // 8 + c) % 4``, so the first ten already mix both cues:
a classifier must tell shapes *and* textures apart, under clutter and occlusion.

``layout`` "detection" (for object detection) draws at least two objects and spreads the
smaller ones' sizes log-uniformly up to about the main object's, so boxes range from small to
large; the default "classification" keeps the smaller ones small (the label stays clear).

Drawing is here (the parts painted by ``scene_paint.py``); one scene gives three views, all
written by ``scene_writer.write_scenes``:

- classification: ``<root>/{train,val}/<category>/<n>.png`` (an ImageFolder tree, read by the
  same loader as real data), labelled by the main object;
- detection: ``<root>/annotations/instances_{train,val}.json`` in COCO format (``file_name``
  relative to ``<root>/<split>``): a tight box, ``area`` and an uncompressed-RLE
  ``segmentation`` of the *visible* pixels of every object, ``iscrowd`` 0; objects hidden
  (almost) entirely are not annotated;
- segmentation: ``<root>/masks/{train,val}/<category>/<n>.png``, one category id per pixel
  (COCO ids, 1..K; 0 is background, clutter and occluders included).

Image ``n`` of a split is drawn from its own generator seeded by (seed, split, n): the same
arguments give the same bytes, whatever the number of worker processes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from gen5nas.data import scene_paint
from gen5nas.spec.common import SCENES_MAX_CLASSES

SHAPES = ("circle", "ring", "crescent", "triangle", "square", "star", "cross", "arrow")
TEXTURES = ("solid", "stripes", "checker", "dots")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)
assert MAX_CLASSES == SCENES_MAX_CLASSES, "the spec's bound on numClasses must follow"
SPLITS = ("train", "val")
LAYOUTS = ("classification", "detection")

# A visible area below this fraction of the drawn one hides the object: it is not annotated.
_MIN_VISIBLE = 0.15
# Detection layout: radii of the smaller objects (fractions of the image side), log-uniform, so
# boxes cover small to large about evenly in log scale; the main object's are 0.28-0.45.
_DETECTION_EXTRA_RADIUS = (0.06, 0.3)


@dataclass(frozen=True)
class SceneSettings:
    """What a scenes tree is made of (also its identity: a different value is another tree)."""

    num_classes: int = 10
    train_images: int = 8000
    val_images: int = 2000
    image_size: int = 32
    max_objects: int = 4  # the main object and up to max_objects - 1 smaller ones
    clutter: int = 3  # background strokes and specks per image (up to)
    occlusion: float = 0.2  # probability of a bar drawn across the main object
    noise: float = 0.04  # std of the Gaussian pixel noise (0-1 scale), per image up to this
    seed: int = 0
    layout: str = "classification"  # or "detection": 2+ objects, sizes small to large

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be 2..{MAX_CLASSES}, got {self.num_classes}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be at least 1, got {self.max_objects}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    def record(self) -> dict[str, object]:
        """The settings as written into a tree's marker and COCO info. The default layout is
        left out: a classification tree's bytes do not depend on the layout setting."""
        fields = asdict(self)
        if self.layout == "classification":
            del fields["layout"]
        return fields


def category(c: int) -> tuple[str, str]:
    """(shape, texture) of category index ``c`` (0-based)."""
    return SHAPES[c % len(SHAPES)], TEXTURES[(c // len(SHAPES) + c) % len(TEXTURES)]


def category_names(num_classes: int) -> list[str]:
    """Folder names, in category order (zero-padded index first: sorted = category order)."""
    return [f"{c:02d}_{'_'.join(reversed(category(c)))}" for c in range(num_classes)]


@dataclass(frozen=True)
class SceneObject:
    category: int  # 0-based
    mask: np.ndarray  # bool (H, W): its visible pixels


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 (H, W, 3)
    label: int  # the main object's category
    objects: list[SceneObject]  # visible objects, in drawing order

    def class_mask(self) -> np.ndarray:
        """uint8 (H, W): COCO category id (1..K) per pixel, 0 for background."""
        out = np.zeros(self.image.shape[:2], np.uint8)
        for obj in self.objects:
            out[obj.mask] = obj.category + 1
        return out


def _extra_scale(detection: bool, rng: np.random.Generator) -> float:
    """Radius of a smaller object, as a fraction of the image side."""
    if detection:
        lo, hi = _DETECTION_EXTRA_RADIUS
        return math.exp(float(rng.uniform(math.log(lo), math.log(hi))))
    return float(rng.uniform(0.07, 0.15))


def draw_scene(settings: SceneSettings, split: str, n: int) -> Scene:
    """Scene ``n`` of ``split``: deterministic in (settings, split, n)."""
    rng = np.random.default_rng([settings.seed, SPLITS.index(split), n])
    size, k_cls = settings.image_size, settings.num_classes
    img = scene_paint.background(size, rng)
    scene_paint.clutter(img, int(rng.integers(0, settings.clutter + 1)), rng)
    label = n % k_cls  # balanced classes
    detection = settings.layout == "detection"
    fewest_extra = min(1, settings.max_objects - 1) if detection else 0
    n_extra = int(rng.integers(fewest_extra, settings.max_objects))
    # (category, radius): the main object is the largest.
    objs = [(label, size * float(rng.uniform(0.28, 0.45)))]
    objs += [
        (int(rng.integers(0, k_cls)), size * _extra_scale(detection, rng)) for _ in range(n_extra)
    ]
    order = list(range(len(objs)))
    rng.shuffle(order)  # small objects go in front of or behind the main one
    owner = np.full((size, size), -1, np.int16)
    drawn_area = [0.0] * len(objs)
    for i in order:
        cat, r = objs[i]
        shape, texture = category(cat)
        margin = r * 0.6 if i == 0 else r * 0.9
        cx, cy = rng.uniform(margin, size - margin, 2)
        if i == 0:  # the main object stays near the centre: a crop keeps it
            cx, cy = (cx + size / 2) / 2, (cy + size / 2) / 2
        alpha = scene_paint.shape_alpha(
            shape, size, cx, cy, r, float(rng.uniform(0, 2 * math.pi)), rng
        )
        fill = scene_paint.texture(texture, size, r, scene_paint.colour_pair(rng), rng)
        img *= 1 - alpha[..., None]
        img += alpha[..., None] * fill
        covered = alpha > 0.5
        owner[covered] = i
        drawn_area[i] = float(covered.sum())
    if rng.random() < settings.occlusion:
        scene_paint.occluder(img, owner, objs[0][1], rng)
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)  # exposure
    img += rng.normal(0, rng.uniform(0, settings.noise), img.shape).astype(np.float32)
    pixels = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    objects = []
    for i, (cat, _) in enumerate(objs):
        mask = owner == i
        if drawn_area[i] > 0 and mask.sum() >= max(2.0, _MIN_VISIBLE * drawn_area[i]):
            objects.append(SceneObject(cat, mask))
    return Scene(pixels, label, objects)


__all__ = [
    "MAX_CLASSES",
    "SHAPES",
    "SPLITS",
    "TEXTURES",
    "Scene",
    "SceneObject",
    "SceneSettings",
    "category",
    "category_names",
    "draw_scene",
]

"""Generated scenes: a bundled dataset where capacity matters (no download, numpy + PIL only).

Every image is a scene: a textured background with clutter (strokes, specks), one large *main*
object and up to ``max_objects - 1`` smaller ones, an occluding bar now and then, and pixel
noise. An object's category is a (shape, texture) pair -- 8 shapes (circle, ring, crescent,
triangle, square, star, cross, arrow) times 4 textures (solid, stripes, checker, dots), up to
32 categories -- drawn in a random colour pair, scale, rotation and position. Category ``c`` is
shape ``c % 8`` with texture ``(c // 8 + c) % 4``, so the first ten already mix both cues:
a classifier must tell shapes *and* textures apart, under clutter and occlusion.

One scene gives three views, all written by :func:`write_scenes`:

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

import json
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from gen5nas.data.generate import write_tree
from gen5nas.spec.common import SCENES_MAX_CLASSES

SHAPES = ("circle", "ring", "crescent", "triangle", "square", "star", "cross", "arrow")
TEXTURES = ("solid", "stripes", "checker", "dots")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)
assert MAX_CLASSES == SCENES_MAX_CLASSES, "the spec's bound on numClasses must follow"
SPLITS = ("train", "val")

# A visible area below this fraction of the drawn one hides the object: it is not annotated.
_MIN_VISIBLE = 0.15
_SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down: anti-aliased edges


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

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise ValueError(f"num_classes must be 2..{MAX_CLASSES}, got {self.num_classes}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be at least 1, got {self.max_objects}")


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


# ---- drawing -----------------------------------------------------------------------------------
def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape of radius ``r`` around (cx, cy), rotated by ``angle``."""
    if shape == "triangle":
        pts = [(1.0, a) for a in (0.0, 2.094, 4.189)]
    elif shape == "square":
        pts = [(1.0, a) for a in (0.785, 2.356, 3.927, 5.498)]
    elif shape == "star":
        pts = [(1.0 if k % 2 == 0 else 0.42, k * math.pi / 5) for k in range(10)]
    elif shape == "cross":
        w = 0.34
        xy = [(w, 1), (w, w), (1, w), (1, -w), (w, -w), (w, -1)]
        xy += [(-x, -y) for x, y in xy]
        return _rotate(xy, cx, cy, r, angle)
    elif shape == "arrow":
        xy = [(1, 0), (0.1, 0.75), (0.1, 0.3), (-1, 0.3), (-1, -0.3), (0.1, -0.3), (0.1, -0.75)]
        return _rotate(xy, cx, cy, r, angle)
    else:
        raise ValueError(shape)
    xy = [(rad * math.cos(a), rad * math.sin(a)) for rad, a in pts]
    return _rotate(xy, cx, cy, r, angle)


def _rotate(
    xy: list[tuple[float, float]], cx: float, cy: float, r: float, angle: float
) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in xy]


def _shape_alpha(
    shape: str, size: int, cx: float, cy: float, r: float, angle: float, rng: np.random.Generator
) -> np.ndarray:
    """float32 (size, size) coverage in [0, 1] of one shape (anti-aliased)."""
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    X, Y, R = cx * k, cy * k, r * k
    if shape == "circle":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
    elif shape == "ring":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
        q = R * float(rng.uniform(0.45, 0.6))
        draw.ellipse((X - q, Y - q, X + q, Y + q), fill=0)
    elif shape == "crescent":
        draw.ellipse((X - R, Y - R, X + R, Y + R), fill=255)
        d = R * 0.55
        ox, oy = X + d * math.cos(angle), Y + d * math.sin(angle)
        q = R * 0.85
        draw.ellipse((ox - q, oy - q, ox + q, oy + q), fill=0)
    else:
        draw.polygon(_polygon(shape, X, Y, R, angle), fill=255)
    return _coverage(canvas)


def _coverage(canvas: Image.Image) -> np.ndarray:
    """float32 coverage in [0, 1] of a supersampled 'L' canvas, box-filtered to image size."""
    return np.asarray(canvas.reduce(_SUPERSAMPLE), np.float32) * (1.0 / 255.0)


def _texture(
    texture: str,
    size: int,
    r: float,
    colours: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> np.ndarray:
    """float32 (size, size, 3) fill pattern in two colours, its period scaled to the object."""
    fg, bg = colours
    if texture == "solid":
        return np.broadcast_to(fg, (size, size, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(4.0, r * float(rng.uniform(0.55, 0.8)))
    theta = float(rng.uniform(0, math.pi))
    u = xx * math.cos(theta) + yy * math.sin(theta)
    v = -xx * math.sin(theta) + yy * math.cos(theta)
    if texture == "stripes":
        on = (u / period) % 1.0 < 0.5
    elif texture == "checker":
        on = ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
    else:  # dots
        du, dv = (u / period) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
        on = du * du + dv * dv > 0.09
    return np.where(on[..., None], fg, bg).astype(np.float32)


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours far enough apart for a texture to show."""
    fg = rng.uniform(0, 1, 3).astype(np.float32)
    bg = np.clip(fg + rng.choice([-1.0, 1.0], 3) * rng.uniform(0.45, 0.7, 3), 0, 1)
    return fg, bg.astype(np.float32)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A two-colour gradient with a faint pattern of its own."""
    a, b = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (xx * math.cos(theta) + yy * math.sin(theta) + 1.5) / 3.0
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    freq = rng.uniform(1.5, 5.0)
    img += 0.06 * np.sin(2 * math.pi * freq * (xx * rng.normal() + yy * rng.normal()))[..., None]
    return img.astype(np.float32)


def _clutter(img: np.ndarray, count: int, rng: np.random.Generator) -> None:
    """Strokes and specks: structure that belongs to no category (never annotated)."""
    if count == 0:
        return
    size = img.shape[0]
    k = _SUPERSAMPLE
    alpha = Image.new("L", (size * k, size * k), 0)
    paint = Image.new("RGB", (size * k, size * k), 0)
    draws = ImageDraw.Draw(alpha), ImageDraw.Draw(paint)
    for _ in range(count):
        x0, y0 = rng.uniform(0, size * k, 2)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.6:
            length, ang = rng.uniform(0.2, 0.6) * size * k, rng.uniform(0, 2 * math.pi)
            xy = (x0, y0, x0 + length * math.cos(ang), y0 + length * math.sin(ang))
            width = max(1, int(rng.uniform(0.5, 1.5) * k))
            draws[0].line(xy, fill=255, width=width)
            draws[1].line(xy, fill=colour, width=width)
        else:
            q = rng.uniform(0.5, 1.5) * k
            draws[0].ellipse((x0 - q, y0 - q, x0 + q, y0 + q), fill=255)
            draws[1].ellipse((x0 - q, y0 - q, x0 + q, y0 + q), fill=colour)
    a = _coverage(alpha)[..., None]
    colours = np.asarray(paint.reduce(k), np.float32) * (1.0 / 255.0)
    # On a black canvas the box filter gives colour x coverage: premultiplied, ready to add.
    img *= 1 - a
    img += colours


def draw_scene(settings: SceneSettings, split: str, n: int) -> Scene:
    """Scene ``n`` of ``split``: deterministic in (settings, split, n)."""
    rng = np.random.default_rng([settings.seed, SPLITS.index(split), n])
    size, k_cls = settings.image_size, settings.num_classes
    img = _background(size, rng)
    _clutter(img, int(rng.integers(0, settings.clutter + 1)), rng)
    label = n % k_cls  # balanced classes
    n_extra = int(rng.integers(0, settings.max_objects))
    # (category, radius): the main object is clearly the largest.
    objs = [(label, size * float(rng.uniform(0.28, 0.45)))]
    objs += [
        (int(rng.integers(0, k_cls)), size * float(rng.uniform(0.07, 0.15))) for _ in range(n_extra)
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
        alpha = _shape_alpha(shape, size, cx, cy, r, float(rng.uniform(0, 2 * math.pi)), rng)
        fill = _texture(texture, size, r, _colour_pair(rng), rng)
        img *= 1 - alpha[..., None]
        img += alpha[..., None] * fill
        covered = alpha > 0.5
        owner[covered] = i
        drawn_area[i] = float(covered.sum())
    if rng.random() < settings.occlusion:
        _occluder(img, owner, objs[0][1], rng)
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.08, 0.08)  # exposure
    img += rng.normal(0, rng.uniform(0, settings.noise), img.shape).astype(np.float32)
    pixels = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    objects = []
    for i, (cat, _) in enumerate(objs):
        mask = owner == i
        if drawn_area[i] > 0 and mask.sum() >= max(2.0, _MIN_VISIBLE * drawn_area[i]):
            objects.append(SceneObject(cat, mask))
    return Scene(pixels, label, objects)


def _occluder(img: np.ndarray, owner: np.ndarray, r: float, rng: np.random.Generator) -> None:
    """A solid bar across the middle of the image (over the main object), cutting its masks."""
    size = img.shape[0]
    k = _SUPERSAMPLE
    canvas = Image.new("L", (size * k, size * k), 0)
    draw = ImageDraw.Draw(canvas)
    c = size * k / 2 + rng.uniform(-0.6, 0.6, 2) * r * k
    ang = rng.uniform(0, math.pi)
    half = size * k
    dx, dy = half * math.cos(ang), half * math.sin(ang)
    width = max(2, int(rng.uniform(0.15, 0.3) * r * k))
    draw.line((c[0] - dx, c[1] - dy, c[0] + dx, c[1] + dy), fill=255, width=width)
    a = _coverage(canvas)
    colour = rng.uniform(0, 1, 3).astype(np.float32)
    img *= 1 - a[..., None]
    img += a[..., None] * colour
    owner[a > 0.5] = -1


# ---- COCO annotations --------------------------------------------------------------------------
def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a bool mask: run lengths in column-major order, zeros first."""
    flat = np.asarray(mask, bool).flatten(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def bbox_of(mask: np.ndarray) -> list[float]:
    """COCO box [x, y, width, height] (pixel edges) around a mask's pixels."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() + 1 - x0), float(ys.max() + 1 - y0)]


def _annotations(scene: Scene, image_id: int, first_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": first_id + j,
            "image_id": image_id,
            "category_id": obj.category + 1,
            "bbox": bbox_of(obj.mask),
            "area": float(obj.mask.sum()),
            "segmentation": rle_encode(obj.mask),
            "iscrowd": 0,
        }
        for j, obj in enumerate(scene.objects)
    ]


# ---- writing -----------------------------------------------------------------------------------
def _write_chunk(settings: SceneSettings, root: str, split: str, start: int, stop: int) -> list:
    """Draw and save scenes ``start..stop-1`` of ``split``; returns their COCO records."""
    names = category_names(settings.num_classes)
    images, annotations = [], []
    for n in range(start, stop):
        scene = draw_scene(settings, split, n)
        rel = f"{names[scene.label]}/{n:06d}.png"
        Image.fromarray(scene.image, "RGB").save(Path(root, split, rel), compress_level=1)
        Image.fromarray(scene.class_mask(), "L").save(
            Path(root, "masks", split, rel), compress_level=1
        )
        size = settings.image_size
        images.append({"id": n + 1, "file_name": rel, "width": size, "height": size})
        annotations.extend(_annotations(scene, n + 1, first_id=0))
    return [images, annotations]


def _write_chunk_args(job: tuple[SceneSettings, str, str, int, int]) -> list:
    return _write_chunk(*job)


def write_scenes(root: str | Path, settings: SceneSettings | None = None, workers: int = 1) -> Path:
    """The scenes tree of ``settings`` at ``root`` (written once; concurrent writers end with one
    complete tree). ``workers`` > 1 draws in that many processes (same bytes)."""
    settings = settings or SceneSettings()
    names = category_names(settings.num_classes)
    categories = [
        {"id": c + 1, "name": names[c], "supercategory": category(c)[0]}
        for c in range(settings.num_classes)
    ]

    def fill(tmp: Path) -> None:
        for split in SPLITS:
            for name in names:
                (tmp / split / name).mkdir(parents=True)
                (tmp / "masks" / split / name).mkdir(parents=True)
        (tmp / "annotations").mkdir()
        for split in SPLITS:
            total = settings.train_images if split == "train" else settings.val_images
            step = max(1, math.ceil(total / max(1, workers * 4)))
            chunks = [(s, min(total, s + step)) for s in range(0, total, step)]
            jobs = [(settings, str(tmp), split, a, b) for a, b in chunks]
            if workers > 1:
                with ProcessPoolExecutor(workers) as pool:
                    parts = list(pool.map(_write_chunk_args, jobs))
            else:
                parts = [_write_chunk(*job) for job in jobs]
            images = [img for part in parts for img in part[0]]
            annotations = [ann for part in parts for ann in part[1]]
            for i, ann in enumerate(annotations):
                ann["id"] = i + 1
            coco = {
                "info": {"description": "gen5nas generated scenes", "settings": asdict(settings)},
                "images": images,
                "annotations": annotations,
                "categories": categories,
            }
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))

    recipe: dict[str, object] = {"kind": "scenes", **asdict(settings), "version": 1}
    return write_tree(Path(root), recipe, fill)


__all__ = [
    "MAX_CLASSES",
    "SHAPES",
    "TEXTURES",
    "Scene",
    "SceneObject",
    "SceneSettings",
    "bbox_of",
    "category",
    "category_names",
    "draw_scene",
    "rle_encode",
    "write_scenes",
]

"""Painting the parts of a generated scene: shapes (anti-aliased), textures, colour pairs,
backgrounds, clutter and occluding bars, on float32 images in [0, 1]."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

_SUPERSAMPLE = 2  # shapes are drawn at 2x and box-filtered down: anti-aliased edges


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


def shape_alpha(
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


def texture(
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


def colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours far enough apart for a texture to show."""
    fg = rng.uniform(0, 1, 3).astype(np.float32)
    bg = np.clip(fg + rng.choice([-1.0, 1.0], 3) * rng.uniform(0.45, 0.7, 3), 0, 1)
    return fg, bg.astype(np.float32)


def background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A two-colour gradient with a faint pattern of its own."""
    a, b = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    theta = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = (xx * math.cos(theta) + yy * math.sin(theta) + 1.5) / 3.0
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    freq = rng.uniform(1.5, 5.0)
    img += 0.06 * np.sin(2 * math.pi * freq * (xx * rng.normal() + yy * rng.normal()))[..., None]
    return img.astype(np.float32)


def clutter(img: np.ndarray, count: int, rng: np.random.Generator) -> None:
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


def occluder(img: np.ndarray, owner: np.ndarray, r: float, rng: np.random.Generator) -> None:
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

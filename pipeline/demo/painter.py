"""The demo set's images: one picture per visual class, drawn so that even an untrained CLIP separates them.

Distinct colour layouts per class, with jitter in positions, sizes and colours, and distinct objects (figures,
sun, mountains, trees, buildings, logos, balls, stars) for a detector to find. The same seed gives the same
pixels.
"""
from __future__ import annotations

import io
import math
import random
from typing import Sequence

from PIL import Image, ImageDraw


def _jitter(rng: random.Random, color: Sequence[int], amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in color)  # type: ignore[return-value]


def _vertical_gradient(size: int, top: Sequence[int], bottom: Sequence[int]) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / max(1, size - 1)
        draw.line([(0, y), (size, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def _draw_person(draw: ImageDraw.ImageDraw, rng: random.Random, cx: float, feet_y: float, height: float) -> None:
    skin = _jitter(rng, rng.choice([(241, 194, 160), (198, 134, 92), (141, 85, 54), (224, 172, 105)]), 10)
    shirt = _jitter(rng, rng.choice([(200, 30, 40), (30, 70, 170), (20, 130, 60), (240, 200, 20), (90, 40, 140)]), 25)
    pants = _jitter(rng, rng.choice([(40, 40, 60), (60, 50, 40), (30, 60, 110)]), 15)
    head_r = height * 0.11
    head_cy = feet_y - height + head_r
    torso_top = head_cy + head_r * 1.1
    torso_bottom = torso_top + height * 0.38
    half_w = height * 0.16
    limb = max(3, round(height * 0.07))
    # Legs, then arms, torso and head on top.
    for dx in (-0.5, 0.5):
        draw.line([(cx + dx * half_w, torso_bottom), (cx + dx * half_w * 1.6 + rng.uniform(-3, 3), feet_y)],
                  fill=pants, width=limb + 2)
    for side in (-1, 1):
        angle = math.radians(rng.uniform(20, 150))
        length = height * 0.33
        sx, sy = cx + side * half_w, torso_top + limb
        draw.line([(sx, sy), (sx + side * length * math.sin(angle), sy + length * math.cos(angle))],
                  fill=shirt, width=limb)
    draw.rounded_rectangle([cx - half_w, torso_top, cx + half_w, torso_bottom], radius=limb, fill=shirt)
    draw.ellipse([cx - head_r, head_cy - head_r, cx + head_r, head_cy + head_r], fill=skin)
    hair = _jitter(rng, rng.choice([(30, 20, 10), (90, 60, 20), (200, 170, 90), (20, 20, 20)]), 10)
    draw.chord([cx - head_r, head_cy - head_r, cx + head_r, head_cy + head_r * 0.4], 180, 360, fill=hair)


def _person_image(rng: random.Random, size: int) -> Image.Image:
    """PER: one or two person figures in front of a warm, plain background."""
    top = _jitter(rng, rng.choice([(250, 200, 150), (245, 170, 150), (250, 220, 170), (235, 160, 120)]), 15)
    bottom = _jitter(rng, (top[0] - 50, top[1] - 60, top[2] - 50), 10)
    image = _vertical_gradient(size, top, bottom)
    draw = ImageDraw.Draw(image)
    floor = size * rng.uniform(0.85, 0.97)
    figures = 1 if rng.random() < 0.65 else 2
    for k in range(figures):
        height = size * rng.uniform(0.55, 0.8) / (1 if figures == 1 else 1.15)
        cx = size * (rng.uniform(0.3, 0.7) if figures == 1 else rng.uniform(0.2, 0.4) + 0.4 * k)
        _draw_person(draw, rng, cx, floor, height)
    if rng.random() < 0.2:  # a ball: not every object in a PER picture is a person
        r = size * rng.uniform(0.04, 0.07)
        bx, by = size * rng.choice((0.1, 0.9)), floor - r
        draw.ellipse([bx - r, by - r, bx + r, by + r], fill=_jitter(rng, (250, 250, 250), 5))
    return image


def _landscape_image(rng: random.Random, size: int) -> Image.Image:
    """LOC: sky over land, a sun, mountains on the horizon, trees."""
    sky_top = _jitter(rng, (70, 130, 220), 20)
    sky_bottom = _jitter(rng, (170, 210, 245), 15)
    image = _vertical_gradient(size, sky_top, sky_bottom)
    draw = ImageDraw.Draw(image)
    horizon = size * rng.uniform(0.55, 0.7)
    if rng.random() < 0.8:
        r = size * rng.uniform(0.06, 0.11)
        sx, sy = size * rng.uniform(0.15, 0.85), size * rng.uniform(0.1, 0.3)
        draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=_jitter(rng, (255, 220, 60), 15))
    for _ in range(rng.randint(0, 2)):  # clouds
        cx, cy, w = size * rng.uniform(0.1, 0.9), size * rng.uniform(0.08, 0.35), size * rng.uniform(0.12, 0.22)
        draw.ellipse([cx - w, cy - w * 0.3, cx + w, cy + w * 0.3], fill=_jitter(rng, (245, 245, 250), 5))
    for _ in range(rng.randint(1, 3)):
        base = size * rng.uniform(0.2, 0.4)
        peak_x = size * rng.uniform(0.1, 0.9)
        peak_y = horizon - size * rng.uniform(0.15, 0.35)
        color = _jitter(rng, rng.choice([(110, 110, 130), (120, 100, 80), (90, 110, 120)]), 12)
        draw.polygon([(peak_x - base, horizon), (peak_x, peak_y), (peak_x + base, horizon)], fill=color)
        cap = 0.25
        draw.polygon([(peak_x - base * cap, peak_y + (horizon - peak_y) * cap), (peak_x, peak_y),
                      (peak_x + base * cap, peak_y + (horizon - peak_y) * cap)], fill=(240, 240, 245))
    ground = _jitter(rng, rng.choice([(70, 150, 60), (100, 160, 70), (60, 120, 50)]), 15)
    draw.rectangle([0, horizon, size, size], fill=ground)
    for _ in range(rng.randint(0, 3)):
        tx, ty = size * rng.uniform(0.05, 0.95), size * rng.uniform(0.75, 0.95)
        h = size * rng.uniform(0.1, 0.18)
        draw.rectangle([tx - h * 0.08, ty - h * 0.5, tx + h * 0.08, ty], fill=(100, 65, 35))
        draw.ellipse([tx - h * 0.35, ty - h * 1.1, tx + h * 0.35, ty - h * 0.4], fill=_jitter(rng, (30, 100, 40), 15))
    if rng.random() < 0.2:  # a small hiker: a person in a picture of a place
        _draw_person(draw, rng, size * rng.uniform(0.2, 0.8), size * rng.uniform(0.85, 0.95), size * rng.uniform(0.15, 0.25))
    return image


def _building_image(rng: random.Random, size: int) -> Image.Image:
    """ORG: gray office buildings with grids of windows and a coloured logo."""
    top = _jitter(rng, (190, 195, 205), 12)
    image = _vertical_gradient(size, top, _jitter(rng, (150, 155, 165), 10))
    draw = ImageDraw.Draw(image)
    street = size * rng.uniform(0.86, 0.95)
    buildings = rng.randint(1, 3)
    edges = sorted(rng.uniform(0.05, 0.95) * size for _ in range(buildings * 2))
    tallest: tuple[float, float, float] | None = None
    for k in range(buildings):
        x1, x2 = edges[2 * k], edges[2 * k + 1]
        if x2 - x1 < size * 0.18:
            x2 = min(size * 0.98, x1 + size * 0.18)
        y1 = size * rng.uniform(0.12, 0.45)
        shade = rng.randint(80, 130)
        draw.rectangle([x1, y1, x2, street], fill=_jitter(rng, (shade, shade + 5, shade + 15), 8))
        lit = _jitter(rng, rng.choice([(210, 225, 240), (235, 215, 140)]), 10)
        cols = max(2, int((x2 - x1) / (size * 0.06)))
        rows = max(3, int((street - y1) / (size * 0.07)))
        cw, rh = (x2 - x1) / cols, (street - y1 - size * 0.04) / rows
        for r in range(rows):
            for c in range(cols):
                wx, wy = x1 + c * cw + cw * 0.25, y1 + size * 0.03 + r * rh + rh * 0.2
                draw.rectangle([wx, wy, wx + cw * 0.5, wy + rh * 0.55], fill=lit)
        if tallest is None or y1 < tallest[1]:
            tallest = (x1, y1, x2)
    assert tallest is not None
    x1, y1, x2 = tallest
    r = min((x2 - x1) * 0.3, size * 0.07)
    lx, ly = (x1 + x2) / 2, max(r + 2, y1 - r - 3)
    logo = _jitter(rng, rng.choice([(220, 30, 40), (20, 90, 200), (20, 160, 80), (250, 140, 0)]), 15)
    if rng.random() < 0.5:
        draw.ellipse([lx - r, ly - r, lx + r, ly + r], fill=logo)
    else:
        draw.rectangle([lx - r, ly - r, lx + r, ly + r], fill=logo)
    draw.polygon([(lx - r * 0.5, ly + r * 0.4), (lx, ly - r * 0.5), (lx + r * 0.5, ly + r * 0.4)], fill=(255, 255, 255))
    draw.rectangle([0, street, size, size], fill=_jitter(rng, (60, 60, 65), 8))
    if rng.random() < 0.2:  # a passer-by in front of the building
        _draw_person(draw, rng, size * rng.uniform(0.1, 0.9), size * 0.98, size * rng.uniform(0.15, 0.25))
    return image


def _objects_image(rng: random.Random, size: int) -> Image.Image:
    """MISC (events, products): bright objects (balls, stars, boxes) on a dark stage."""
    top = _jitter(rng, rng.choice([(30, 20, 60), (15, 25, 55), (45, 15, 45)]), 10)
    image = _vertical_gradient(size, top, _jitter(rng, (10, 10, 20), 5))
    draw = ImageDraw.Draw(image)
    palette = [(255, 60, 160), (60, 220, 255), (255, 230, 40), (120, 255, 90), (255, 120, 30)]
    for _ in range(rng.randint(2, 4)):
        color = _jitter(rng, rng.choice(palette), 20)
        r = size * rng.uniform(0.07, 0.14)
        cx, cy = size * rng.uniform(0.15, 0.85), size * rng.uniform(0.2, 0.8)
        kind = rng.choice(("ball", "star", "box"))
        if kind == "ball":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=color)
        elif kind == "box":
            draw.rectangle([cx - r, cy - r * 0.8, cx + r, cy + r * 0.8], fill=color)
        else:
            turn = rng.uniform(0, math.pi)
            points = [(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(turn + k * math.pi / 5),
                       cy + (r if k % 2 == 0 else r * 0.45) * math.sin(turn + k * math.pi / 5)) for k in range(10)]
            draw.polygon(points, fill=color)
    return image


_PAINTERS = {"person": _person_image, "landscape": _landscape_image, "building": _building_image,
             "objects": _objects_image}


def render_image(visual_class: str, seed: int, size: int = 224) -> Image.Image:
    """The picture of one visual class; the same seed gives the same pixels."""
    return _PAINTERS[visual_class](random.Random(seed), size)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    # Fixed settings, no metadata: the bytes depend only on the pixels (and the libjpeg build).
    image.save(buffer, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    return buffer.getvalue()


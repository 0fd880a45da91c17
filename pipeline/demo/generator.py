"""A deterministic synthetic multimodal NER dataset in which the image matters.

Posts are built from templates. Some names are ambiguous between types ("Jordan" is a person or a place,
"Chelsea" a person, a place or a club); when such a name stands in a template whose words say nothing about
the type ("Can't stop thinking about Jordan today"), the type is drawn at random per post and only the image
tells it: a person figure for PER, a landscape for LOC, buildings with a logo for ORG. Every other entity is
given away by its name or its context. About 15% of the posts have no image, and none of those holds an
image-dependent entity.

The images are drawn so that even an untrained CLIP separates the visual classes (distinct colour layouts),
with jitter in positions, sizes and colours, and with distinct objects (figures, sun, mountains, trees,
buildings, logos, balls, stars) for a detector to find.

Everything comes from ``random.Random`` instances seeded from sha256 of (seed, split, index): no ``hash()``,
no set order, so one seed gives byte-identical files on every run.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from pipeline.data.conll import IMAGE_SUFFIX, Post, format_conll
from pipeline.artifacts.atomic import write_bytes_atomically, write_text_atomically
from pipeline.training.metrics import entity_scores

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TYPES: tuple[str, ...] = ("LOC", "MISC", "ORG", "PER")
MANIFEST_NAME = "demo.json"

# Visual class of an image: which entity type it shows. "objects" is shown for MISC posts and posts without
# a PER/LOC/ORG entity.
VISUAL_CLASS: dict[str, str] = {"PER": "person", "LOC": "landscape", "ORG": "building", "MISC": "objects"}
VISUAL_CLASSES: tuple[str, ...] = ("building", "landscape", "objects", "person")

# Names the text alone cannot type: each may be any of its types. Lists, not sets: order is part of the output.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "Amazon": ("LOC", "ORG"),
    "Austin": ("LOC", "PER"),
    "Chelsea": ("LOC", "ORG", "PER"),
    "Dallas": ("LOC", "ORG"),
    "Georgia": ("LOC", "PER"),
    "Jordan": ("LOC", "PER"),
    "Lincoln": ("LOC", "ORG", "PER"),
    "Madison": ("LOC", "PER"),
    "Milan": ("LOC", "ORG"),
    "Orlando": ("LOC", "ORG", "PER"),
    "Paris": ("LOC", "PER"),
    "Phoenix": ("LOC", "ORG", "PER"),
    "Sydney": ("LOC", "PER"),
    "Washington": ("LOC", "ORG", "PER"),
}

# Names of one type only (invented people; places, organisations and events as tweets name them).
UNAMBIGUOUS: dict[str, tuple[str, ...]] = {
    "PER": ("Maya Collins", "Daniel Okafor", "Lena Fischer", "Rahul Mehta", "Sofia Rossi", "Kenji Sato",
            "Amara Diallo", "Lucas Moreau", "Hannah Berg", "Diego Alvarez", "Priya Nair", "Tom Whitfield",
            "Zoe Kaplan", "Mateo Silva", "Ingrid Holm", "Omar Haddad"),
    "LOC": ("Tokyo", "Nairobi", "Lisbon", "Toronto", "New York", "Cape Town", "Buenos Aires", "Oslo",
            "Mumbai", "Seoul", "Berlin", "Lake Como", "Reykjavik", "Marrakech", "Hong Kong", "Vancouver"),
    "ORG": ("Google", "Microsoft", "Red Cross", "NASA", "United Nations", "BBC", "Toyota", "Real Madrid",
            "Greenpeace", "Netflix", "Reuters", "UNICEF", "Spotify", "Airbus", "Bayern Munich", "Tesla"),
    "MISC": ("Star Wars", "World Cup", "Super Bowl", "iPhone", "Christmas", "Olympics", "Grammys",
             "Game of Thrones", "Ramadan", "Coachella", "Black Friday", "Oscars", "Champions League",
             "Minecraft", "Eurovision", "Wimbledon"),
}

# Contexts that say nothing about the type: the same words around a person, a place, a club or an event.
NEUTRAL_TEMPLATES: tuple[str, ...] = (
    "Can't stop thinking about {X} today",
    "Look at {X} !",
    "{X} , what a day",
    "So much love for {X}",
    "Throwback to {X} #tbt",
    "Nothing beats {X} in the morning",
    "Finally saw {X} with my own eyes",
    "Photo of the day : {X}",
    "{X} never disappoints",
    "Cannot believe this is {X}",
    "All about {X} this weekend",
    "Still dreaming of {X}",
)

# Contexts that give the type away. Slots are {PER}, {LOC}, {ORG}, {MISC}.
TYPED_TEMPLATES: tuple[str, ...] = (
    "{PER} scored twice in the second half",
    "Happy birthday {PER} , have a great one",
    "{PER} says the new album is almost done",
    "Great chat with {PER} about her new book",
    "{PER} signs a new contract with {ORG}",
    "{PER} will give a talk at {ORG} tomorrow",
    "Flying to {LOC} next week",
    "Traffic is terrible in {LOC} this morning",
    "Heavy snow expected in {LOC} tonight",
    "Sunset over {LOC} never gets old",
    "Road trip from {LOC} to {LOC}",
    "Earthquake reported near {LOC}",
    "{ORG} opens a new office in {LOC}",
    "{ORG} announced new plans today",
    "Shares of {ORG} fell 3 % on Monday",
    "{ORG} is hiring engineers",
    "Just got a job offer from {ORG}",
    "The CEO of {ORG} stepped down",
    "Who else is watching {MISC} tonight ?",
    "Tickets for {MISC} sold out in minutes",
    "{PER} at {MISC} looking amazing",
    "Can't wait for {MISC} in {LOC}",
)

# Posts with no entity at all.
PLAIN_TEMPLATES: tuple[str, ...] = (
    "Good morning everyone",
    "What a week it has been",
    "Coffee first , questions later",
    "Best day ever",
    "Not sure how I feel about this",
)

DECOR_PREFIXES: tuple[str, ...] = ("RT @daily_pics :", "RT @news_now :", "@friend_2 lol", "OMG")
DECOR_SUFFIXES: tuple[str, ...] = ("#weekend", "#love", "😂", "😍", "🔥 #wow", "http://t.co/x1", "!!")
# Tokens that a WordPiece tokenizer turns into nothing: the data must still carry them with a label.
INVISIBLE_TOKENS: tuple[str, ...] = ("\ufe0f", "\u200b", "\u200d", "\u00a0", "\u00ad")

SLOT = re.compile(r"\{(X|PER|LOC|ORG|MISC)\}")


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo set; the same settings give the same bytes."""

    seed: int = 13
    train: int = 400
    valid: int = 100
    test: int = 100
    image_size: int = 224
    jpeg_quality: int = 90
    no_image_rate: float = 0.15  # posts without an image file
    ambiguous_rate: float = 0.4  # of posts with an image: an ambiguous name in a neutral context
    ambiguous_in_typed_rate: float = 0.2  # a typed slot filled with an ambiguous name (the text tells)

    def sizes(self) -> dict[str, int]:
        return {"train": self.train, "valid": self.valid, "test": self.test}


@dataclass
class EntitySpan:
    start: int  # first token
    end: int  # one past the last token
    entity_type: str
    name: str
    image_dependent: bool  # only the image tells its type


@dataclass
class DemoPost:
    post: Post
    visual_class: str | None  # None: the post has no image
    entities: list[EntitySpan] = field(default_factory=list)

    @property
    def image_dependent(self) -> list[EntitySpan]:
        return [e for e in self.entities if e.image_dependent]


def derived_seed(*parts: object) -> int:
    """A 64-bit seed from any parts, stable across runs and machines (sha256, not ``hash()``)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def post_id(split: str, index: int) -> str:
    return f"{split}-{index:04d}"


# ---------------------------------------------------------------------------------------------------------
# Text


def _fill(template: str, names: Sequence[tuple[str, str, bool]]) -> tuple[list[str], list[str], list[EntitySpan]]:
    """Tokens, BIO labels and spans of a template whose slots take ``names`` (name, type, image_dependent)."""
    tokens: list[str] = []
    labels: list[str] = []
    spans: list[EntitySpan] = []
    slot_index = 0
    for word in template.split(" "):
        if SLOT.fullmatch(word):
            name, entity_type, dependent = names[slot_index]
            slot_index += 1
            start = len(tokens)
            for k, part in enumerate(name.split(" ")):
                tokens.append(part)
                labels.append(("B-" if k == 0 else "I-") + entity_type)
            spans.append(EntitySpan(start, len(tokens), entity_type, name, dependent))
        else:
            tokens.append(word)
            labels.append("O")
    return tokens, labels, spans


def _typed_name(rng: random.Random, entity_type: str, config: DemoConfig) -> str:
    if entity_type != "MISC" and rng.random() < config.ambiguous_in_typed_rate:
        candidates = [name for name, types in AMBIGUOUS.items() if entity_type in types]
        return rng.choice(candidates)
    return rng.choice(UNAMBIGUOUS[entity_type])


def _image_class_for(spans: Sequence[EntitySpan], rng: random.Random) -> str:
    """The image shows the first PER/LOC/ORG entity (the ambiguous one when there is one)."""
    for span in spans:
        if span.image_dependent:
            return VISUAL_CLASS[span.entity_type]
    for span in spans:
        if span.entity_type != "MISC":
            return VISUAL_CLASS[span.entity_type]
    if spans:
        return "objects"
    return rng.choice(VISUAL_CLASSES)


def make_post(split: str, index: int, config: DemoConfig) -> DemoPost:
    """One post, drawn from its own random stream (so posts do not depend on each other's draws)."""
    rng = random.Random(derived_seed(config.seed, split, index, "text"))
    has_image = rng.random() >= config.no_image_rate
    ambiguous_names = list(AMBIGUOUS)
    choice = rng.random()
    if has_image and choice < config.ambiguous_rate:
        name = rng.choice(ambiguous_names)
        entity_type = rng.choice(AMBIGUOUS[name])
        tokens, labels, spans = _fill(rng.choice(NEUTRAL_TEMPLATES), [(name, entity_type, True)])
    elif choice < config.ambiguous_rate + 0.15:
        # An unambiguous name in a neutral context: the name alone tells the type.
        entity_type = rng.choice(TYPES)
        name = rng.choice(UNAMBIGUOUS[entity_type])
        tokens, labels, spans = _fill(rng.choice(NEUTRAL_TEMPLATES), [(name, entity_type, False)])
    elif choice < 0.95:
        template = rng.choice(TYPED_TEMPLATES)
        slots = [m.group(1) for m in SLOT.finditer(template)]
        names: list[tuple[str, str, bool]] = []
        for slot in slots:
            name = _typed_name(rng, slot, config)
            while any(name == other for other, _, _ in names):  # "Road trip from Oslo to Oslo": draw again
                name = _typed_name(rng, slot, config)
            names.append((name, slot, False))
        tokens, labels, spans = _fill(template, names)
    else:
        tokens, labels, spans = _fill(rng.choice(PLAIN_TEMPLATES), [])

    # Decorations of real tweets, all labelled O; they shift the entity spans when put in front.
    if rng.random() < 0.15:
        prefix = rng.choice(DECOR_PREFIXES).split(" ")
        tokens = prefix + tokens
        labels = ["O"] * len(prefix) + labels
        spans = [EntitySpan(s.start + len(prefix), s.end + len(prefix), s.entity_type, s.name, s.image_dependent)
                 for s in spans]
    if rng.random() < 0.3:
        suffix = rng.choice(DECOR_SUFFIXES).split(" ")
        tokens = tokens + suffix
        labels = labels + ["O"] * len(suffix)
    if rng.random() < 0.05:
        position = rng.randrange(len(tokens) + 1)
        while any(s.start < position < s.end for s in spans):  # never inside a name
            position = rng.randrange(len(tokens) + 1)
        tokens.insert(position, rng.choice(INVISIBLE_TOKENS))
        labels.insert(position, "O")
        spans = [EntitySpan(s.start + (s.start >= position), s.end + (s.start >= position), s.entity_type, s.name,
                            s.image_dependent) for s in spans]

    visual_class = _image_class_for(spans, rng) if has_image else None
    pid = post_id(split, index)
    post = Post(post_id=pid, tokens=tokens, labels=labels, image_path=Path("images") / f"{pid}{IMAGE_SUFFIX}")
    return DemoPost(post=post, visual_class=visual_class, entities=spans)


def generate_posts(config: DemoConfig = DemoConfig()) -> dict[str, list[DemoPost]]:
    return {split: [make_post(split, i, config) for i in range(size)] for split, size in config.sizes().items()}


# ---------------------------------------------------------------------------------------------------------
# Images


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


# ---------------------------------------------------------------------------------------------------------
# The text-only ceiling


def majority_types(train_posts: Sequence[DemoPost]) -> dict[str, str]:
    """For each ambiguous name, its most frequent type where only the image tells it (ties: alphabetical)."""
    counts: dict[str, Counter] = {name: Counter() for name in AMBIGUOUS}
    for demo_post in train_posts:
        for span in demo_post.image_dependent:
            counts[span.name][span.entity_type] += 1
    majority = {}
    for name, types in AMBIGUOUS.items():
        ranked = sorted(types, key=lambda t: (-counts[name][t], t))
        majority[name] = ranked[0]
    return majority


def text_only_predictions(posts: Sequence[DemoPost], majority: dict[str, str]) -> list[list[str]]:
    """Labels of an oracle that reads the text perfectly but guesses the majority type where only the image tells."""
    predictions = []
    for demo_post in posts:
        labels = list(demo_post.post.labels)
        for span in demo_post.image_dependent:
            guess = majority[span.name]
            for k in range(span.start, span.end):
                labels[k] = ("B-" if k == span.start else "I-") + guess
        predictions.append(labels)
    return predictions


def text_only_ceiling(splits: dict[str, list[DemoPost]]) -> dict[str, dict]:
    """Best entity-level scores (seqeval, default mode) a text-only model can reach on valid and test."""
    majority = majority_types(splits["train"])
    ceiling = {}
    for split in ("valid", "test"):
        posts = splits.get(split, [])
        if not posts:
            continue
        gold = [p.post.labels for p in posts]
        scores = entity_scores(gold, text_only_predictions(posts, majority), mode="default")
        ceiling[split] = {"precision": round(scores["overall"]["precision"], 4),
                          "recall": round(scores["overall"]["recall"], 4),
                          "f1": round(scores["overall"]["f1"], 4),
                          "mode": scores["mode"]}
    return ceiling


# ---------------------------------------------------------------------------------------------------------
# Writing


@dataclass
class SplitSummary:
    posts: int
    tokens: int
    entities: int
    entities_per_type: dict[str, int]
    images: int
    image_dependent_entities: int
    visual_classes: dict[str, int]


@dataclass
class DemoSummary:
    out: Path
    config: DemoConfig
    splits: dict[str, SplitSummary]
    text_only_ceiling: dict[str, dict]
    bytes_written: int

    def lines(self) -> list[str]:
        out = [f"demo data written to {self.out} (seed {self.config.seed}, {self.bytes_written / 1e6:.1f} MB)"]
        for split, s in self.splits.items():
            per_type = ", ".join(f"{t} {n}" for t, n in sorted(s.entities_per_type.items()))
            out.append(f"  {split:<5}  {s.posts} posts, {s.images} images, {s.entities} entities ({per_type}), "
                       f"{s.image_dependent_entities} image-dependent")
        for split, c in self.text_only_ceiling.items():
            out.append(f"  best F1 of a text-only model on {split}: {c['f1']:.4f} "
                       f"(P {c['precision']:.4f}, R {c['recall']:.4f}; seqeval {c['mode']} mode)")
        return out


def summarize(posts: Sequence[DemoPost]) -> SplitSummary:
    per_type = Counter(span.entity_type for p in posts for span in p.entities)
    classes = Counter(p.visual_class for p in posts if p.visual_class is not None)
    return SplitSummary(
        posts=len(posts),
        tokens=sum(len(p.post.tokens) for p in posts),
        entities=sum(per_type.values()),
        entities_per_type=dict(sorted(per_type.items())),
        images=sum(p.visual_class is not None for p in posts),
        image_dependent_entities=sum(len(p.image_dependent) for p in posts),
        visual_classes=dict(sorted(classes.items())),
    )


def manifest(config: DemoConfig, splits: dict[str, list[DemoPost]], ceiling: dict[str, dict]) -> dict:
    """What each post shows and which entities only its image types (for analysis; not read by the pipeline)."""
    return {
        "config": asdict(config),
        "text_only_ceiling": ceiling,
        "splits": {split: asdict(summarize(posts)) for split, posts in splits.items()},
        "posts": {
            split: [{"id": p.post.post_id, "visual_class": p.visual_class,
                     "entities": [asdict(e) for e in p.entities]} for p in posts]
            for split, posts in splits.items()
        },
    }


_DEMO_IMAGE = re.compile(r"^(train|valid|test)-\d+\.jpg$")


def write_demo_data(out: str | Path, config: DemoConfig = DemoConfig()) -> DemoSummary:
    """Write ``OUT/{train,valid,test}.txt``, ``OUT/images/<id>.jpg`` and ``OUT/demo.json``.

    Images of an earlier run that are not part of this set (another seed or size) are removed, so the folder
    holds exactly this set; other files are left alone.
    """
    out = Path(out)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    splits = generate_posts(config)
    wanted: set[str] = set()
    written = 0
    for split, posts in splits.items():
        for index, demo_post in enumerate(posts):
            if demo_post.visual_class is None:
                continue
            name = f"{demo_post.post.post_id}{IMAGE_SUFFIX}"
            image = render_image(demo_post.visual_class, derived_seed(config.seed, split, index, "image"),
                                 config.image_size)
            data = encode_jpeg(image, config.jpeg_quality)
            target = images_dir / name
            if not (target.is_file() and target.read_bytes() == data):
                write_bytes_atomically(target, data)
            wanted.add(name)
            written += len(data)
    for stale in sorted(images_dir.iterdir()):
        if _DEMO_IMAGE.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    for split, posts in splits.items():
        text = format_conll([p.post for p in posts])
        write_text_atomically(out / f"{split}.txt", text)
        written += len(text.encode("utf-8"))
    ceiling = text_only_ceiling(splits)
    manifest_text = json.dumps(manifest(config, splits, ceiling), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_text_atomically(out / MANIFEST_NAME, manifest_text)
    written += len(manifest_text.encode("utf-8"))
    return DemoSummary(out=out, config=config, splits={s: summarize(p) for s, p in splits.items()},
                       text_only_ceiling=ceiling, bytes_written=written)


# ---------------------------------------------------------------------------------------------------------
# Scoring a model on what only the image tells


def image_dependent_recall(manifest_path: str | Path, split: str, predicted: dict[str, Sequence[str]]) -> float:
    """Share of the split's image-dependent entities (span and type) that ``predicted`` (post id -> BIO) gets.

    This is the figure that shows whether a model reads the image: a text-only model can only guess these.
    """
    from pipeline.data.tags import bio_spans

    manifest_data = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    found = total = 0
    for post in manifest_data["posts"][split]:
        spans = set(bio_spans(predicted[post["id"]]))
        for entity in post["entities"]:
            if entity["image_dependent"]:
                total += 1
                found += (entity["entity_type"], entity["start"], entity["end"]) in spans
    if total == 0:
        raise ValueError(f"the {split} split of {manifest_path} has no image-dependent entity")
    return found / total

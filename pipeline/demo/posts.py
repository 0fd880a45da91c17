"""Posts of the demo set, built from templates; each post draws from its own random stream.

Some names are ambiguous between types ("Jordan" is a person or a place, "Chelsea" a person, a place or a
club); when such a name stands in a template whose words say nothing about the type ("Can't stop thinking
about Jordan today"), the type is drawn at random per post and only the image tells it. Every other entity is
given away by its name or its context. About 15% of the posts have no image, and none of those holds an
image-dependent entity.

Everything comes from ``random.Random`` instances seeded from sha256 of (seed, split, index): no ``hash()``,
no set order, so one seed gives the same posts on every run and machine.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..data.conll import IMAGE_SUFFIX, Post
from .config import DemoConfig
from .vocabulary import (
    AMBIGUOUS,
    DECOR_PREFIXES,
    DECOR_SUFFIXES,
    INVISIBLE_TOKENS,
    NEUTRAL_TEMPLATES,
    PLAIN_TEMPLATES,
    SLOT,
    TYPED_TEMPLATES,
    TYPES,
    UNAMBIGUOUS,
    VISUAL_CLASS,
    VISUAL_CLASSES,
)


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

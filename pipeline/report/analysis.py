"""What the image did to each post: the model's entities with the image against its text-only path.

Every post is tagged twice by the same model: once as trained, and once with every visual slot masked, which
is exactly the model's text-only path (the prefix attends to nothing; tests/test_model.py holds that to 1e-5).
A post's *image effect* compares the two against gold: ``helped`` when the image run makes fewer entity
errors (false positives + false negatives) than the masked run, ``hurt`` when it makes more, ``same``
otherwise.
"""
from __future__ import annotations

import random
from enum import Enum
from typing import Sequence

import torch

from ..data.tags import bio_spans
from ..model.batching import VisualFeatures


class Effect(str, Enum):
    """What the image did to a post's entities (compared with the same model with the image masked)."""

    HELPED = "helped"
    HURT = "hurt"
    SAME = "same"
    TEXT_ONLY_MODEL = "text-only model"  # the model never reads the image: nothing to compare


def entity_errors(gold: Sequence[str], predicted: Sequence[str]) -> int:
    """False positives plus false negatives, counted on exact (type, start, end) spans."""
    return len(set(bio_spans(gold)) ^ set(bio_spans(predicted)))


def image_effect(gold: Sequence[str], with_image: Sequence[str], text_only: Sequence[str] | None) -> Effect:
    if text_only is None:
        return Effect.TEXT_ONLY_MODEL
    image_errors, text_errors = entity_errors(gold, with_image), entity_errors(gold, text_only)
    if image_errors < text_errors:
        return Effect.HELPED
    if image_errors > text_errors:
        return Effect.HURT
    return Effect.SAME


def choose_samples(effects: Sequence[Effect], n: int, seed: int) -> list[int]:
    """Indices of at most ``n`` posts to show, in display order: helped, hurt, then the rest.

    Helped and hurt posts are taken first (alternately, from seeded shuffles, so both kinds show when there
    are more than ``n``); the remaining places go to a seeded sample of the other posts. Within a group posts
    keep their order in the data file, so the same seed gives the same page.
    """
    rng = random.Random(seed)
    groups: dict[Effect, list[int]] = {effect: [] for effect in Effect}
    for index, effect in enumerate(effects):
        groups[effect].append(index)
    helped, hurt = list(groups[Effect.HELPED]), list(groups[Effect.HURT])
    rng.shuffle(helped)
    rng.shuffle(hurt)
    chosen: list[int] = []
    while len(chosen) < n and (helped or hurt):
        for pool in (helped, hurt):
            if pool and len(chosen) < n:
                chosen.append(pool.pop(0))
    rest = groups[Effect.SAME] + groups[Effect.TEXT_ONLY_MODEL]
    rest.sort()
    chosen += sorted(random.Random(seed + 1).sample(rest, min(len(rest), n - len(chosen))))
    order = {effect: rank for rank, effect in enumerate(Effect)}
    return sorted(chosen, key=lambda i: (order[effects[i]], i))


class MaskedFeatures:
    """A feature store with every visual slot masked: the tagger then runs its text-only path."""

    def __init__(self, features: VisualFeatures) -> None:
        self.features, self.dim, self.m = features, features.dim, features.m

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.features

    def batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        vectors, mask = self.features.batch(image_ids)
        return vectors, torch.zeros_like(mask)

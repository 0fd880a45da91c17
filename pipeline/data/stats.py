"""Counts that describe a dataset: posts, tokens, entities per type, BIO repairs, images present."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .conll import Post, entity_counts
from .tags import OTHER_AS_MISC, invalid_bio_positions, rename_types


@dataclass
class DatasetStats:
    posts: int = 0
    tokens: int = 0
    entities: int = 0
    entities_per_type: dict[str, int] = field(default_factory=dict)
    bio_repairs: int = 0
    images_present: int = 0


def compute_stats(posts: Sequence[Post], *, merge_other: bool) -> DatasetStats:
    """Stats of posts read with ``invalid_bio="keep"`` (so stray I- tags are still visible to count)."""
    if merge_other:
        posts = [Post(p.post_id, p.tokens, rename_types(p.labels, OTHER_AS_MISC), p.image_path, p.line) for p in posts]
    per_type = entity_counts(posts)
    return DatasetStats(
        posts=len(posts),
        tokens=sum(len(p.tokens) for p in posts),
        entities=sum(per_type.values()),
        entities_per_type=dict(per_type),
        bio_repairs=sum(len(invalid_bio_positions(p.labels)) for p in posts),
        images_present=sum(p.has_image_file for p in posts),
    )

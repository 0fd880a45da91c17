"""What the demo set lets a model do: the best a text-only model can reach, and the share of image-dependent
entities a model types (the figure that shows whether it reads the image)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Sequence

from ..data.tags import bio_spans
from ..inference.metrics import entity_scores
from .posts import DemoPost
from .vocabulary import AMBIGUOUS


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



def image_dependent_recall(manifest_path: str | Path, split: str, predicted: dict[str, Sequence[str]]) -> float:
    """Share of the split's image-dependent entities (span and type) that ``predicted`` (post id -> BIO) gets.

    This is the figure that shows whether a model reads the image: a text-only model can only guess these.
    """
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


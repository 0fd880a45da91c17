"""Paired bootstrap over posts: is system A's entity F1 really above system B's on this test set?

Each post is a unit: its gold entities and each system's predicted ones (seqeval's reading, the default mode, via
``seqeval``'s own ``get_entities``) give per-post counts of true positives, predictions and gold entities. A
resample draws posts with replacement (the same draw for both systems: paired), and micro F1 is recomputed from
the summed counts, which is exactly seqeval's micro F1 of the resampled posts, without rescoring them. Our own
(a few lines of numpy) because no kept library offers a paired bootstrap of entity-level F1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from ..core.errors import DghcError
from .config import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED


@dataclass(frozen=True)
class Comparison:
    f1_a: float
    f1_b: float
    difference: float  # F1(a) - F1(b) on the test set as it is
    low: float  # 2.5th percentile of the difference over the resamples
    high: float  # 97.5th percentile
    p_value: float  # two-sided: how often a resample's difference falls on the other side of zero (x 2)
    samples: int
    posts: int


def post_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> np.ndarray:
    """(posts, 3) int array: true positives, predicted entities, gold entities per post."""
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for row, (g, p) in enumerate(zip(gold, predicted)):
        gold_spans, predicted_spans = set(get_entities(list(g))), set(get_entities(list(p)))
        counts[row] = (len(gold_spans & predicted_spans), len(predicted_spans), len(gold_spans))
    return counts


def f1_of(counts: np.ndarray) -> np.ndarray:
    """Micro F1 from summed counts; the last axis is (tp, predicted, gold). 0 where nothing was predicted or gold."""
    tp, predicted, gold = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = predicted + gold
    return np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def paired_bootstrap(gold: Sequence[Sequence[str]], predicted_a: Sequence[Sequence[str]],
                     predicted_b: Sequence[Sequence[str]], samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
                     ) -> Comparison:
    """F1(a) - F1(b) with its 95% interval and two-sided p over ``samples`` paired resamples of the posts."""
    if not (len(gold) == len(predicted_a) == len(predicted_b)) or not gold:
        raise DghcError(f"the systems must tag the same posts: {len(gold)} gold, {len(predicted_a)} and "
                        f"{len(predicted_b)} predicted")
    if samples < 1:
        raise DghcError(f"bootstrap samples must be at least 1, not {samples}")
    counts_a, counts_b = post_counts(gold, predicted_a), post_counts(gold, predicted_b)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(gold), size=(samples, len(gold)))
    differences = f1_of(counts_a[draws].sum(axis=1)) - f1_of(counts_b[draws].sum(axis=1))
    observed = float(f1_of(counts_a.sum(axis=0)) - f1_of(counts_b.sum(axis=0)))
    at_or_below, at_or_above = float(np.mean(differences <= 0)), float(np.mean(differences >= 0))
    p_value = min(1.0, 2 * min(at_or_below, at_or_above))
    return Comparison(float(f1_of(counts_a.sum(axis=0))), float(f1_of(counts_b.sum(axis=0))), observed,
                      float(np.percentile(differences, 2.5)), float(np.percentile(differences, 97.5)), p_value,
                      samples, len(gold))

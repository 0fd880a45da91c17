"""Scoring a trained tagger on a split: P/R/F1 in both seqeval modes, relevance and gates, predictions."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

from ..core.errors import DghcError
from ..data.conll import Post, format_conll
from ..data.tags import OTHER_AS_MISC, entity_types, split_label
from ..model.batching import VisualFeatures
from .checkpoint import Checkpoint
from .config import EvaluateConfig
from .metrics import all_modes
from .tagging import PostPrediction, predict
from .visual_features import require_coverage

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    metrics: dict
    predictions: list[PostPrediction]


def summarise_visual(predictions: Sequence[PostPrediction]) -> dict:
    """Mean relevance score and mean gate per layer over the posts with an image (without one, both are moot)."""
    with_image = [p for p in predictions if p.has_image]
    scored = [p for p in with_image if p.relevance is not None]
    summary: dict = {"relevance_mean": None, "gates_mean_per_layer": None}
    if scored:
        summary["relevance_mean"] = sum(p.relevance for p in scored) / len(scored)
    gated = [p.gates for p in with_image if p.gates is not None]
    if gated:
        layers, blocks = len(gated[0]), len(gated[0][0])
        summary["gates_mean_per_layer"] = [
            [sum(g[layer][block] for g in gated) / len(gated) for block in range(blocks)] for layer in range(layers)
        ]
    return summary


def model_types(checkpoint: Checkpoint) -> set[str]:
    """The entity types the model tags."""
    return {split_label(label)[1] for label in checkpoint.tagger.config.labels} - {None}


def gold_type_map(checkpoint: Checkpoint, keep_other: bool) -> Mapping[str, str] | None:
    """How to read a gold file's OTHER type for this model: as it was trained (train's merge_other), so that
    Twitter-2015's OTHER entities are neither all missed nor all wrong. ``keep_other`` against a model that
    learned OTHER as MISC is refused."""
    types = model_types(checkpoint)
    if "OTHER" in types:
        return None
    if keep_other:
        raise DghcError(f"--keep-other: the model was trained with OTHER read as MISC (it tags {', '.join(sorted(types))}),"
                        " so every OTHER entity would count as missed; leave --keep-other out")
    return OTHER_AS_MISC


def evaluate(checkpoint: Checkpoint, posts: Sequence[Post], features: VisualFeatures | None,
             batch_size: int = EvaluateConfig.batch_size, device: str | torch.device = EvaluateConfig.device,
             progress: bool = False, allow_missing_features: bool = False, precision: str = EvaluateConfig.precision
             ) -> Evaluation:
    """Tag and score ``posts``. Posts absent from the features file are refused unless
    ``allow_missing_features`` (the HTML report shows them, marked as read from the text alone)."""
    if not posts:
        raise DghcError("the split to evaluate has no posts")
    known = model_types(checkpoint)
    data_types = set(entity_types([p.labels for p in posts]))
    unknown = sorted(data_types - known)
    if unknown:
        logger.warning("the data has entity types %s that the model was not trained on (it knows %s): "
                       "those entities count as missed", unknown, sorted(known))
    if features is not None and not allow_missing_features:
        require_coverage(features, posts, "the data to evaluate")
    predictions = predict(checkpoint.tagger, checkpoint.tokenizer, posts, features, batch_size, device, progress,
                          precision)
    metrics = all_modes([p.labels for p in posts], [p.labels for p in predictions])
    metrics.update(summarise_visual(predictions))
    metrics["posts"] = len(posts)
    metrics["posts_with_image"] = sum(p.has_image for p in predictions)
    metrics["words_cut"] = sum(p.words_cut for p in predictions)
    metrics["unknown_types"] = unknown
    return Evaluation(metrics, predictions)


def predictions_conll(posts: Sequence[Post], predictions: Sequence[PostPrediction]) -> str:
    """CoNLL columns token, gold, predicted."""
    return format_conll(posts, extra_columns=[[p.labels for p in predictions]])

"""``dghc.evaluate``: the evaluate stage from Python (``Tagger.evaluate`` with the stage's parameters)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.params import config_from
from ..inference.config import EvaluateConfig

if TYPE_CHECKING:
    from ..prediction.tagger import EvaluationResult


def evaluate(model_dir: str | Path, data_file: str | Path, **params: Any) -> EvaluationResult:
    """Score the model in ``model_dir`` (a folder, or a hub id) on the CoNLL ``data_file``: ``Tagger.evaluate``
    with the evaluate stage's parameters (``features_file``, ``batch_size``, ``keep_other``, ``device``,
    ``precision``)."""
    from ..prediction.tagger import Tagger

    config = config_from(EvaluateConfig, model_dir=model_dir, data_file=data_file, **params)
    return Tagger.from_pretrained(config.model_dir).evaluate(
        config.data_file, config.features_file, batch_size=config.batch_size, keep_other=config.keep_other,
        device=config.device, precision=config.precision, allow_unseen_types=config.allow_unseen_types)

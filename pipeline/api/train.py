"""``dghc.train``: the train stage from Python (one process; several: ``dghc train --processes N``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..core.params import config_from
from ..training.config import TrainConfig

if TYPE_CHECKING:
    from ..training.trainer import TrainResult


def train(**params: Any) -> TrainResult:
    """Train the DGHC tagger; the best dev checkpoint goes to ``output_dir``. ``params``: the train stage's
    parameters (``dghc train --help``), e.g. ``train_file``, ``dev_file``, ``features_file``, ``encoder``."""
    from ..training.trainer import train as run_training  # torch and transformers

    return run_training(config_from(TrainConfig, **params))

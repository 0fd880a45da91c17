"""The evaluate stage's parameters (params.yaml section ``evaluate``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.params import allow_unseen_types_param, check_params, device_param, keep_other_param, param, tagging_precision_param


@dataclass
class EvaluateConfig:
    """Parameters of ``dghc evaluate``."""

    SECTION: ClassVar[str] = "evaluate"

    model_dir: Path = param(help="Model folder written by `dghc train`.", argument=True, metavar="MODEL_DIR")
    data_file: Path = param(help="CoNLL file to score (any split, also of another dataset).", argument=True,
                            metavar="DATA_FILE")
    features_file: Path | None = param(None, help="Features file covering DATA_FILE's images (needed by models "
                                       "that use the image).", option="--features")
    metrics_file: Path | None = param(None, help="Write P/R/F1 (overall and per type, both seqeval modes), mean "
                                      "relevance and gates as JSON.", option="--metrics")
    summary_file: Path | None = param(None, help="Write a short flat JSON (overall P/R/F1 in both modes, mean "
                                      "relevance) for `dvc metrics show`.", option="--summary")
    predictions_file: Path | None = param(None, help="Write token, gold and predicted labels in CoNLL columns.",
                                          option="--predictions")
    batch_size: int = param(32, help="Posts per batch.", minimum=1)
    keep_other: bool = keep_other_param()
    allow_unseen_types: bool = allow_unseen_types_param()
    device: str = device_param()
    precision: Literal["no", "fp16", "bf16"] = tagging_precision_param()

    def __post_init__(self) -> None:
        check_params(self)

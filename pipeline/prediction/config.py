"""The predict command's parameters (params.yaml section ``predict``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from ..core.params import (
    address_param,
    check_params,
    device_param,
    param,
    shard_size_param,
    tagging_precision_param,
    workers_param,
)


@dataclass
class PredictConfig:
    """Parameters of ``dghc predict``."""

    SECTION: ClassVar[str] = "predict"

    model_dir: Path = param(help="Model folder written by `dghc train`.", argument=True, metavar="MODEL")
    input: Path | None = param(None, help="JSONL posts to tag; stdin when absent or -.", argument=True,
                               metavar="[INPUT]")
    out: Path | None = param(None, help="Write the JSONL here (atomically: all or nothing). Default: stdout.")
    batch_size: int = param(32, help="Posts per batch (detection, CLIP, tagging).", minimum=1)
    device: str = device_param()
    precision: Literal["no", "fp16", "bf16"] = tagging_precision_param()
    skip_bad: bool = param(False, help="Skip bad input lines with a warning (default: stop at the first).")
    detector_weights: str | None = param(None, metavar="FILE", help="Where the detector weights the model records "
                                         "lie, if not found by name (sha256 is checked).")
    grounding_weights: str | None = param(None, metavar="FILE", help="Same for the grounding detector's weights.")
    clip_model: str | None = param(None, metavar="NAME|DIR", help="Where the CLIP model the model records lies, if "
                                   "not found by name (weights sha256 is checked).")
    progress: bool = param(True, help="Show a progress bar.")
    engine: Literal["local", "ray"] = param("local", help="local: this process; ray: a Ray Data pipeline (an actor "
                                            "pool of taggers) writing a folder of Parquet shards plus _index.json "
                                            "to --out (pip install 'dghc[ray]').", in_params=False)
    address: str | None = address_param()
    workers: int = workers_param()
    shard_size: int = shard_size_param()

    def __post_init__(self) -> None:
        check_params(self)

"""``dghc.predict``: the predict stage from Python, on either engine (posts in memory: ``Tagger.predict``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, TextIO

from ..core.console import say
from ..core.params import config_from
from ..prediction.config import PredictConfig

if TYPE_CHECKING:
    from ..prediction.run import PredictSummary


def predict(model_dir: str | Path, input: str | Path | None = None, *, stdin: BinaryIO | None = None,
            stdout: TextIO | None = None, log: Callable[[str], None] = say, **params: Any) -> PredictSummary:
    """Tag the JSONL posts of ``input`` (stdin when None or "-") -> JSONL on ``stdout`` or in ``out``; with
    ``engine="ray"``, a folder of Parquet shards. For posts held in memory, ``Tagger.predict``."""
    config = config_from(PredictConfig, model_dir=model_dir, input=input, **params)
    if config.engine == "ray":
        from ..scale.predict import predict_on_ray  # Ray is an optional extra

        return predict_on_ray(config, stdin=stdin, log=log)
    from ..prediction.run import run_predict

    return run_predict(config, stdin=stdin, stdout=stdout, log=log)

"""``dghc.detect``: the detect stage from Python, on either engine."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..core.console import say
from ..core.params import config_from
from ..detection.config import DetectConfig

if TYPE_CHECKING:
    from ..detection.run import DetectSummary


def detect(files: Sequence[str | Path], *, log: Callable[[str], None] = say, **params: Any) -> DetectSummary:
    """The top regions of each post's image in the CoNLL ``files`` -> an HDF5 file (``out``), or a folder of shards
    with ``engine="ray"``. ``params``: the detect stage's parameters (``dghc detect --help``)."""
    config = config_from(DetectConfig, files=list(files), **params)
    if config.engine == "ray":
        from ..scale.detect import detect_on_ray  # Ray is an optional extra

        return detect_on_ray(config, log=log)
    from ..detection.run import run_detect

    return run_detect(config, log=log)

"""``dghc.extract``: the extract stage from Python, on either engine."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..core.params import config_from
from ..features.config import ExtractConfig

if TYPE_CHECKING:
    from ..features.extract import ExtractResult


def extract(files: Sequence[str | Path], **params: Any) -> ExtractResult:
    """CLIP vectors of each image of the CoNLL ``files`` and of its detected regions -> an HDF5 file (``out``), or a
    folder of shards with ``engine="ray"``. ``params``: the extract stage's parameters (``dghc extract --help``)."""
    config = config_from(ExtractConfig, files=list(files), **params)
    if config.engine == "ray":
        from ..scale.extract import extract_on_ray  # Ray is an optional extra

        return extract_on_ray(config)
    from ..features.extract import extract_features

    return extract_features(config)

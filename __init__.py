"""dghc: multimodal named-entity recognition for posts with an image (the DGHC model), as an offline pipeline
with cached vision features.

From Python (each name is imported on first use, so ``import dghc`` and ``dghc --help`` stay fast):

    from dghc import Tagger
    tagger = Tagger.from_pretrained("cache/model")
    tagger.predict([{"text": "Jordan in Paris", "image": "photo.jpg"}])

``dghc.detect``, ``dghc.extract``, ``dghc.train`` and ``dghc.evaluate`` run the stages with keyword arguments
named as the stages' parameters (``dghc STAGE --help``).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Tagger": ".pipeline.prediction.tagger",
    "detect": ".pipeline.api.detect",
    "extract": ".pipeline.api.extract",
    "train": ".pipeline.api.train",
    "evaluate": ".pipeline.api.evaluate",
    "predict": ".pipeline.api.predict",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dghc' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)

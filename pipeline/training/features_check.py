"""Matching a features file to a trained model: the vectors must come from the same vision encoder and settings."""
from __future__ import annotations

from pathlib import Path

from pipeline.training.batching import VisualFeatures
from pipeline.training.checkpoint import Checkpoint
from pipeline.core.errors import DghcError

# Keys of a features fingerprint that may differ between the file a model was trained with and the file it
# is applied to: which images were detected (another split or dataset), the stored precision, and how the
# model was named (a folder may be given by another path; ``weights_sha256`` identifies the weights).
IGNORED_KEYS = frozenset({"detections_fingerprint_sha256", "dtype", "model"})


def model_defining_keys(fingerprint: dict) -> dict:
    """The part of a features fingerprint that must be equal for a model to read the vectors correctly."""
    return {key: value for key, value in fingerprint.items() if key not in IGNORED_KEYS}


def open_features_for(checkpoint: Checkpoint, features_file: str | Path | None) -> VisualFeatures | None:
    """The feature store to use with a checkpoint (None for a text-only model), checked against it."""
    if not checkpoint.tagger.config.use_image:
        return None
    if features_file is None:
        raise DghcError("this model uses the image: give --features (the file `dghc extract` wrote for this data)")
    if not Path(features_file).is_file():
        raise DghcError(f"features file {features_file} not found: run `dghc extract` on this data first")
    from pipeline.features.store import FeatureStore

    store = FeatureStore(features_file)
    if checkpoint.features_fingerprint:
        store.require(model_defining_keys(checkpoint.features_fingerprint))
    if store.dim != checkpoint.tagger.config.vision_dim:
        raise DghcError(f"{features_file} holds {store.dim}-d vectors but the model expects "
                        f"{checkpoint.tagger.config.vision_dim}-d ones")
    return store

"""The cached image vectors a tagger reads, and the checks that they are the right ones.

A features file must cover every post (an unknown id would silently be read as text only) and come from the
vision encoder and settings the model expects: for a trained model, those it was trained with.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core.errors import DghcError
from ..data.conll import Post
from ..features.store import FeatureStore
from ..model.batching import VisualFeatures

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

# Keys of a features fingerprint that may differ between the file a model was trained with and the file it
# is applied to: which images were detected (another split or dataset), the stored precision, and how the
# model was named (a folder may be given by another path; ``weights_sha256`` identifies the weights).
IGNORED_KEYS = frozenset({"detections_fingerprint_sha256", "dtype", "model"})
# Below this share of training posts with an image, the image path has seen too few examples to be trusted.
RARE_IMAGE_SHARE = 0.05

logger = logging.getLogger(__name__)


def require_coverage(features: VisualFeatures, posts: Sequence[Post], what: str) -> None:
    """Refuse posts whose id the features file does not know: the model would silently read them as text only.

    (A post whose image is missing has a row in the file, with its mask off; an unknown id means the file was
    made for other data.)
    """
    unknown = [p.post_id for p in posts if p.post_id not in features]
    if unknown:
        path = getattr(features, "path", "the features file")
        raise DghcError(f"{path} has no row for {len(unknown)} of the {len(posts)} posts of {what} "
                        f"(e.g. {', '.join(unknown[:3])}): run `dghc detect` and `dghc extract` on this data "
                        "and pass that features file")


def image_share(features: VisualFeatures, posts: Sequence[Post]) -> float:
    """Share of ``posts`` whose image vector is present."""
    if not posts:
        return 0.0
    _, mask = features.batch([p.post_id for p in posts])
    return float(mask[:, 0].float().mean())


def warn_if_images_rare(share: float | None, what: str) -> None:
    """One warning when a model learned its image path from too few posts (None: not recorded, older models)."""
    if share is not None and share < RARE_IMAGE_SHARE:
        logger.warning("%s: only %.1f%% of the training posts had an image (under %.0f%%): the image path learned "
                       "from few examples; compare with a text-only model (use_image false) before trusting it",
                       what, 100 * share, 100 * RARE_IMAGE_SHARE)


def model_defining_keys(fingerprint: dict) -> dict:
    """The part of a features fingerprint that must be equal for a model to read the vectors correctly."""
    return {key: value for key, value in fingerprint.items() if key not in IGNORED_KEYS}


def open_for_model(checkpoint: Checkpoint, features_file: str | Path | None) -> FeatureStore | None:
    """The feature store to use with a trained model (None for a text-only model), checked against it."""
    if not checkpoint.tagger.config.use_image:
        return None
    if features_file is None:
        raise DghcError("this model uses the image: give --features (the file `dghc extract` wrote for this data)")
    if not Path(features_file).exists():  # a file, or the folder of shards of --engine ray
        raise DghcError(f"features file {features_file} not found: run `dghc extract` on this data first")
    store = FeatureStore(features_file)
    if checkpoint.features_fingerprint:
        store.require(model_defining_keys(checkpoint.features_fingerprint))
    warn_if_images_rare(checkpoint.info.get("train_image_share"), "this model")
    if store.dim != checkpoint.tagger.config.vision_dim:
        raise DghcError(f"{features_file} holds {store.dim}-d vectors but the model expects "
                        f"{checkpoint.tagger.config.vision_dim}-d ones")
    return store

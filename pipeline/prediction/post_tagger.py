"""Posts in, output records out: a trained model with its visual pipeline (detect + CLIP on the fly).

``PostTagger`` is what both engines of ``dghc predict`` run (the local loop, and each Ray actor) and what
``Tagger.predict`` runs from Python. A record is one line of predict's JSONL output (see ``run``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..data.conll import Post
from ..data.images import load_image
from ..data.tags import bio_spans
from ..inference.tagging import predict
from ..inference.visual_features import warn_if_images_rare
from .config import PredictConfig
from .inputs import InputPost
from .visual import NO_IMAGE, ImageRequest, ImageResult, MemoryFeatures, VisualPipeline


def empty_image_counts() -> dict[str, int]:
    return {"present": 0, "missing": 0, "unreadable": 0, NO_IMAGE: 0}


def entities_of(post: InputPost, labels: Sequence[str]) -> list[dict[str, Any]]:
    """The BIO labels' entities with token spans (end exclusive) and character offsets in ``post.text``."""
    entities = []
    for entity_type, start, end in bio_spans(labels):
        start_char, end_char = post.tokens[start].start, post.tokens[end - 1].end
        entities.append({"text": post.text[start_char:end_char], "type": entity_type, "start_token": start,
                         "end_token": end, "start_char": start_char, "end_char": end_char})
    return entities


def post_record(post: InputPost, prediction: Any, image: ImageResult) -> dict[str, Any]:
    visual = image.status == "present"
    relevance = prediction.relevance if visual else None
    gates = prediction.gates if visual else None
    return {
        "id": post.post_id,
        "tokens": post.words,
        "entities": entities_of(post, prediction.labels),
        "relevance": None if relevance is None else round(float(relevance), 6),
        "gates": None if gates is None else [[round(float(g), 6) for g in row] for row in gates],
        "image_status": image.status,
        "image_reason": image.reason,
        "regions": image.regions if visual else [],
        "words_cut": prediction.words_cut,
    }




@dataclass
class TaggedPost:
    record: dict[str, Any]  # the output line
    note: str  # a line for the user ("" when none): the post's image is missing or unreadable


class PostTagger:
    """A trained model on its device, with its visual pipeline (detect + CLIP on the fly): posts in, records out.

    The local engine runs one; ``--engine ray`` runs one in each actor.
    """

    def __init__(self, checkpoint: Any, device: Any, *, model_dir: Path, with_images: bool,
                 log: Callable[[str], None], batch_size: int = PredictConfig.batch_size,
                 precision: str = PredictConfig.precision, detector_weights: str | None = None,
                 grounding_weights: str | None = None, clip_model: str | None = None) -> None:
        """``model_dir``: the checkpoint's folder (named in messages); without ``with_images`` (no post has an
        image) no detector or CLIP is built. The other arguments are predict's options of the same names."""
        self.checkpoint, self.device = checkpoint, device
        self.batch_size, self.precision = batch_size, precision
        self.tagger = checkpoint.tagger.to(device)
        self.pipeline = None
        if self.tagger.config.use_image and with_images:
            self.pipeline = VisualPipeline.from_checkpoint(checkpoint, Path(model_dir), device,
                                                           detector_weights=detector_weights,
                                                           grounding_weights=grounding_weights,
                                                           clip_model=clip_model, warn=log)
            warn_if_images_rare(checkpoint.info.get("train_image_share"), str(model_dir))

    @classmethod
    def from_config(cls, config: PredictConfig, checkpoint: Any, device: Any, with_images: bool,
                    log: Callable[[str], None]) -> PostTagger:
        """The tagger ``dghc predict`` runs with ``config``'s settings."""
        return cls(checkpoint, device, model_dir=Path(config.model_dir), with_images=with_images, log=log,
                   batch_size=config.batch_size, precision=config.precision,
                   detector_weights=config.detector_weights, grounding_weights=config.grounding_weights,
                   clip_model=config.clip_model)

    def tag(self, chunk: Sequence[InputPost], source: str) -> list[TaggedPost]:
        """Detect + encode the chunk's images, tag its posts; ``source`` names the input in the notes."""
        pipeline, tagger = self.pipeline, self.tagger
        images = _images_of(chunk, pipeline)
        features = MemoryFeatures(pipeline.dim, pipeline.m) if pipeline is not None else None
        if pipeline is not None:
            requests = [ImageRequest(p.post_id, p.image, p.words) for p in chunk if p.image is not None]
            images.update(pipeline.run(requests, features))
        if tagger.config.use_image and features is None:  # no post has an image: every visual slot is masked
            features = MemoryFeatures(tagger.config.vision_dim, tagger.config.num_regions)
        tag_posts = [Post(p.post_id, p.words, ["O"] * len(p.tokens), None, p.line) for p in chunk]
        predictions = predict(tagger, self.checkpoint.tokenizer, tag_posts, features,
                              batch_size=self.batch_size, device=self.device, precision=self.precision)
        tagged = []
        for post, prediction in zip(chunk, predictions):
            image = images[post.post_id]
            note = ""
            if image.status in ("missing", "unreadable"):
                note = (f"predict: {source}:{post.line}: image {post.image} of post {post.post_id!r} is "
                        f"{image.status} ({image.reason}); tagged from the text alone")
            tagged.append(TaggedPost(post_record(post, prediction, image), note))
        return tagged


def _images_of(chunk: Sequence[InputPost], pipeline: Any) -> dict[str, ImageResult]:
    """Status of the images that are not run through the visual pipeline (none given; text-only model)."""
    results = {}
    for post in chunk:
        if post.image is None:
            results[post.post_id] = ImageResult(NO_IMAGE)
        elif pipeline is None:
            # a text-only model: the image is not used, but its status still tells the user about a wrong path
            loaded = load_image(post.image)
            if loaded.image is not None:
                loaded.image.close()
            results[post.post_id] = ImageResult(loaded.status.label, loaded.reason)
    return results

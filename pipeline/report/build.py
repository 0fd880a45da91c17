"""``dghc report``: tag a data file with and without the image and write one page of sampled posts.

The page shows summary counts and scores, then a sample of posts: the helped and hurt ones first, then a seeded
sample of the rest (``analysis``). Each post shows its image thumbnail with the kept regions, the tokens with gold
and predicted entities, the entities of both runs, the relevance score and the gates per layer (``render``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..artifacts.atomic import write_text_atomically
from ..artifacts.lock import output_lock
from ..core.devices import tagging_device
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..data.conll import default_images_dir, read_conll
from ..data.images import ImageStatus, load_image
from ..detection.store import Detections, Region, load_detections
from ..inference.checkpoint import load_checkpoint
from ..inference.evaluation import evaluate, gold_type_map
from ..inference.tagging import PostPrediction
from ..inference.visual_features import open_for_model
from .analysis import Effect, MaskedFeatures, choose_samples, image_effect
from .config import DEFAULT_DETECTIONS, ReportConfig
from .render import ReportItem, ReportSummary, render_report


@dataclass
class ReportResult:
    path: Path
    summary: ReportSummary
    shown: list[str]  # post ids in page order


def _regions_for(post_id: str, detections: Detections | None,
                 image: Image.Image | None) -> tuple[list[Region], str]:
    if detections is None:
        return [], "no detections file: regions not shown"
    if post_id not in detections.index:
        return [], "not in the detections file: regions not shown"
    row = detections.index[post_id]
    width, height = (int(v) for v in detections.image_size[row])
    if image is not None and (width, height) != (0, 0) and (width, height) != image.size:
        return [], (f"the detections were made on a {width}x{height} image, this one is "
                    f"{image.width}x{image.height}: rerun `dghc detect`")
    return detections.regions(post_id), ""


def build_report(config: ReportConfig) -> ReportResult:
    """Tag DATA with and without the image, choose the posts to show, write OUT/index.html atomically (one run per
    OUT; SIGINT/SIGTERM stop it at once, with the page unwritten)."""
    with stop_signals("report", at_once=True), output_lock(config.out):
        return _build_report(config)


def _build_report(config: ReportConfig) -> ReportResult:
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise DghcError(f"--out {config.out} is a file: give a folder (the page is written as FOLDER/index.html)")
    device = tagging_device("report", config.device, config.precision)
    checkpoint = load_checkpoint(config.model)
    posts, _ = read_conll(config.data, config.images, type_map=gold_type_map(checkpoint, config.keep_other))
    if not posts:
        raise DghcError(f"{config.data}: no posts to report on")
    features = open_for_model(checkpoint, config.features)
    detections_path = config.detections
    notes: list[str] = []
    if detections_path is None and DEFAULT_DETECTIONS.is_file():
        detections_path = DEFAULT_DETECTIONS
    detections = load_detections(detections_path) if detections_path is not None else None
    if detections is None:
        notes.append("No detections file was given (and cache/detections.h5 does not exist): regions are not drawn.")
    if features is not None and getattr(features, "untrained", False):
        notes.append("The features come from an UNTRAINED CLIP (random weights): the image vectors are a fixed "
                     "random function of the pixels, not learned visual features.")

    with_image = evaluate(checkpoint, posts, features, config.batch_size, device, config.progress,
                          allow_missing_features=True, precision=config.precision)
    scores = {"with image" if features is not None else "text-only model": with_image.metrics["default"]}
    text_only: list[PostPrediction | None] = [None] * len(posts)
    if features is not None:
        masked = evaluate(checkpoint, posts, MaskedFeatures(features), config.batch_size, device,
                          config.progress, allow_missing_features=True, precision=config.precision)
        text_only = list(masked.predictions)
        scores["image masked (text-only path)"] = masked.metrics["default"]
    effects = [image_effect(post.labels, prediction.labels, alone.labels if alone else None)
               for post, prediction, alone in zip(posts, with_image.predictions, text_only)]
    if features is not None:
        counts = {effect.value: effects.count(effect) for effect in (Effect.HELPED, Effect.HURT, Effect.SAME)}
    else:
        counts = {Effect.TEXT_ONLY_MODEL.value: len(posts)}

    # Which visual slots the model read per post (image, r1..rm): a post without an image vector gets a
    # relevance score from a zero vector, which means nothing and is left out of the mean.
    slots: list[list[bool]] | None = None
    relevance_mean = None
    if features is not None:
        slots = features.batch([post.post_id for post in posts])[1].tolist()
        read = [p.relevance for p, s in zip(with_image.predictions, slots) if s[0] and p.relevance is not None]
        relevance_mean = sum(read) / len(read) if read else None

    chosen = choose_samples(effects, config.samples, config.seed)
    items = []
    for index in chosen:
        post = posts[index]
        loaded = load_image(post.image_path)
        regions, note = _regions_for(post.post_id, detections, loaded.image)
        items.append(ReportItem(post, with_image.predictions[index], text_only[index], effects[index],
                                image=loaded.image, image_status=ImageStatus(loaded.status).label,
                                image_reason=loaded.reason, regions=regions, region_note=note,
                                visual_slots=slots[index] if slots is not None else None))
    statuses = [item.image_status for item in items]
    if any(status != ImageStatus.PRESENT.label for status in statuses):
        folder = config.images if config.images is not None else default_images_dir(config.data)
        counts_text = ", ".join(f"{statuses.count(s.label)} {s.label}" for s in ImageStatus if statuses.count(s.label))
        notes.append(f"Images of the shown posts (looked for in {folder}): {counts_text}.")
    summary = ReportSummary(title=f"dghc report: {Path(config.model).name} on {Path(config.data).name}",
                            posts=len(posts), effects=counts, scores=scores, notes=notes,
                            relevance_mean=relevance_mean)
    page = render_report(items, summary)
    out = Path(config.out) / "index.html"
    write_text_atomically(out, page)
    return ReportResult(out, summary, [posts[i].post_id for i in chosen])

"""``dghc predict``: tag new posts with a trained checkpoint, JSONL in, JSONL out.

Each output line:

    {"id": "p1", "tokens": ["Jordan", "scored"], "entities": [{"text": "Jordan", "type": "PER",
     "start_token": 0, "end_token": 1, "start_char": 0, "end_char": 6}], "relevance": 0.83,
     "gates": [[0.4, 0.3, 0.2, 0.1], ...], "image_status": "present", "image_reason": "",
     "regions": [{"box": [x1, y1, x2, y2], "class_name": "Normal", "score": 0.91, "source": "detector"}],
     "words_cut": 0}

``relevance`` and ``gates`` (layers x blocks) are null for a text-only model and for a post whose image is not
present (the model's visual prefix is then fully masked and it tags from the text alone), and each is null for a
model trained without it (the ablations use_relevance / use_gates false). Posts are read and
checked first (errors name the line), then processed in chunks of ``batch_size``: detect + encode their images,
tag, write. Output lines follow the input order.
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence, TextIO

from tqdm import tqdm

from ..artifacts.atomic import atomic_text
from ..artifacts.lock import output_lock
from ..core.console import say
from ..core.devices import tagging_device
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..data.conll import Post
from ..data.images import load_image
from ..data.raw_text import TextSplit
from ..data.tags import bio_spans
from ..inference.checkpoint import load_checkpoint
from ..inference.tagging import predict
from ..inference.visual_features import warn_if_images_rare
from .config import PredictConfig
from .inputs import InputPost, open_input, read_posts
from .visual import NO_IMAGE, ImageRequest, ImageResult, MemoryFeatures, VisualPipeline


@dataclass
class PredictSummary:
    posts: int = 0
    entities: int = 0
    image_status: dict[str, int] = field(default_factory=dict)
    skipped_lines: int = 0
    out: Path | None = None

    def add(self, record: dict[str, Any]) -> None:
        """Count one written post."""
        self.posts += 1
        self.entities += len(record["entities"])
        self.image_status[record["image_status"]] += 1

    def format(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.image_status.items()) if n)
        text = f"predict: tagged {self.posts} post(s), {self.entities} entities; images: {counts or 'none'}"
        if self.skipped_lines:
            text += f"; {self.skipped_lines} bad line(s) skipped"
        if self.out is not None:
            text += f"; written: {self.out}"
        return text


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


@contextlib.contextmanager
def _output_stream(out: Path | None, stdout: TextIO) -> Iterator[TextIO]:
    """stdout, or ``out`` written atomically: all of it or, after an error, nothing."""
    if out is None:
        yield stdout
        return
    with atomic_text(out) as handle:
        yield handle


def run_predict(config: PredictConfig, *, stdin: BinaryIO | None = None, stdout: TextIO | None = None,
                log: Callable[[str], None] = say) -> PredictSummary:
    """Read and check every input line, then tag chunk by chunk and write the JSONL output (one run per ``--out``;
    SIGINT/SIGTERM stop it at once, with ``--out`` unwritten)."""
    kept = f"{config.out} was not written" if config.out else "the posts tagged so far were written to stdout"
    if config.engine == "ray":
        from ..scale.session import import_ray

        import_ray()  # first: no work before saying that Ray is missing
        if config.out is None:
            raise DghcError("--engine ray writes a folder of Parquet shards: name it with --out (e.g. --out "
                            "predictions)")
        kept = f"the finished shards are kept in {config.out}: rerun the same command to resume"
    with stop_signals("predict", at_once=True, kept=kept), \
            output_lock(*([config.out] if config.out is not None else []), note=log):
        return _predict(config, stdin, stdout, log)


def _predict(config: PredictConfig, stdin: BinaryIO | None, stdout: TextIO | None,
             log: Callable[[str], None]) -> PredictSummary:
    if config.out is not None and config.input is not None and str(config.input) != "-" \
            and Path(config.out).resolve() == Path(config.input).resolve():
        raise DghcError(f"--out {config.out} is the input file: write the output elsewhere")
    stdin = stdin if stdin is not None else sys.stdin.buffer
    checkpoint = load_checkpoint(config.model_dir)  # first: its training data says how to cut raw text into words
    stream, source, base_dir = open_input(config.input, stdin)
    try:
        read = read_posts(stream, source=source, base_dir=base_dir, skip_bad=config.skip_bad, warn=log,
                          split=TextSplit.from_json(checkpoint.info.get("text_split"),
                                                    f"{Path(config.model_dir) / 'dghc.json'}"))
    finally:
        if stream is not stdin:
            stream.close()
    if read.unknown_fields:
        log(f"predict: {source}: ignoring unknown field(s) {', '.join(read.unknown_fields)} "
            "(known: id, text, tokens, image)")
    posts = read.posts
    if config.engine == "ray":
        from ..scale.predict import predict_on_ray  # Ray is an optional extra

        if checkpoint.tagger.config.use_image and any(post.image is not None for post in posts):
            warn_if_images_rare(checkpoint.info.get("train_image_share"), str(config.model_dir))

        return predict_on_ray(config, posts, source, skipped_lines=len(read.skipped), log=log)
    device = tagging_device("predict", config.device, config.precision)
    tagger = PostTagger(config, checkpoint, device, with_images=any(post.image is not None for post in posts),
                        log=log)
    summary = PredictSummary(skipped_lines=len(read.skipped), out=config.out, image_status=empty_image_counts())
    with _output_stream(config.out, stdout if stdout is not None else sys.stdout) as output, \
            tqdm(total=len(posts), unit="post", desc="predict", file=sys.stderr,
                 disable=not config.progress) as bar:
        # messages go around the progress bar instead of through it
        note = (lambda message: bar.write(message, file=sys.stderr)) if config.progress else log
        for start in range(0, len(posts), config.batch_size):
            chunk = posts[start: start + config.batch_size]
            tagged = tagger.tag(chunk, source)
            for item in tagged:
                if item.note:
                    note(item.note)
                summary.add(item.record)
            output.writelines(json.dumps(item.record, ensure_ascii=False) + "\n" for item in tagged)
            output.flush()
            bar.update(len(chunk))
    return summary


@dataclass
class TaggedPost:
    record: dict[str, Any]  # the output line
    note: str  # a line for the user ("" when none): the post's image is missing or unreadable


class PostTagger:
    """A trained model on its device, with its visual pipeline (detect + CLIP on the fly): posts in, records out.

    The local engine runs one; ``--engine ray`` runs one in each actor.
    """

    def __init__(self, config: PredictConfig, checkpoint: Any, device: Any, with_images: bool,
                 log: Callable[[str], None]) -> None:
        self.config, self.checkpoint, self.device = config, checkpoint, device
        self.tagger = checkpoint.tagger.to(device)
        self.pipeline = None
        if self.tagger.config.use_image and with_images:
            self.pipeline = VisualPipeline.from_checkpoint(checkpoint, Path(config.model_dir), device,
                                                           detector_weights=config.detector_weights,
                                                           grounding_weights=config.grounding_weights,
                                                           clip_model=config.clip_model, warn=log)
            warn_if_images_rare(checkpoint.info.get("train_image_share"), str(config.model_dir))

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
                              batch_size=self.config.batch_size, device=self.device, precision=self.config.precision)
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

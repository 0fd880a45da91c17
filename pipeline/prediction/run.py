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
from typing import Any, BinaryIO, Callable, Iterator, TextIO

from tqdm import tqdm

from ..artifacts.atomic import atomic_text
from ..artifacts.lock import output_lock
from ..core.console import say
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..data.raw_text import TextSplit
from .config import PredictConfig
from .inputs import InputPost, open_input, read_posts
from .post_tagger import empty_image_counts
from .tagger import Tagger


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
    """Read and check every input line, then tag chunk by chunk in this process and write the JSONL output (one run
    per ``--out``; SIGINT/SIGTERM stop it at once, with ``--out`` unwritten). ``--engine ray``: ``scale.predict``."""
    if config.engine != "local":  # the choice of engine is dghc.pipeline.api's
        raise DghcError(f"predict: this function runs the local engine; engine={config.engine!r} runs through "
                        f"dghc.pipeline.api.predict")
    kept = f"{config.out} was not written" if config.out else "the posts tagged so far were written to stdout"
    with stop_signals("predict", at_once=True, kept=kept), \
            output_lock(*([config.out] if config.out is not None else []), note=log):
        return _predict(config, stdin, stdout, log)


@dataclass
class PredictInput:
    """The posts to tag, read and checked, with the model whose training data said how to cut raw text."""

    tagger: Tagger
    posts: list[InputPost]
    source: str  # the input's name in messages (a path, or <stdin>)
    skipped_lines: int  # bad lines skipped under skip_bad


def read_input(config: PredictConfig, stdin: BinaryIO | None, log: Callable[[str], None]) -> PredictInput:
    """Load the checkpoint and read every input line (errors name the line) before any tagging: both engines."""
    if config.out is not None and config.input is not None and str(config.input) != "-" \
            and Path(config.out).resolve() == Path(config.input).resolve():
        raise DghcError(f"--out {config.out} is the input file: write the output elsewhere")
    stdin = stdin if stdin is not None else sys.stdin.buffer
    tagger = Tagger.from_folder(config.model_dir)  # first: its training data says how to cut raw text into words
    checkpoint = tagger.checkpoint
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
    return PredictInput(tagger, read.posts, source, len(read.skipped))


def _predict(config: PredictConfig, stdin: BinaryIO | None, stdout: TextIO | None,
             log: Callable[[str], None]) -> PredictSummary:
    read = read_input(config, stdin, log)
    posts, source = read.posts, read.source
    tagger = read.tagger.post_tagger(device=config.device, batch_size=config.batch_size, precision=config.precision,
                                     detector_weights=config.detector_weights,
                                     grounding_weights=config.grounding_weights, clip_model=config.clip_model,
                                     with_images=any(post.image is not None for post in posts), log=log)
    summary = PredictSummary(skipped_lines=read.skipped_lines, out=config.out, image_status=empty_image_counts())
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

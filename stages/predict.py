"""``dghc predict MODEL [INPUT]``: tag new posts, JSONL in, JSONL out."""
from __future__ import annotations

import logging

import click

from ..pipeline.core.console import setup_logging
from ..pipeline.prediction.config import PredictConfig
from .options import as_arguments, configured


@click.command("predict")
@configured(PredictConfig)
def predict_command(config: PredictConfig) -> None:
    """Tag the posts of INPUT (JSONL; stdin when absent or -) with the model in MODEL.

    \b
    Input, one JSON object per line:
      {"id": "p1", "text": "Jordan scored twice", "image": "photos/p1.jpg"}
      {"id": "p2", "tokens": ["Jordan", "scored", "twice"]}
    id: unique string (only names the post). text: raw text, split into words with character offsets;
    or tokens: the words, and character offsets then refer to the tokens joined by single spaces.
    image (optional): a path, relative to INPUT's folder (to the current folder for stdin).

    \b
    Output, one JSON object per post, in input order:
      {"id", "tokens", "entities": [{"text", "type", "start_token", "end_token" (exclusive),
       "start_char", "end_char"}], "relevance", "gates" (layers x blocks), "image_status"
       (present|missing|unreadable|none), "image_reason", "regions": [{"box", "class_name", "score",
       "source"}], "words_cut"}
    relevance and gates are null for a text-only model and for a post without a present image
    (the model then tags from the text alone).

    Images are detected and encoded here, with the detector and CLIP model recorded in MODEL (their
    weights must be the same: sha256 checked). A text-only model needs no images.

    With --engine ray, posts are tagged by a pool of Ray actors and --out is a folder of Parquet shards
    (one row per post, the fields above as columns) plus _index.json; a rerun skips finished shards.
    """
    from ..pipeline.api.predict import predict  # torch: imported only when the command runs

    setup_logging(logging.WARNING)
    # stdin and stdout are looked up at call time (sys.stdin.buffer, sys.stdout), so CliRunner's streams work too
    summary = predict(**as_arguments(config), log=lambda message: click.echo(message, err=True))
    click.echo(summary.format(), err=True)

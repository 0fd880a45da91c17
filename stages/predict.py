"""``dghc predict MODEL [INPUT]``: tag new posts, JSONL in, JSONL out."""
from __future__ import annotations

import logging
from pathlib import Path

import click


@click.command("predict")
@click.argument("model_dir", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the JSONL here (atomically: all or nothing). Default: stdout.")
@click.option("--batch-size", default=32, show_default=True, help="Posts per batch (detection, CLIP, tagging).")
@click.option("--device", default="auto", show_default=True,
              help="auto (the GPU when there is one), cpu, cuda, cuda:N.")
@click.option("--skip-bad", is_flag=True, help="Skip bad input lines with a warning (default: stop at the first).")
@click.option("--detector-weights", default=None, metavar="FILE",
              help="Where the detector weights the model records lie, if not found by name (sha256 is checked).")
@click.option("--grounding-weights", default=None, metavar="FILE",
              help="Same for the grounding detector's weights.")
@click.option("--clip-model", default=None, metavar="NAME|DIR",
              help="Where the CLIP model the model records lies, if not found by name (weights sha256 is checked).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def predict_command(model_dir, input_file, out, batch_size, device, skip_bad, detector_weights, grounding_weights,
                    clip_model, no_progress) -> None:
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
    """
    from pipeline.prediction.run import PredictConfig, run_predict

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    config = PredictConfig(model_dir=model_dir, input=input_file, out=out, batch_size=batch_size, device=device,
                           skip_bad=skip_bad, detector_weights=detector_weights, grounding_weights=grounding_weights,
                           clip_model=clip_model, progress=not no_progress)
    # stdin and stdout are looked up at call time (sys.stdin.buffer, sys.stdout), so CliRunner's streams work too
    summary = run_predict(config, log=lambda message: click.echo(message, err=True))
    click.echo(summary.format(), err=True)

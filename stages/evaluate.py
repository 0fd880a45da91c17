"""``dghc evaluate MODEL DATA``: score a checkpoint on any split, also of another dataset."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click


@click.command("evaluate")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("data_file", type=click.Path(path_type=Path))
@click.option("--features", "features_file", type=click.Path(path_type=Path), default=None,
              help="Features file covering DATA's images (needed by models that use the image).")
@click.option("--metrics", "metrics_file", type=click.Path(path_type=Path), default=None,
              help="Write P/R/F1 (overall and per type, both seqeval modes), mean relevance and gates as JSON.")
@click.option("--summary", "summary_file", type=click.Path(path_type=Path), default=None,
              help="Write a short flat JSON (overall P/R/F1 in both modes, mean relevance) for `dvc metrics show`.")
@click.option("--predictions", "predictions_file", type=click.Path(path_type=Path), default=None,
              help="Write token, gold and predicted labels in CoNLL columns.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--keep-other", is_flag=True, help="Keep OTHER as its own type instead of MISC.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="params.yaml whose 'evaluate' section gives defaults (options given here win).")
@click.pass_context
def evaluate_command(ctx: click.Context, model_dir, data_file, features_file, metrics_file, summary_file,
                     predictions_file, batch_size, keep_other, device, params_file) -> None:
    """Score the model in MODEL_DIR on the CoNLL file DATA_FILE and print overall P/R/F1.

    Works on any split, also of another dataset than the one trained on (its features file must come from
    the same vision model). Scores are entity-level, in seqeval's default (conlleval) and strict modes.
    """
    from stages.params import apply_params

    apply_params(ctx, params_file, "evaluate")
    batch_size, device = ctx.params["batch_size"], ctx.params["device"]
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.data.conll import read_conll
    from pipeline.training.evaluation import evaluate, predictions_conll
    from pipeline.training.features_check import open_features_for
    from pipeline.artifacts.atomic import write_text_atomically
    from pipeline.data.tags import OTHER_AS_MISC, invalid_bio_positions

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    checkpoint = load_checkpoint(model_dir)
    # Gold as written (stray I- kept): default mode reads it as conlleval does, strict mode as IOB2.
    posts, _ = read_conll(data_file, type_map=None if keep_other else OTHER_AS_MISC, invalid_bio="keep")
    features = open_features_for(checkpoint, features_file)
    result = evaluate(checkpoint, posts, features, batch_size, device, progress=True)
    invalid = sum(len(invalid_bio_positions(p.labels)) for p in posts)
    metrics = {**result.metrics, "data": str(data_file), "model": str(model_dir), "gold_invalid_bio": invalid}
    for mode in ("default", "strict"):
        overall = metrics[mode]["overall"]
        click.echo(f"{mode:>7}: P {overall['precision']:.4f} R {overall['recall']:.4f} F1 {overall['f1']:.4f}")
    if metrics["relevance_mean"] is not None:
        click.echo(f"mean relevance score: {metrics['relevance_mean']:.4f}")
    if metrics_file:
        write_text_atomically(metrics_file, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if summary_file:
        summary = {f"{mode}_{key}": round(metrics[mode]["overall"][key], 4)
                   for mode in ("default", "strict") for key in ("precision", "recall", "f1")}
        summary["relevance_mean"] = None if metrics["relevance_mean"] is None else round(metrics["relevance_mean"], 4)
        write_text_atomically(summary_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if predictions_file:
        write_text_atomically(predictions_file, predictions_conll(posts, result.predictions))

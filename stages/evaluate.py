"""``dghc evaluate MODEL DATA``: score a checkpoint on any split, also of another dataset."""
from __future__ import annotations

import json
import logging

import click

from ..pipeline.core.console import setup_logging
from ..pipeline.inference.config import EvaluateConfig
from .options import configured


@click.command("evaluate")
@configured(EvaluateConfig)
def evaluate_command(config: EvaluateConfig) -> None:
    """Score the model in MODEL_DIR on the CoNLL file DATA_FILE and print overall P/R/F1.

    Works on any split, also of another dataset than the one trained on (its features file must come from
    the same vision model). Scores are entity-level, in seqeval's default (conlleval) and strict modes.
    """
    from ..pipeline.artifacts.lock import output_lock
    from ..pipeline.core.signals import stop_signals

    setup_logging(logging.INFO)
    outputs = [path for path in (config.metrics_file, config.summary_file, config.predictions_file) if path]
    with stop_signals("evaluate", at_once=True), \
            output_lock(*outputs, note=lambda message: click.echo(message, err=True)):
        _evaluate(config)


def _evaluate(config: EvaluateConfig) -> None:
    from ..pipeline.artifacts.atomic import write_text_atomically
    from ..pipeline.core.console import points
    from ..pipeline.prediction.tagger import Tagger  # torch: imported only when the stage runs

    evaluation = Tagger.from_folder(config.model_dir).evaluate(
        config.data_file, config.features_file, batch_size=config.batch_size, device=config.device,
        precision=config.precision, keep_other=config.keep_other, allow_unseen_types=config.allow_unseen_types,
        progress=True)
    metrics = evaluation.metrics
    for mode in ("default", "strict"):
        overall = metrics[mode]["overall"]
        click.echo(f"{mode:>7}: P {points(overall['precision'])} R {points(overall['recall'])} "
                   f"F1 {points(overall['f1'])}")
    if metrics["relevance_mean"] is not None:
        click.echo(f"mean relevance score: {metrics['relevance_mean']:.4f}")
    if config.metrics_file:
        write_text_atomically(config.metrics_file, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    if config.summary_file:
        summary = {f"{mode}_{key}": round(metrics[mode]["overall"][key], 4)
                   for mode in ("default", "strict") for key in ("precision", "recall", "f1")}
        summary["relevance_mean"] = None if metrics["relevance_mean"] is None else round(metrics["relevance_mean"], 4)
        write_text_atomically(config.summary_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if config.predictions_file:
        write_text_atomically(config.predictions_file, evaluation.predictions_conll())

"""``dghc train``: train the DGHC tagger on cached visual features; keeps the best dev checkpoint."""
from __future__ import annotations

import json
import logging

import click

from pipeline.training.config import TrainConfig
from stages.options import configured


@click.command("train")
@configured(TrainConfig)
def train_command(config: TrainConfig) -> None:
    """Train on --train, score --dev every epoch from eval_begin_epoch, keep the best checkpoint in --out.

    Every parameter can also come from the `train` section of a params file (--params) or --set KEY=VALUE.
    """
    from pipeline.artifacts.atomic import write_text_atomically
    from pipeline.training.trainer import train  # torch and transformers: imported only when the stage runs

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    result = train(config)
    click.echo(f"best epoch: {result.best_epoch}; checkpoint: {result.output_dir}")
    if result.best_dev:
        overall = result.best_dev["default"]["overall"]
        click.echo(f"dev P {overall['precision']:.4f} R {overall['recall']:.4f} F1 {overall['f1']:.4f} "
                   "(seqeval default mode)")
    if config.metrics_file:
        summary: dict = {"best_epoch": result.best_epoch}
        if result.best_dev:
            for mode in ("default", "strict"):
                for key in ("precision", "recall", "f1"):
                    summary[f"dev_{mode}_{key}"] = round(result.best_dev[mode]["overall"][key], 4)
        write_text_atomically(config.metrics_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")

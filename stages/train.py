"""``dghc train``: train the DGHC tagger on cached visual features; keeps the best dev checkpoint."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from stages.params import build_config, load_section, parse_overrides


@click.command("train")
@click.option("--params", "params_file", type=click.Path(path_type=Path), default=None,
              help="A params.yaml whose 'train' section gives the parameters.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one parameter, e.g. --set epochs=3 --set use_image=false (repeatable).")
@click.option("--train", "train_file", default=None, help="Training split (CoNLL).")
@click.option("--dev", "dev_file", default=None, help="Dev split used to pick the best epoch.")
@click.option("--features", "features_file", default=None, help="Features file from `dghc extract`.")
@click.option("--out", "output_dir", default=None, help="Folder for the best checkpoint.")
@click.option("--metrics", "metrics_file", type=click.Path(path_type=Path), default=None,
              help="Write the best epoch and its dev P/R/F1 (flat JSON, for `dvc metrics show`).")
def train_command(params_file, overrides, train_file, dev_file, features_file, output_dir, metrics_file) -> None:
    """Train on TRAIN, evaluate on DEV every epoch from eval_begin_epoch, keep the best checkpoint.

    \b
    Parameters (all in params.yaml's `train` section, see README):
      encoder, use_image, use_relevance, use_gates, use_regions, text_vector (encoder|embeddings),
      epochs, batch_size, lr_encoder, lr_head, lr_crf, weight_decay, warmup_ratio, max_grad_norm, seed,
      eval_begin_epoch, early_stop_patience, max_length, ...
    """
    from pipeline.artifacts.atomic import write_text_atomically
    from pipeline.training.trainer import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    values = load_section(params_file, "train")
    explicit = {k: v for k, v in {"train_file": train_file, "dev_file": dev_file, "features_file": features_file,
                                  "output_dir": output_dir}.items() if v is not None}
    config = build_config(TrainConfig, values, {**parse_overrides(overrides), **explicit},
                          str(params_file or "train options"))
    result = train(config)
    click.echo(f"best epoch: {result.best_epoch}; checkpoint: {result.output_dir}")
    if result.best_dev:
        overall = result.best_dev["default"]["overall"]
        click.echo(f"dev P {overall['precision']:.4f} R {overall['recall']:.4f} F1 {overall['f1']:.4f} "
                   "(seqeval default mode)")
    if metrics_file:
        summary: dict = {"best_epoch": result.best_epoch}
        if result.best_dev:
            for mode in ("default", "strict"):
                for key in ("precision", "recall", "f1"):
                    summary[f"dev_{mode}_{key}"] = round(result.best_dev[mode]["overall"][key], 4)
        write_text_atomically(metrics_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")

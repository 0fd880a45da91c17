"""Training the DGHC tagger on cached visual features: AdamW groups, warmup, clipping, best dev checkpoint."""
from __future__ import annotations

import csv
import io
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm
from transformers import set_seed

from pipeline.artifacts.atomic import write_text_atomically
from pipeline.core.errors import DghcError
from pipeline.data.conll import Post, read_conll
from pipeline.data.tags import OTHER_AS_MISC, bioes_label_set, entity_types
from pipeline.detection.store import read_fingerprint
from pipeline.model.encoder import load_encoder_and_tokenizer
from pipeline.model.tagger import DGHCTagger
from pipeline.training.batching import batches, make_examples
from pipeline.training.checkpoint import Checkpoint, save_checkpoint
from pipeline.training.config import TrainConfig
from pipeline.training.inference import predict
from pipeline.training.metrics import all_modes
from pipeline.training.optim import make_optimizer, make_scheduler
from pipeline.training.visual_features import VisualFeatures, open_for_training, require_coverage

logger = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    dev_precision: float | None = None
    dev_recall: float | None = None
    dev_f1: float | None = None


@dataclass
class TrainResult:
    best_epoch: int | None
    best_dev: dict | None  # scores of the best epoch in both modes
    history: list[EpochRecord]
    output_dir: Path


def read_split(path: str, merge_other: bool, what: str) -> list[Post]:
    posts, report = read_conll(path, type_map=OTHER_AS_MISC if merge_other else None)
    if not posts:
        raise DghcError(f"{path}: the {what} split has no posts")
    if report.bio_repairs:
        logger.warning("%s: repaired %d invalid BIO tags (stray I- read as B-)", path, report.bio_repairs)
    return posts


def evaluate_posts(tagger: DGHCTagger, tokenizer, posts: Sequence[Post], features: VisualFeatures | None,
                   batch_size: int, device: str) -> dict:
    predictions = predict(tagger, tokenizer, posts, features, batch_size=batch_size, device=device)
    return all_modes([p.labels for p in posts], [p.labels for p in predictions])


def train(config: TrainConfig, train_posts: Sequence[Post] | None = None,
          dev_posts: Sequence[Post] | None = None, features: VisualFeatures | None = None) -> TrainResult:
    """Train, evaluate on dev from ``eval_begin_epoch``, keep the best dev checkpoint in ``output_dir``.

    Posts and features may be given directly (tests); otherwise they are read from the configured files.
    """
    set_seed(config.seed)
    train_posts = list(train_posts) if train_posts is not None else read_split(config.train_file, config.merge_other, "train")
    dev_posts = list(dev_posts) if dev_posts is not None else read_split(config.dev_file, config.merge_other, "dev")
    if not train_posts:
        raise DghcError("the train split has no posts")
    if features is None:
        features = open_for_training(config)
    if features is not None:
        require_coverage(features, train_posts, config.train_file)
        require_coverage(features, dev_posts, config.dev_file)
    labels = bioes_label_set(entity_types([p.labels for p in train_posts]))
    vision_dim = features.dim if features is not None else 0
    num_regions = features.m if features is not None else 3
    encoder, tokenizer = load_encoder_and_tokenizer(config.encoder)
    tagger = DGHCTagger(config.model_config(labels, vision_dim, num_regions), encoder).to(config.device)
    label_to_id = {label: i for i, label in enumerate(labels)}
    examples = make_examples(train_posts, tokenizer, tagger.max_length, label_to_id)

    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = make_optimizer(tagger, config)
    scheduler = make_scheduler(optimizer, config, total_steps)
    fingerprint = getattr(features, "fingerprint", None)
    detections_fingerprint = read_fingerprint(config.detections_file) if config.use_image else None

    history: list[EpochRecord] = []
    best_f1, best_epoch, best_dev, stale = -1.0, None, None, 0
    generator = random.Random(config.seed)
    log_path = Path(config.log_file) if config.log_file else None
    for epoch in range(1, config.epochs + 1):
        tagger.train()
        order = list(range(len(examples)))
        generator.shuffle(order)
        iterator = batches(examples, config.batch_size, tokenizer.pad_token_id, features, order)
        if config.progress:
            iterator = tqdm(iterator, total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}", unit="batch")
        total_loss = 0.0
        for _, batch in iterator:
            loss = tagger.loss(batch.to(config.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tagger.parameters(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if config.progress:
                iterator.set_postfix(loss=f"{loss.item():.3f}")
        record = EpochRecord(epoch, total_loss / steps_per_epoch)
        if epoch >= config.eval_begin_epoch and dev_posts:
            scores = evaluate_posts(tagger, tokenizer, dev_posts, features, config.batch_size * 2, config.device)
            overall = scores[config.eval_mode]["overall"]
            record.dev_precision, record.dev_recall, record.dev_f1 = (
                overall["precision"], overall["recall"], overall["f1"])
            logger.info("epoch %d: loss %.4f dev F1 %.4f", epoch, record.loss, overall["f1"])
            if overall["f1"] > best_f1:
                best_f1, best_epoch, best_dev, stale = overall["f1"], epoch, scores, 0
                info = {"best_epoch": epoch, "dev_scores": scores, "encoder": config.encoder,
                        "train_config": config.to_json()}
                save_checkpoint(config.output_dir,
                                Checkpoint(tagger, tokenizer, fingerprint, detections_fingerprint, info))
            else:
                stale += 1
        history.append(record)
        if log_path:
            write_log(log_path, history)
        if config.early_stop_patience and stale >= config.early_stop_patience:
            logger.info("no dev improvement in %d epochs: stopping early", stale)
            break
    if best_epoch is None:  # no dev evaluation happened: keep the last model
        info = {"best_epoch": None, "dev_scores": None, "encoder": config.encoder, "train_config": config.to_json()}
        save_checkpoint(config.output_dir, Checkpoint(tagger, tokenizer, fingerprint, detections_fingerprint, info))
    return TrainResult(best_epoch, best_dev, history, Path(config.output_dir))


def write_log(path: Path, history: Sequence[EpochRecord]) -> None:
    """Per-epoch CSV that `dvc plots` can draw (x: epoch)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "loss", "dev_precision", "dev_recall", "dev_f1"])
    for r in history:
        writer.writerow([r.epoch, f"{r.loss:.6f}"] + ["" if v is None else f"{v:.6f}"
                                                       for v in (r.dev_precision, r.dev_recall, r.dev_f1)])
    write_text_atomically(path, buffer.getvalue())

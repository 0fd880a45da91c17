"""Training the DGHC tagger on cached visual features: AdamW groups, warmup, clipping, best dev checkpoint."""
from __future__ import annotations

import csv
import logging
import math
import random
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from pipeline.training.batching import VisualFeatures, batches, make_examples, require_coverage
from pipeline.training.checkpoint import Checkpoint, save_checkpoint
from pipeline.data.conll import Post, read_conll
from pipeline.core.errors import DghcError
from pipeline.training.inference import predict
from pipeline.training.metrics import all_modes
from pipeline.model.tagger import DGHCTagger, ModelConfig
from pipeline.data.tags import bioes_label_set, entity_types
from pipeline.model.encoder import PACKAGED_MINILM, load_encoder_and_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every training parameter (params.yaml section ``train``). Defaults follow the paper (DESIGN.md)."""

    train_file: str = "data/demo/train.txt"
    dev_file: str = "data/demo/valid.txt"
    features_file: str = "cache/features.h5"
    detections_file: str = "cache/detections.h5"  # only its fingerprint is read (recorded for predict)
    output_dir: str = "cache/model"
    log_file: str = "cache/train_log.csv"
    encoder: str = PACKAGED_MINILM
    # model (see ModelConfig)
    use_image: bool = True
    use_relevance: bool = True
    use_gates: bool = True
    use_regions: bool = True
    text_vector: str = "encoder"
    prompt_len: int = 4
    prompt_dim: int = 800
    dropout: float = 0.1
    max_length: int = 128
    # optimisation
    epochs: int = 30
    batch_size: int = 16
    lr_encoder: float = 3e-5
    lr_head: float = 1e-3  # relevance, gates, prefix, emissions
    lr_crf: float = 5e-2
    weight_decay: float = 0.01
    warmup_ratio: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 1234
    eval_begin_epoch: int = 1
    early_stop_patience: int = 0  # epochs without dev improvement before stopping; 0 = never
    eval_mode: str = "default"  # seqeval mode that picks the best checkpoint
    merge_other: bool = True
    device: str = "cpu"
    progress: bool = True
    expected_features: dict = field(default_factory=dict)  # fingerprint keys the features file must have

    def __post_init__(self) -> None:
        """Coerce values read from YAML or ``--set`` to each field's type, and check the choices.

        YAML reads ``3e-5`` as a string and a quoted ``"false"`` would be true: both are converted or refused
        here, before any training time is spent.
        """
        for spec in fields(self):
            default = spec.default
            value = getattr(self, spec.name)
            if default is MISSING or value is None or isinstance(default, dict):
                continue
            setattr(self, spec.name, _coerce(spec.name, value, type(default)))
        choices = {"text_vector": ("encoder", "embeddings"), "eval_mode": ("default", "strict")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DghcError(f"train parameter {name} must be one of {', '.join(allowed)}, "
                                f"not {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_begin_epoch"):
            if getattr(self, name) < 1:
                raise DghcError(f"train parameter {name} must be at least 1, not {getattr(self, name)}")
        if self.max_length < 3:
            raise DghcError("train parameter max_length must be at least 3 (two special tokens and a word)")

    def model_config(self, labels: list[str], vision_dim: int, num_regions: int) -> ModelConfig:
        """The model's parameters: the fields this config shares with ModelConfig, plus what the data gives."""
        given = {"labels": labels, "vision_dim": vision_dim, "num_regions": num_regions}
        shared = {f.name: getattr(self, f.name) for f in fields(ModelConfig) if f.name not in given}
        return ModelConfig(**given, **shared)


def _coerce(name: str, value, kind: type):
    """``value`` as ``kind`` (bool, int, float or str), or a DghcError naming the parameter."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            text = str(value).strip().lower()
            if text in ("true", "yes", "1"):
                return True
            if text in ("false", "no", "0"):
                return False
            raise ValueError
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    raise DghcError(f"train parameter {name} must be a {kind.__name__}, not {value!r}")


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


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def parameter_groups(tagger: DGHCTagger, config: TrainConfig) -> list[dict]:
    """AdamW groups: encoder / new layers / CRF, each split into decayed and not decayed (biases, LayerNorm).

    Every trainable parameter lands in exactly one group (a check, since a forgotten head would silently
    stay at its initial values).
    """
    groups: dict[tuple[str, bool], list] = {}
    rates = {"encoder": config.lr_encoder, "head": config.lr_head, "crf": config.lr_crf}
    for name, parameter in tagger.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "encoder" if name.startswith("encoder.") else "crf" if name.startswith("crf.") else "head"
        no_decay = name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name or part == "crf"
        groups.setdefault((part, no_decay), []).append(parameter)
    result = [{"params": params, "lr": rates[part], "weight_decay": 0.0 if no_decay else config.weight_decay,
               "name": f"{part}{'/no_decay' if no_decay else ''}"} for (part, no_decay), params in groups.items()]
    grouped = {id(p) for g in result for p in g["params"]}
    trainable = {id(p) for p in tagger.parameters() if p.requires_grad}
    if grouped != trainable:
        raise RuntimeError(f"{len(trainable - grouped)} trainable parameters are in no optimizer group")
    return result


def make_optimizer(tagger: DGHCTagger, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the parameter groups; the fused kernel when the device has one (on CPU it is several times
    faster than the per-tensor loop, which matters since the optimizer touches every encoder weight each step)."""
    groups = parameter_groups(tagger, config)
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups)


def linear_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def read_split(path: str, merge_other: bool, what: str) -> list[Post]:
    from pipeline.data.tags import OTHER_AS_MISC

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


def open_features(config: TrainConfig) -> VisualFeatures | None:
    if not config.use_image:
        return None
    from pipeline.features.store import FeatureStore

    if not Path(config.features_file).is_file():
        raise DghcError(f"features file {config.features_file} not found: run `dghc extract` first "
                        "(or train text only with use_image false)")
    store = FeatureStore(config.features_file)
    if config.expected_features:
        store.require(config.expected_features)
    return store


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
        features = open_features(config)
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
    scheduler = linear_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    fingerprint = getattr(features, "fingerprint", None)
    detections_fingerprint = read_detections_fingerprint(config.detections_file) if config.use_image else None

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
            from tqdm import tqdm
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
                        "train_config": asdict(config)}
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
        info = {"best_epoch": None, "dev_scores": None, "encoder": config.encoder, "train_config": asdict(config)}
        save_checkpoint(config.output_dir, Checkpoint(tagger, tokenizer, fingerprint, detections_fingerprint, info))
    return TrainResult(best_epoch, best_dev, history, Path(config.output_dir))


def read_detections_fingerprint(path: str) -> dict | None:
    """The settings fingerprint of a detections file (None when there is no such file)."""
    if not path or not Path(path).is_file():
        return None
    import json

    import h5py

    try:
        with h5py.File(path, "r") as handle:
            raw = handle.attrs.get("fingerprint")
        return json.loads(raw) if raw is not None else None
    except (OSError, ValueError) as err:
        raise DghcError(f"{path}: cannot read its fingerprint ({err}); rerun `dghc detect`") from None


def write_log(path: Path, history: Sequence[EpochRecord]) -> None:
    """Per-epoch CSV that `dvc plots` can draw (x: epoch)."""
    from io import StringIO

    from pipeline.artifacts.atomic import write_text_atomically

    buffer = StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "loss", "dev_precision", "dev_recall", "dev_f1"])
    for r in history:
        writer.writerow([r.epoch, f"{r.loss:.6f}"] + ["" if v is None else f"{v:.6f}"
                                                       for v in (r.dev_precision, r.dev_recall, r.dev_f1)])
    write_text_atomically(path, buffer.getvalue())

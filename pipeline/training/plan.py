"""What a training run will do, fixed before it starts: the splits it reads, its features store, the detection
settings its model records, its schedule, and the key a saved state must match to be resumed.

The schedule is the same on every process and replayed on resume: each epoch's order of the training posts is a
seeded shuffle (``epoch_order``); ``batch_size`` posts make a pass and ``grad_accum_steps`` passes an optimizer step
(``epoch_steps``); the posts of a pass are split across the processes (``share``).
"""
from __future__ import annotations

import logging
import random
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import torch

from ... import pipeline
from ..artifacts.fingerprint import code_sha256, import_closure, sha256_json
from ..core.errors import DghcError
from ..data.conll import Post, read_conll, require_posts
from ..data.entity_types import likely_typos, refuse_unseen_types, type_uses
from ..data.tags import OTHER_AS_MISC, invalid_bio_positions
from ..detection.store import read_fingerprint
from ..features.store import FeatureStore
from ..model.batching import VisualFeatures
from .config import TrainConfig

logger = logging.getLogger(__name__)

# Parameters that do not change what training computes: a state saved under other values still resumes.
NOT_IN_RESUME_KEY = frozenset({"train_file", "dev_file", "features_file", "detections_file", "output_dir", "log_file",
                               "metrics_file", "state_dir", "save_every_epochs",
                               "save_every_steps", "restart", "no_restart", "progress", "allow_unseen_types",
                               # recomputes the same activations: switched on after an out-of-memory, a run resumes
                               "gradient_checkpointing"})

# The module that holds ``train``: its imports, followed through the package, are all the code a run runs (this
# module's own closure would miss the loop).
TRAINING_ENTRY = f"{__package__}.trainer"


def read_split(path: str | Path, merge_other: bool, what: str) -> list[Post]:
    """Train: stray I- tags repaired into B- (what the model learns). Dev: gold as written, like `dghc evaluate`,
    so that its strict-mode scores are comparable (the default mode reads a stray I- as B- either way)."""
    train = what == "train"
    posts, report = read_conll(path, type_map=OTHER_AS_MISC if merge_other else None,
                               invalid_bio="repair" if train else "keep")
    require_posts(posts, path, f"train's {what} split")
    if report.bio_repairs:
        logger.warning("%s: repaired %d invalid BIO tags (stray I- read as B-)", path, report.bio_repairs)
    stray = 0 if train else sum(len(invalid_bio_positions(p.labels)) for p in posts)
    if stray:
        logger.warning("%s: %d stray I- tags kept as written (strict mode counts no entity there)", path, stray)
    return posts


def check_types(train_posts: Sequence[Post], dev_posts: Sequence[Post], config: TrainConfig) -> None:
    """A rare type that looks like a frequent one is named with its line (a tag typo becomes a type of its own);
    a dev type that training never sees is refused unless allowed (it could only be scored as missed)."""
    for message in likely_typos(type_uses(train_posts), config.train_file):
        logger.warning("%s", message)
    if not config.allow_unseen_types:
        refuse_unseen_types(dev_posts, set(type_uses(train_posts)), config.dev_file, "--allow-unseen-types")


def open_for_training(config: TrainConfig) -> FeatureStore | None:
    """The features file of a training run (None for a text-only model)."""
    if not config.use_image:
        return None
    if not Path(config.features_file).exists():  # a file, or the folder of shards of --engine ray
        raise DghcError(f"features file {config.features_file} not found: run `dghc extract` first "
                        "(or train text only with use_image false)")
    return FeatureStore(config.features_file)


def recorded_detections(features: VisualFeatures | None, detections_file: Path) -> dict | None:
    """The detection settings a model records for `dghc predict` (those of ``detections_file``), with a warning
    when the file is missing or is not the one the features were extracted from: training itself reads only the
    vectors, so either mistake would otherwise show up only when predict tags a new image."""
    settings = read_fingerprint(detections_file)
    if settings is None:
        logger.warning("%s: no detections file there: the model records no detection settings, so `dghc predict` "
                       "cannot tag new images with it (give --detections, the file the features were extracted "
                       "from)", detections_file)
        return None
    made_from = (getattr(features, "fingerprint", None) or {}).get("detections_fingerprint_sha256")
    if made_from and made_from != sha256_json(settings):
        logger.warning("%s is not the detections file the features were extracted from (other settings): `dghc "
                       "predict` will detect regions with its settings (give --detections, the file the features "
                       "were extracted from)", detections_file)
    return settings


def epoch_order(count: int, seed: int, epoch: int) -> list[int]:
    """The order of the training posts in ``epoch`` (1-based): the epoch-th shuffle of a generator seeded once,
    replayed so that a resumed run gets the very same order."""
    generator = random.Random(seed)
    order: list[int] = []
    for _ in range(epoch):
        order = list(range(count))
        generator.shuffle(order)
    return order


def epoch_steps(order: list[int], config: TrainConfig) -> list[list[list[int]]]:
    """The epoch as optimizer steps, each a list of passes (post indices). With several processes a last pass
    shorter than the number of processes is filled up from the epoch's start, so that no process is idle."""
    passes = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    if config.processes > 1 and len(passes[-1]) < config.processes:
        passes[-1] = passes[-1] + order[:config.processes - len(passes[-1])]
    return [passes[i:i + config.grad_accum_steps] for i in range(0, len(passes), config.grad_accum_steps)]


def share(indices: list[int], rank: int, processes: int) -> list[int]:
    """This process's contiguous share of a pass (sizes differ by at most one)."""
    size, extra = divmod(len(indices), processes)
    start = rank * size + min(rank, extra)
    return indices[start:start + size + (1 if rank < extra else 0)]


def resume_key(config: TrainConfig, train_posts: Sequence[Post], dev_posts: Sequence[Post],
               features: VisualFeatures | None, device: torch.device) -> dict[str, Any]:
    """What a saved state must have been made with to be resumed: parameters, data, features, code, processes."""
    params = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in NOT_IN_RESUME_KEY}
    # the code training runs: the entry module's imports, followed through the package (an edit elsewhere, or of a
    # comment, keeps a saved state usable)
    code = code_sha256(sorted(import_closure(TRAINING_ENTRY, Path(pipeline.__file__).parents[1], ("dghc.pipeline",))))
    return {
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in params.items()},
        "train_data": sha256_json([[p.post_id, p.tokens, p.labels] for p in train_posts]),
        "dev_data": sha256_json([[p.post_id, p.tokens, p.labels] for p in dev_posts]),
        "features": getattr(features, "fingerprint_sha256", None),
        "code": f"dghc {pipeline.__version__}, training code sha256 {code[:16]}",
        "device_type": device.type,
    }

"""Training the DGHC tagger on cached visual features, with Hugging Face Accelerate: ``train``, the set-up of a
run, and its loop of epochs.

Accelerate places the model, wraps it for data parallelism over several processes (gloo on the CPU, one GPU each
with CUDA) and runs mixed precision (``precision``: autocast, and a gradient scaler for fp16). The loop itself is
ours, because resuming must be exact: a rerun of the same command resumes from the saved state, and on the CPU the
final weights equal those of an uninterrupted run, tensor for tensor. Its parts, one module each:

- ``plan``: what a run will do before it starts: the splits, each epoch's seeded order of the posts (the same on
  every process) and its optimizer steps, each process's share of a pass, the key a saved state must match;
- ``distributed``: the Accelerator of this process, the stop signal every process agrees on, dev scoring split
  across the processes and gathered: every post exactly once;
- ``state``: the resumable state (weights and their average, optimizer, scheduler, scaler, every process's RNGs,
  progress), saved every ``save_every_epochs`` epochs and every ``save_every_steps`` steps;
- ``run``: a run once set up: an optimizer step, an epoch, dev scoring and the best checkpoint, the end of an
  epoch, the final write.

Rank 0 alone writes the best checkpoint, the log and the state.
"""
from __future__ import annotations

import contextlib
import gc
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import set_seed

from ..artifacts.lock import output_lock
from ..core.errors import DghcError
from ..core.signals import StopRequest, stop_signals
from ..data.conll import Post
from ..data.raw_text import TextSplit
from ..data.tags import bioes_label_set, entity_types
from ..data.word_shape import tokenizer_lowercases
from ..inference.visual_features import image_share, require_coverage, warn_if_images_rare
from ..model.batching import VisualFeatures, make_examples
from ..model.encoder import load_encoder_and_tokenizer
from ..model.tagger import DGHCTagger
from .config import TrainConfig
from .distributed import make_accelerator
from .optim import make_optimizer, make_scheduler, make_weight_average
from .plan import check_types, epoch_steps, open_for_training, read_split, recorded_detections, resume_key
from .run import EpochRecord, Run, TrainingStep
from .state import Progress, StateFolder, restore_rng

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    best_epoch: int | None
    best_dev: dict | None  # scores of the best epoch in both modes
    history: list[EpochRecord]
    output_dir: Path
    effective_batch: int  # posts per optimizer step: per-process share x processes x accumulation
    resumed_from: tuple[int, int] | None  # (epochs done, steps into the next) of the state resumed, if any
    is_main_process: bool = True


def train(config: TrainConfig, train_posts: Sequence[Post] | None = None,
          dev_posts: Sequence[Post] | None = None, features: VisualFeatures | None = None) -> TrainResult:
    """Train, score dev from ``eval_begin_epoch``, keep the best dev checkpoint in ``output_dir``; resume from the
    state in ``state_dir`` when there is one for this run.

    One run per output folder and state (a second one is refused at once); SIGINT/SIGTERM stop it after the
    current optimizer step, with the state saved. Posts and features may be given directly (tests); otherwise
    they are read from the configured files.
    """
    accelerator = make_accelerator(config)
    lock = output_lock(config.output_dir, config.state_dir, note=logger.warning) if accelerator.is_main_process \
        else contextlib.nullcontext()
    with stop_signals("train") as stop, lock:
        run = set_up_run(config, accelerator, train_posts, dev_posts, features)
        progress = run.progress
        failed_at = run_epochs(run, stop)
        if failed_at is not None:  # outside the handler: the traceback's frames and their tensors are gone
            raise out_of_memory(config, accelerator.device, failed_at)
        run.finish()
        history = [EpochRecord(**r) for r in progress.history]
        return TrainResult(progress.best_epoch, progress.best_dev, history, Path(config.output_dir),
                           run.info["effective_batch"], run.resumed_from, accelerator.is_main_process)


def run_epochs(run: Run, stop: StopRequest) -> str | None:
    """The loop of epochs from where the progress stands; where it ran out of GPU memory ("epoch E, step S" or
    "epoch E, dev scoring"), or None when it ran to the end (or stopped early).

    Running out of memory leaves the state saved so far as it is (the last epoch's or ``save_every_steps``' save),
    so that rerunning the command resumes from it."""
    config, progress = run.config, run.progress
    where = None
    try:
        for epoch in range(progress.epoch + 1, config.epochs + 1):
            where = f"epoch {epoch}, step {{step}}"
            record = run.train_epoch(epoch, stop)
            if epoch >= config.eval_begin_epoch and run.dev_posts:
                where = f"epoch {epoch}, dev scoring"
                run.score_and_keep(epoch, record)
            where = None
            if run.end_epoch(epoch, record):
                break
    except torch.OutOfMemoryError:  # torch.cuda.OutOfMemoryError is the same class
        if where is None:
            raise
        return where.format(step=progress.step_in_epoch + 1)  # the step that failed: the ones before it are done
    return None


def out_of_memory(config: TrainConfig, device: Any, where: str) -> DghcError:
    """The one-line error of a run that ran out of GPU memory, naming the knobs that lower its memory use; the
    cached blocks of the allocator are released first."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return DghcError(f"train: out of GPU memory on {device} at {where} (batch_size {config.batch_size}, "
                     f"grad_accum_steps {config.grad_accum_steps}, precision {config.precision}, max_length "
                     f"{config.max_length}): lower batch_size and raise grad_accum_steps to keep the effective batch, "
                     "use precision bf16/fp16, set gradient_checkpointing, or lower max_length; rerun the same "
                     f"command to resume from the state saved in {config.state_dir}")


def set_up_run(config: TrainConfig, accelerator: Any, train_posts: Sequence[Post] | None,
               dev_posts: Sequence[Post] | None, features: VisualFeatures | None) -> Run:
    """The run, set up: data, model, optimizer and schedule, and the saved state if there is one for it."""
    main = accelerator.is_main_process
    set_seed(config.seed)
    train_posts = list(train_posts) if train_posts is not None else read_split(config.train_file, config.merge_other,
                                                                               "train")
    dev_posts = list(dev_posts) if dev_posts is not None else read_split(config.dev_file, config.merge_other, "dev")
    check_types(train_posts, dev_posts, config)
    if features is None:
        features = open_for_training(config)
    if features is not None:
        require_coverage(features, train_posts, str(config.train_file))
        require_coverage(features, dev_posts, str(config.dev_file))
    labels = bioes_label_set(entity_types([p.labels for p in train_posts]))
    vision_dim = features.dim if features is not None else 0
    num_regions = features.m if features is not None else 3
    encoder, tokenizer = load_encoder_and_tokenizer(config.encoder)
    tagger = DGHCTagger(config.model_config(labels, vision_dim, num_regions, tokenizer_lowercases(tokenizer)), encoder)
    if config.gradient_checkpointing:
        tagger.set_gradient_checkpointing(True)
    examples = make_examples(train_posts, tokenizer, tagger.max_length, {label: i for i, label in enumerate(labels)})

    steps_per_epoch = len(epoch_steps(list(range(len(examples))), config))
    optimizer = make_optimizer(tagger, config)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch * config.epochs)
    state_folder = StateFolder(config.state_dir)
    key = resume_key(config, train_posts, dev_posts, features, accelerator.device)
    if config.restart:
        if main:
            state_folder.clear()
        accelerator.wait_for_everyone()
    state = None if config.restart else state_folder.load(key, restart_damaged=not config.no_restart, clear=main,
                                                          note=logger.warning if main else lambda _: None)
    accelerator.wait_for_everyone()
    if state is not None:
        tagger.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        scheduler.load_state_dict(state.scheduler)
    step_module, optimizer = accelerator.prepare(TrainingStep(tagger.to(accelerator.device)), optimizer)
    if state is not None:
        if accelerator.scaler is not None and state.scaler is not None:
            accelerator.scaler.load_state_dict(state.scaler)
        restore_rng(state.rng[accelerator.process_index])
    average = make_weight_average(accelerator.unwrap_model(step_module).tagger, config.ema_decay)
    if average is not None and state is not None and state.average is not None:
        average.load_state_dict(state.average)
    progress = state.progress if state is not None else Progress()
    if main and state is not None:
        logger.info("resuming from %s: %d epoch(s) done, %d step(s) into the next", state.folder, progress.epoch,
                    progress.step_in_epoch)
    effective_batch = config.batch_size * config.grad_accum_steps
    if main:
        logger.info("effective batch: %d posts per optimizer step (%d per pass split over %d process(es) = ~%d "
                    "each, x %d accumulation)", effective_batch, config.batch_size, accelerator.num_processes,
                    math.ceil(config.batch_size / accelerator.num_processes), config.grad_accum_steps)
    train_image_share = image_share(features, train_posts) if features is not None else None
    if main:
        warn_if_images_rare(train_image_share, str(config.train_file))
    return Run(config, accelerator, step_module, optimizer, scheduler, average, state_folder, key, progress,
               examples, tokenizer, features, dev_posts,
               fingerprints=(getattr(features, "fingerprint", None),
                             recorded_detections(features, config.detections_file) if config.use_image else None),
               info={"encoder": config.encoder, "train_config": config.to_json(), "effective_batch": effective_batch,
                     "processes": accelerator.num_processes, "grad_accum_steps": config.grad_accum_steps,
                     "precision": config.precision, "train_image_share": train_image_share,
                     # how `dghc predict` cuts raw text into words: as this training data was cut
                     "text_split": asdict(TextSplit.of_words(p.tokens for p in train_posts))},
               resumed_from=(progress.epoch, progress.step_in_epoch) if state is not None else None)

"""Training the DGHC tagger on cached visual features, with Hugging Face Accelerate.

Accelerate places the model, wraps it for data parallelism over several processes (gloo on the CPU, one GPU each
with CUDA) and runs mixed precision (``precision``: autocast, and a gradient scaler for fp16). The loop itself is
ours, because resuming must be exact:

- each epoch's order of the training posts is a seeded shuffle (the same on every process); the posts of a pass
  (``batch_size`` of them) are split across the processes, and each process's loss is weighted so that the
  averaged gradient equals the one-process gradient of the whole pass;
- ``grad_accum_steps`` passes make one optimizer step; AdamW with transformers' warmup schedule; with
  ``ema_decay``, a moving average of the weights (torch's AveragedModel) is what dev scoring and the checkpoint use;
- dev scoring splits the dev posts across the processes and gathers the predictions: every post exactly once;
- the state (weights and their average, optimizer, scheduler, scaler, every process's RNGs, progress) is saved at the
  end of every ``save_every_epochs``-th epoch and every ``save_every_steps`` steps (``state``); rerunning the same
  command resumes from it, and on the CPU the final weights equal those of an uninterrupted run, tensor for tensor.

Rank 0 alone writes the best checkpoint, the log and the state.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import random
import shutil
import signal
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm import tqdm
from transformers import set_seed

from ... import pipeline
from ..artifacts.atomic import atomic_folder, write_text_atomically
from ..artifacts.fingerprint import code_sha256, import_closure, sha256_json
from ..artifacts.lock import output_lock
from ..core.console import points
from ..core.devices import announce_device, resolve_device
from ..core.errors import DghcError
from ..core.precision import autocast, check_precision
from ..core.signals import Interrupted, StopRequest, stop_signals
from ..data.conll import Post, read_conll
from ..data.raw_text import TextSplit
from ..data.tags import OTHER_AS_MISC, bioes_label_set, entity_types, invalid_bio_positions
from ..data.word_shape import tokenizer_lowercases
from ..detection.store import read_fingerprint
from ..features.store import FeatureStore
from ..inference.checkpoint import Checkpoint, save_checkpoint
from ..inference.metrics import all_modes
from ..inference.tagging import predict
from ..inference.visual_features import image_share, require_coverage, warn_if_images_rare
from ..model.batching import VisualFeatures, collate, make_examples
from ..model.encoder import load_encoder_and_tokenizer
from ..model.tagger import Batch, DGHCTagger
from .config import TrainConfig
from .optim import make_optimizer, make_scheduler, make_weight_average
from .state import Progress, StateFolder, capture_rng, restore_rng

logger = logging.getLogger(__name__)

# Parameters that do not change what training computes: a state saved under other values still resumes.
NOT_IN_RESUME_KEY = frozenset({"train_file", "dev_file", "features_file", "detections_file", "output_dir", "log_file",
                               "metrics_file", "state_dir", "save_every_epochs",
                               "save_every_steps", "restart", "no_restart", "progress"})


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
    effective_batch: int  # posts per optimizer step: per-process share x processes x accumulation
    resumed_from: tuple[int, int] | None  # (epochs done, steps into the next) of the state resumed, if any
    is_main_process: bool = True


class TrainingStep(nn.Module):
    """The tagger's loss as a module's forward: what the data-parallel wrapper synchronises."""

    def __init__(self, tagger: DGHCTagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.tagger.loss(batch, reduction="sum")


def read_split(path: str | Path, merge_other: bool, what: str) -> list[Post]:
    """Train: stray I- tags repaired into B- (what the model learns). Dev: gold as written, like `dghc evaluate`,
    so that its strict-mode scores are comparable (the default mode reads a stray I- as B- either way)."""
    train = what == "train"
    posts, report = read_conll(path, type_map=OTHER_AS_MISC if merge_other else None,
                               invalid_bio="repair" if train else "keep")
    if not posts:
        raise DghcError(f"{path}: the {what} split has no posts")
    if report.bio_repairs:
        logger.warning("%s: repaired %d invalid BIO tags (stray I- read as B-)", path, report.bio_repairs)
    stray = 0 if train else sum(len(invalid_bio_positions(p.labels)) for p in posts)
    if stray:
        logger.warning("%s: %d stray I- tags kept as written (strict mode counts no entity there)", path, stray)
    return posts


def make_accelerator(config: TrainConfig) -> Any:
    """The Accelerator of this process: its device, the precision, and the processes it runs with."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    device = resolve_device(config.device)
    check_precision(config.precision, device)
    if "WORLD_SIZE" not in os.environ:
        # Accelerate keeps one state per process and refuses another precision later in the same process (tests,
        # notebooks train several models): start from a fresh one; a launched multi-process run keeps its own.
        AcceleratorState._reset_state(reset_partial_state=True)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # one process runs on the current GPU: make it the one asked for
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=config.precision)
    if accelerator.is_main_process:
        announce_device("train", accelerator.device, config.device)
    if accelerator.num_processes != config.processes:
        raise DghcError(f"train: processes is {config.processes} but this run has {accelerator.num_processes}: start "
                        f"several with `dghc train --processes {config.processes}` (or torchrun/accelerate launch)")
    return accelerator


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


def open_for_training(config: TrainConfig) -> FeatureStore | None:
    """The features file of a training run (None for a text-only model)."""
    if not config.use_image:
        return None
    if not Path(config.features_file).exists():  # a file, or the folder of shards of --engine ray
        raise DghcError(f"features file {config.features_file} not found: run `dghc extract` first "
                        "(or train text only with use_image false)")
    return FeatureStore(config.features_file)


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
    # the code training runs: this module's imports, followed through the package (an edit elsewhere, or of a
    # comment, keeps a saved state usable)
    code = code_sha256(sorted(import_closure(__name__, Path(pipeline.__file__).parents[1], ("dghc.pipeline",))))
    return {
        "params": {k: str(v) if isinstance(v, Path) else v for k, v in params.items()},
        "train_data": sha256_json([[p.post_id, p.tokens, p.labels] for p in train_posts]),
        "dev_data": sha256_json([[p.post_id, p.tokens, p.labels] for p in dev_posts]),
        "features": getattr(features, "fingerprint_sha256", None),
        "code": f"dghc {pipeline.__version__}, training code sha256 {code[:16]}",
        "device_type": device.type,
    }


def score_dev(accelerator: Any, tagger: DGHCTagger, tokenizer: Any, dev_posts: Sequence[Post],
              features: VisualFeatures | None, config: TrainConfig) -> dict:
    """Dev P/R/F1 in both modes: each process tags its share of the posts, the predictions are gathered (every
    post exactly once, no padding), and every process computes the same scores."""
    from accelerate.utils import gather_object

    rank, processes = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(dev_posts), processes))
    with autocast(config.precision, accelerator.device):
        predicted = predict(tagger, tokenizer, [dev_posts[i] for i in mine], features,
                            batch_size=config.batch_size * 2, device=accelerator.device)
    gathered = gather_object([(i, p.labels) for i, p in zip(mine, predicted)]) if processes > 1 else \
        [(i, p.labels) for i, p in zip(mine, predicted)]
    labels = dict(gathered)
    if sorted(labels) != list(range(len(dev_posts))):
        raise RuntimeError("dev scoring lost or doubled posts across processes")
    tagger.train()
    return all_modes([p.labels for p in dev_posts], [labels[i] for i in range(len(dev_posts))])


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
        return _train(config, accelerator, stop, train_posts, dev_posts, features)


def _stop_agreed(stop: StopRequest, accelerator: Any) -> int | None:
    """The signal that stops training now, agreed by every process (they must stop at the same step)."""
    if accelerator.num_processes == 1:
        return stop.signum
    signums = accelerator.gather(torch.tensor([stop.signum or 0], device=accelerator.device))
    return int(signums.max()) or None


def _train(config: TrainConfig, accelerator: Any, stop: StopRequest, train_posts: Sequence[Post] | None,
           dev_posts: Sequence[Post] | None, features: VisualFeatures | None) -> TrainResult:
    """Set the run up (data, model, optimizer, the saved state if any), then train epoch by epoch."""
    main = accelerator.is_main_process
    set_seed(config.seed)
    train_posts = list(train_posts) if train_posts is not None else read_split(config.train_file, config.merge_other,
                                                                               "train")
    dev_posts = list(dev_posts) if dev_posts is not None else read_split(config.dev_file, config.merge_other, "dev")
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
    run = _Run(config, accelerator, step_module, optimizer, scheduler, average, state_folder, key, progress,
               examples, tokenizer, features, dev_posts,
               fingerprints=(getattr(features, "fingerprint", None),
                             recorded_detections(features, config.detections_file) if config.use_image else None),
               info={"encoder": config.encoder, "train_config": config.to_json(), "effective_batch": effective_batch,
                     "processes": accelerator.num_processes, "grad_accum_steps": config.grad_accum_steps,
                     "precision": config.precision, "train_image_share": train_image_share,
                     # how `dghc predict` cuts raw text into words: as this training data was cut
                     "text_split": asdict(TextSplit.of_words(p.tokens for p in train_posts))})

    resumed_from = (progress.epoch, progress.step_in_epoch) if state is not None else None
    for epoch in range(progress.epoch + 1, config.epochs + 1):
        record = run.train_epoch(epoch, stop)
        if epoch >= config.eval_begin_epoch and dev_posts:
            run.score_and_keep(epoch, record)
        if run.end_epoch(epoch, record):
            break
    run.finish()
    history = [EpochRecord(**r) for r in progress.history]
    return TrainResult(progress.best_epoch, progress.best_dev, history, Path(config.output_dir), effective_batch,
                       resumed_from, main)


@dataclass
class _Run:
    """One training run once set up: its prepared model, optimizer and schedule, and its progress. The parts of
    the loop are its methods: an epoch of optimizer steps, dev scoring, the end of an epoch, the final write."""

    config: TrainConfig
    accelerator: Any
    step_module: Any  # TrainingStep, prepared by Accelerate (wrapped for data parallelism)
    optimizer: Any
    scheduler: Any
    average: Any  # torch's AveragedModel of the tagger with ema_decay, else None
    state_folder: StateFolder
    key: dict[str, Any]  # the resume key saved with the state
    progress: Progress
    examples: list
    tokenizer: Any
    features: VisualFeatures | None
    dev_posts: Sequence[Post]
    fingerprints: tuple[dict | None, dict | None]  # of the features and detections files, for the checkpoint
    info: dict[str, Any]  # what every checkpoint records beside the best epoch and its scores

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def tagger(self) -> DGHCTagger:
        """The weights scored and kept: their moving average when there is one."""
        return self.average.module if self.average is not None else \
            self.accelerator.unwrap_model(self.step_module).tagger

    def checkpoint(self, best_epoch: int | None, scores: dict | None) -> Checkpoint:
        return Checkpoint(self.tagger(), self.tokenizer, *self.fingerprints,
                          {"best_epoch": best_epoch, "dev_scores": scores, **self.info})

    def save_progress(self) -> None:
        """Every process's RNG states go to rank 0, which writes the whole state."""
        from accelerate.utils import gather_object

        rng = gather_object([capture_rng()]) if self.accelerator.num_processes > 1 else [capture_rng()]
        if self.main:
            scaler = self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None
            self.state_folder.save(model=self.accelerator.unwrap_model(self.step_module).tagger.state_dict(),
                                   optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                                   scaler=scaler, rng=rng, progress=self.progress, resume_key=self.key,
                                   average=self.average.state_dict() if self.average is not None else None)
        self.accelerator.wait_for_everyone()

    def optimizer_step(self, step: list[list[int]]) -> torch.Tensor:
        """One optimizer step over the passes of ``step`` (post indices); returns its loss, the mean NLL of a pass
        as one process would compute it."""
        accelerator, processes = self.accelerator, self.accelerator.num_processes
        step_loss = torch.zeros((), device=accelerator.device)
        for number, indices in enumerate(step):
            mine = [self.examples[i] for i in share(indices, accelerator.process_index, processes)]
            batch = collate(mine, self.tokenizer.pad_token_id, self.features).to(accelerator.device)
            # sum of this share's NLL / posts of the pass: the average over processes (what data parallelism
            # does to gradients) times processes is the pass's mean NLL, as one process would compute it
            weight = processes / (len(indices) * len(step))
            last = number == len(step) - 1
            sync = contextlib.nullcontext() if last else accelerator.no_sync(self.step_module)
            with sync, accelerator.autocast():
                loss = self.step_module(batch) * weight
            accelerator.backward(loss)
            step_loss += loss.detach() / processes
        if processes > 1:
            step_loss = accelerator.reduce(step_loss, reduction="sum")
        if self.config.max_grad_norm > 0:  # 0: no clipping (a norm of 0 would scale every gradient to 0)
            accelerator.clip_grad_norm_(self.step_module.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update_parameters(self.accelerator.unwrap_model(self.step_module).tagger)
        return step_loss

    def train_epoch(self, epoch: int, stop: StopRequest) -> EpochRecord:
        """The epoch's optimizer steps from where the progress stands; a stop signal saves the state and raises."""
        config, progress = self.config, self.progress
        self.step_module.train()
        steps = epoch_steps(epoch_order(len(self.examples), config.seed, epoch), config)
        bar = tqdm(total=len(steps), initial=progress.step_in_epoch, desc=f"epoch {epoch}/{config.epochs}",
                   unit="step", disable=not (config.progress and self.main))
        for step in steps[progress.step_in_epoch:]:
            step_loss = self.optimizer_step(step)
            progress.step_in_epoch += 1
            progress.global_step += 1
            progress.loss_sum += float(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{float(step_loss):.3f}")
            signum = _stop_agreed(stop, self.accelerator)
            if signum is not None:
                self.save_progress()
                raise Interrupted(f"train: stopped by {signal.Signals(signum).name} at epoch {epoch}, step "
                                  f"{progress.step_in_epoch} of {len(steps)}; the state is saved in "
                                  f"{config.state_dir}: rerun the same command to resume", signum)
            if config.save_every_steps and progress.global_step % config.save_every_steps == 0 \
                    and progress.step_in_epoch < len(steps):
                self.save_progress()
        bar.close()
        return EpochRecord(epoch, progress.loss_sum / len(steps))

    def score_and_keep(self, epoch: int, record: EpochRecord) -> None:
        """Score dev into ``record``; a better score than the best so far writes the best checkpoint (rank 0)."""
        progress = self.progress
        scores = score_dev(self.accelerator, self.tagger(), self.tokenizer, self.dev_posts, self.features,
                           self.config)
        overall = scores[self.config.eval_mode]["overall"]
        record.dev_precision, record.dev_recall, record.dev_f1 = overall["precision"], overall["recall"], overall["f1"]
        if self.main:
            logger.info("epoch %d: loss %.4f dev F1 %s", epoch, record.loss, points(overall["f1"]))
        if overall["f1"] > progress.best_score:
            progress.best_score, progress.best_epoch, progress.best_dev = overall["f1"], epoch, scores
            progress.stale = 0
            if self.main:
                save_checkpoint(self.state_folder.best, self.checkpoint(epoch, scores))
        else:
            progress.stale += 1

    def end_epoch(self, epoch: int, record: EpochRecord) -> bool:
        """Record the epoch, write the log and the state; True when training stops early."""
        config, progress = self.config, self.progress
        progress.history.append(asdict(record))
        progress.epoch, progress.step_in_epoch, progress.loss_sum = epoch, 0, 0.0
        if self.main and config.log_file:
            write_log(Path(config.log_file), [EpochRecord(**r) for r in progress.history])
        early_stop = bool(config.early_stop_patience and progress.stale >= config.early_stop_patience)
        # An epoch that wrote a new best/ saves the state too: a resumed run must know that best (or it could
        # finish with a best/ its records do not describe).
        if epoch < config.epochs and not early_stop and (epoch % config.save_every_epochs == 0
                                                          or progress.best_epoch == epoch):
            self.save_progress()
        if early_stop and self.main:
            logger.info("no dev improvement in %d epochs: stopping early", progress.stale)
        return early_stop

    def finish(self) -> None:
        """The best checkpoint (or, without dev scoring, the last weights) into ``output_dir``; the state emptied."""
        if self.main:
            if self.progress.best_epoch is None:  # no dev scoring happened: keep the last model
                save_checkpoint(self.config.output_dir, self.checkpoint(None, None))
            else:
                with atomic_folder(self.config.output_dir) as staging:
                    shutil.copytree(self.state_folder.best, staging, dirs_exist_ok=True)
            self.state_folder.clear()  # a finished run leaves nothing to resume
        self.accelerator.wait_for_everyone()


def write_log(path: Path, history: Sequence[EpochRecord]) -> None:
    """Per-epoch CSV that `dvc plots` can draw (x: epoch)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", "loss", "dev_precision", "dev_recall", "dev_f1"])
    for r in history:
        writer.writerow([r.epoch, f"{r.loss:.6f}"] + ["" if v is None else f"{v:.6f}"
                                                       for v in (r.dev_precision, r.dev_recall, r.dev_f1)])
    write_text_atomically(path, buffer.getvalue())

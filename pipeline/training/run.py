"""One training run once set up, and the parts of its loop, each a method of ``Run``:

- an optimizer step: ``grad_accum_steps`` passes, each process's share of a pass weighted so that the averaged
  gradient equals the one-process gradient of the whole pass; AdamW with transformers' warmup schedule; with
  ``ema_decay``, a moving average of the weights (torch's AveragedModel) is what dev scoring and the checkpoint use;
- an epoch: its optimizer steps from where the progress stands, the state saved every ``save_every_steps`` steps
  and on a stop signal;
- dev scoring, and the best checkpoint so far;
- the end of an epoch: its record, the log, the state every ``save_every_epochs``-th epoch, early stopping;
- the end of the run: the best checkpoint into the output folder.

Rank 0 alone writes the best checkpoint, the log and the state.
"""
from __future__ import annotations

import contextlib
import csv
import io
import logging
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from tqdm import tqdm

from ..artifacts.atomic import atomic_folder, write_text_atomically
from ..core.console import points
from ..core.signals import Interrupted, StopRequest
from ..data.conll import Post
from ..inference.checkpoint import Checkpoint, save_checkpoint
from ..model.batching import VisualFeatures, collate
from ..model.tagger import Batch, DGHCTagger
from .config import TrainConfig
from .distributed import score_dev, stop_agreed
from .plan import epoch_order, epoch_steps, share
from .state import Progress, StateFolder, save_state

logger = logging.getLogger(__name__)


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    dev_precision: float | None = None
    dev_recall: float | None = None
    dev_f1: float | None = None


class TrainingStep(nn.Module):
    """The tagger's loss as a module's forward: what the data-parallel wrapper synchronises."""

    def __init__(self, tagger: DGHCTagger) -> None:
        super().__init__()
        self.tagger = tagger

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.tagger.loss(batch, reduction="sum")


@dataclass
class Run:
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
    resumed_from: tuple[int, int] | None  # (epochs done, steps into the next) of the state resumed, if any

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
        save_state(self.accelerator, self.state_folder, tagger=self.accelerator.unwrap_model(self.step_module).tagger,
                   optimizer=self.optimizer, scheduler=self.scheduler, average=self.average, progress=self.progress,
                   resume_key=self.key)

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
        # With fp16 the grad scaler skips the update of a step whose gradients overflowed (inf/nan) and lowers its
        # scale: the schedule must not advance then, or the warmup runs ahead of the updates. The lower scale is
        # the sign; Accelerate's optimizer_step_was_skipped misses it with the fused AdamW used here, whose step()
        # runs and skips the update inside its kernel (huggingface/accelerate#4242). Without a scaler: no change.
        scaler = accelerator.scaler
        scale = scaler.get_scale() if scaler is not None else None
        self.optimizer.step()
        if scale is None or scaler.get_scale() >= scale:
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
            signum = stop_agreed(stop, self.accelerator)
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

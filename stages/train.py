"""``dghc train``: train the DGHC tagger on cached visual features; keeps the best dev checkpoint."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

from ..pipeline.core.console import setup_logging
from ..pipeline.core.errors import DghcError
from ..pipeline.training.config import TrainConfig
from .options import as_arguments, configured


@click.command("train")
@configured(TrainConfig)
def train_command(config: TrainConfig) -> None:
    """Train on --train, score --dev every epoch from eval_begin_epoch, keep the best checkpoint in --out.

    Every parameter can also come from the `train` section of a params file (--params) or --set KEY=VALUE.
    The run saves its state in --state every save_every_epochs epochs (and every save_every_steps steps): after a
    crash, the same command resumes where it stopped. --processes N trains with N data-parallel processes.
    """
    if config.processes > 1 and "WORLD_SIZE" not in os.environ:
        _launch_processes(config)
        return
    from ..pipeline.api.train import train  # torch and transformers: imported only when the stage runs
    from ..pipeline.artifacts.atomic import write_text_atomically
    from ..pipeline.core.console import points

    setup_logging(logging.INFO)
    result = train(**as_arguments(config))
    if not result.is_main_process:
        return
    if result.resumed_from is not None:
        click.echo(f"resumed after epoch {result.resumed_from[0]}, step {result.resumed_from[1]} of the next")
    click.echo(f"best epoch: {result.best_epoch}; checkpoint: {result.output_dir}; effective batch "
               f"{result.effective_batch} posts per optimizer step")
    if result.best_dev:
        overall = result.best_dev["default"]["overall"]
        click.echo(f"dev P {points(overall['precision'])} R {points(overall['recall'])} F1 {points(overall['f1'])} "
                   "(seqeval default mode)")
    if config.metrics_file:
        summary: dict = {"best_epoch": result.best_epoch}
        if result.best_dev:
            for mode in ("default", "strict"):
                for key in ("precision", "recall", "f1"):
                    summary[f"dev_{mode}_{key}"] = round(result.best_dev[mode]["overall"][key], 4)
        write_text_atomically(config.metrics_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")


def _launch_processes(config: TrainConfig) -> None:
    """Run this command in ``processes`` processes with torch's launcher (torchrun): gloo on the CPU, one GPU each
    with CUDA. The resolved config travels in a temporary params file, so every process trains the same run; this
    process holds the run's locks, and passes a SIGINT or SIGTERM on to the processes, which stop together after
    their current step with the state saved."""
    from ..pipeline.artifacts.lock import HELD_BY_PARENT, output_lock
    from ..pipeline.core.devices import check_process_devices
    from ..pipeline.core.params import params_of
    from ..pipeline.core.signals import Interrupted, stop_signals

    check_process_devices(config.device, config.processes)  # before any process starts: one GPU each, or refused
    # restart is refused in a params file (there it would act on every run): it travels as --set instead
    command_line_only = sorted(p.name for p in params_of(TrainConfig) if not p.info.in_params)
    values = {key: str(value) if isinstance(value, Path) else value for key, value in config.to_json().items()
              if key not in command_line_only}
    settings = [part for key in command_line_only for part in ("--set", f"{key}={str(getattr(config, key)).lower()}")]
    with tempfile.TemporaryDirectory(prefix="dghc-train-") as folder, stop_signals("train") as stop, \
            output_lock(config.output_dir, config.state_dir, note=lambda message: click.echo(message, err=True)):
        params = Path(folder) / "params.yaml"
        params.write_text(yaml.safe_dump({"train": values}, sort_keys=True), encoding="utf-8")
        env = {**os.environ, HELD_BY_PARENT: "1"}
        if config.device == "cpu" and "OMP_NUM_THREADS" not in env:  # the cores are shared by the processes
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // config.processes))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={config.processes}", "--module", "dghc.cli", "train", "--params", str(params),
                   *settings]
        click.echo(f"train: starting {config.processes} processes: {' '.join(command[2:])}", err=True)
        process = subprocess.Popen(command, env=env, cwd=os.getcwd())
        forwarded = False
        while process.poll() is None:
            if stop.requested and not forwarded:
                process.send_signal(signal.SIGTERM)
                forwarded = True
            time.sleep(0.1)
    if stop.requested:
        raise Interrupted(f"train: stopped by {stop.name}; the processes saved the state in {config.state_dir}: "
                          "rerun the same command to resume", stop.signum or signal.SIGTERM)
    if process.returncode != 0:
        raise DghcError(f"train: the {config.processes} training processes failed (exit {process.returncode}); "
                        "their messages are above. Rerunning the same command resumes from the saved state.")

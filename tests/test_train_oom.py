"""`dghc train` out of GPU memory: one line naming the knobs, exit 1, and the state saved so far resumes.

The fault is injected on the CPU: an optimizer step (or dev scoring) raises torch's OutOfMemoryError, as CUDA's
allocator does, at a chosen step of a tiny real run through the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from dghc.cli import dghc
from dghc.pipeline.demo.config import DemoConfig
from dghc.pipeline.demo.writer import write_demo_data
from dghc.pipeline.training import run as run_module
from dghc.pipeline.training.run import Run
from dghc.pipeline.training.state import META_FILE
from tests.tiny_models import save_tiny_bert

CUDA_MESSAGE = "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 7.79 GiB total capacity)"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("oom")
    write_demo_data(DemoConfig(out=root / "demo", train=12, valid=4, test=2, image_size=64))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=2, heads=2)
    return {"train": root / "demo" / "train.txt", "dev": root / "demo" / "valid.txt", "bert": bert}


def train(files: dict[str, Path], run: Path, *extra: str):
    # 12 posts, 4 a step: 3 optimizer steps an epoch, the state saved after every one
    return CliRunner().invoke(dghc, [
        "train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--encoder", str(files["bert"]),
        "--out", str(run / "model"), "--log", str(run / "log.csv"), "--state", str(run / "state"), "--epochs", "2",
        "--batch-size", "4", "--prompt-dim", "16", "--save-every-steps", "1", "--no-progress",
        "--set", "use_image=false", *extra])


def saved_step(run: Path) -> int:
    return json.loads((run / "state" / "current" / META_FILE).read_text())["progress"]["global_step"]


def count_steps(monkeypatch, fail_at: int | None = None) -> list[int]:
    """Count the optimizer steps run; the ``fail_at``-th (from 1) runs out of memory."""
    calls: list[int] = []
    original = Run.optimizer_step

    def step(self, indices):
        calls.append(len(calls) + 1)
        if calls[-1] == fail_at:
            raise torch.OutOfMemoryError(CUDA_MESSAGE)
        return original(self, indices)

    monkeypatch.setattr(Run, "optimizer_step", step)
    return calls


def assert_one_line_error(result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # a message, not a crash
    assert "Traceback" not in result.output and CUDA_MESSAGE not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for phrase in ("out of GPU memory on cpu", "batch_size 4", "grad_accum_steps 1", "precision no",
                   "max_length 128", "gradient_checkpointing", "rerun the same command to resume", *phrases):
        assert phrase in errors[0], errors[0]


def test_out_of_memory_in_a_step_is_one_line_and_the_rerun_resumes(files, tmp_path, monkeypatch):
    uninterrupted = tmp_path / "uninterrupted"
    assert train(files, uninterrupted).exit_code == 0

    run = tmp_path / "run"
    count_steps(monkeypatch, fail_at=5)  # epoch 2, step 2
    result = train(files, run)
    assert_one_line_error(result, "at epoch 2, step 2 ", str(run / "state"))
    assert saved_step(run) == 4  # the state of the steps done is kept
    assert not (run / "model").exists()

    monkeypatch.undo()
    steps = count_steps(monkeypatch)
    result = train(files, run)
    assert result.exit_code == 0, result.output
    assert len(steps) == 2  # resumed after step 4 of 6: no step repeated
    assert not (run / "state" / "current").exists()
    resumed, whole = (load_file(str(r / "model" / "model.safetensors")) for r in (run, uninterrupted))
    assert resumed.keys() == whole.keys()
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name


def test_out_of_memory_in_dev_scoring_is_one_line(files, tmp_path, monkeypatch):
    run = tmp_path / "run"

    def score_dev(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(CUDA_MESSAGE)  # the same class as torch.OutOfMemoryError

    monkeypatch.setattr(run_module, "score_dev", score_dev)
    result = train(files, run)
    assert_one_line_error(result, "at epoch 1, dev scoring")
    assert saved_step(run) == 2  # the last save_every_steps save: resumable


def test_the_gradient_checkpointing_parameter_reaches_the_encoder_layers(files, tmp_path, monkeypatch):
    from dghc.pipeline.model import prefix_attention

    calls: list[int] = []
    original = prefix_attention.checkpoint

    def checkpoint(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(prefix_attention, "checkpoint", checkpoint)
    assert train(files, tmp_path / "plain").exit_code == 0
    assert not calls  # off by default
    result = train(files, tmp_path / "checkpointed", "--gradient-checkpointing")
    assert result.exit_code == 0, result.output
    assert len(calls) == 6 * 2  # 6 optimizer steps of one pass, 2 layers each

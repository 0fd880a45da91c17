"""Training as real runs of `dghc train`: killed with SIGKILL and resumed, two data-parallel processes, refusals.

The runs are subprocesses of the real command on a tiny real pipeline (demo set, packaged person detector,
untrained CLIP, a tiny BERT); on the CPU a resumed run must end with the very tensors of an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from dghc.cli import dghc
from dghc.pipeline.demo.config import DemoConfig
from dghc.pipeline.demo.writer import write_demo_data
from dghc.pipeline.detection.config import DetectConfig
from dghc.pipeline.detection.run import run_detect
from dghc.pipeline.features.config import ExtractConfig
from dghc.pipeline.features.extract import extract_features
from dghc.pipeline.training.state import META_FILE
from tests.environment import REPO
from tests.tiny_models import save_tiny_bert

pytestmark = pytest.mark.slow
DGHC = str(Path(sys.executable).with_name("dghc"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    write_demo_data(DemoConfig(out=root / "demo", train=24, valid=8, test=4, image_size=128))
    splits = [root / "demo" / f"{s}.txt" for s in ("train", "valid")]
    run_detect(DetectConfig(files=splits, out=root / "detections.h5", imgsz=160, grounding=None, progress=False),
               log=lambda _: None)
    extract_features(ExtractConfig(files=splits, detections=root / "detections.h5", out=root / "features.h5",
                                   num_workers=0, device="cpu", progress=False))
    bert = save_tiny_bert(root / "bert", hidden=32, layers=2, heads=2)
    return {"root": root, "train": splits[0], "dev": splits[1], "bert": bert}


def train_args(files: dict[str, Path], run: Path, *extra: str) -> list[str]:
    return ["train", "--train", str(files["train"]), "--dev", str(files["dev"]),
            "--features", str(files["root"] / "features.h5"), "--detections", str(files["root"] / "detections.h5"),
            "--encoder", str(files["bert"]), "--out", str(run / "model"), "--log", str(run / "log.csv"),
            "--metrics", str(run / "metrics.json"), "--state", str(run / "state"), "--epochs", "3",
            "--batch-size", "4", "--prompt-dim", "16", "--save-every-steps", "1", "--no-progress", *extra]


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def run_train(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([DGHC, *args], capture_output=True, text=True, env=environment(), timeout=600, cwd=REPO)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def saved_step(run: Path) -> int:
    try:
        return json.loads((run / "state" / "current" / META_FILE).read_text())["progress"]["global_step"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.parametrize("extra,kill_count", [([], 3), (["--ema-decay", "0.8"], 1)], ids=["plain", "ema"])
def test_sigkill_at_random_steps_then_rerun_gives_the_uninterrupted_weights(files, tmp_path, extra, kill_count):
    """With --ema-decay the saved model is the weights' moving average: the state must carry it across a kill."""
    whole = tmp_path / "whole"
    done = run_train(train_args(files, whole, *extra))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list((whole / "state").iterdir())  # a finished run leaves nothing to resume

    seed = random.randrange(10_000)
    kills = random.Random(seed).sample(range(2, 17), kill_count)  # 18 optimizer steps (24 posts, batch 4, 3 epochs)
    print(f"kill seed {seed}: SIGKILL once the state holds steps {sorted(kills)}")
    run = tmp_path / "killed"
    for target in sorted(kills):
        process = subprocess.Popen([DGHC, *train_args(files, run, *extra)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, env=environment(), cwd=REPO, text=True)
        deadline = time.monotonic() + 300
        while saved_step(run) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, process.stderr.read()[-3000:]
        print(f"killed with the state at step {saved_step(run)}")
    resumed = run_train(train_args(files, run, *extra))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed after epoch" in resumed.stdout
    assert "resuming from" in resumed.stderr  # said when the work starts, not only at the end
    expected, got = weights(whole), weights(run)
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"{len(different)} tensors differ after resuming, e.g. {different[:3]}"
    assert (run / "log.csv").read_text() == (whole / "log.csv").read_text()


def test_a_kill_during_a_state_write_leaves_the_previous_state(files, tmp_path, monkeypatch):
    from dghc.pipeline.training import state as state_module

    run = tmp_path / "run"
    args = train_args(files, run, "--epochs", "1")
    writes = {"count": 0}
    real_save = torch.save

    def save_then_die(obj, path, *a, **k):  # the third state write dies half-way (its weights already written)
        writes["count"] += 1
        if writes["count"] == 3:
            raise OSError("the process died here")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(state_module.torch, "save", save_then_die)
    result = CliRunner().invoke(dghc, args)
    assert result.exit_code == 1 and "cannot write" in result.output and "the process died here" in result.output
    assert saved_step(run) == 2  # the state of step 2 is intact and readable
    assert not [p for p in (run / "state").iterdir() if p.name.startswith(".current.")]  # no half state left
    monkeypatch.undo()
    result = CliRunner().invoke(dghc, args)
    assert result.exit_code == 0, result.output
    assert "resumed after epoch 0, step 2" in result.output


def test_two_processes_train_like_one_with_the_same_effective_batch(files, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for run, processes in ((one, "1"), (two, "2")):
        done = run_train(train_args(files, run, "--processes", processes, "--save-every-steps", "0"))
        assert done.returncode == 0, done.stderr[-3000:]
        assert "effective batch 4 posts per optimizer step" in done.stdout
    # Each rank draws its own dropout masks, so the runs are close, not equal: compare the training loss of each
    # epoch (hundreds of token decisions), not the dev F1 of 8 posts (one entity moves it by 0.05).
    losses = [[float(row.split(",")[1]) for row in (run / "log.csv").read_text().splitlines()[1:]] for run in (one, two)]
    f1 = [json.loads((run / "metrics.json").read_text())["dev_default_f1"] for run in (one, two)]
    print(f"loss per epoch, one process {losses[0]}, two processes {losses[1]}; dev F1 {f1[0]:.4f} and {f1[1]:.4f}")
    assert all(abs(a - b) <= 0.1 * a for a, b in zip(*losses)), "two processes learned unlike one"
    assert abs(f1[0] - f1[1]) <= 0.2
    log = (two / "log.csv").read_text().splitlines()
    assert len(log) == 4 and log[0].startswith("epoch,")  # written once per epoch, by rank 0 alone
    meta = json.loads((two / "model" / "dghc.json").read_text())
    assert (meta["info"]["processes"], meta["info"]["effective_batch"]) == (2, 4)
    difference = max((weights(one)[k] - weights(two)[k]).abs().max().item() for k in weights(one))
    print(f"largest weight difference between the two runs: {difference:.2e}")


def test_refusals_are_one_clear_line(files, tmp_path):
    run = tmp_path / "run"

    def refused(*extra: str) -> str:
        result = CliRunner().invoke(dghc, train_args(files, run, *extra))
        assert result.exit_code != 0 and isinstance(result.exception, SystemExit), (result.output, result.exception)
        assert "Traceback" not in result.output
        return result.output

    assert "fp16 needs a CUDA GPU" in refused("--precision", "fp16")
    assert "2 processes but 1 posts in a batch" in refused("--processes", "2", "--batch-size", "1")

    # a state saved by one run, then the same state offered to another
    killed = subprocess.Popen([DGHC, *train_args(files, run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=environment(), cwd=REPO)
    deadline = time.monotonic() + 300
    while saved_step(run) < 3 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    killed.kill()
    killed.wait()
    assert saved_step(run) >= 3
    message = refused("--lr-head", "0.01")
    print(message)
    assert "belongs to another run" in message and "params.lr_head: saved for 0.001, now 0.01" in message
    assert "params.seed" not in message and "--restart" in message
    (run / "state" / "current" / "training.pt").write_bytes(b"garbage")
    assert "the training state is damaged" in refused("--no-restart")  # without it: a note, then a new start
    result = CliRunner().invoke(dghc, train_args(files, run, "--restart", "--epochs", "1"))
    assert result.exit_code == 0, result.output

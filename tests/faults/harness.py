"""Helpers of the fault harness: run the real `dghc` as a subprocess, wait, compare outputs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.environment import REPO

DGHC = str(Path(sys.executable).with_name("dghc"))


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return env


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([DGHC, *args], capture_output=True, text=True, env=environment(), timeout=timeout,
                          cwd=REPO)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([DGHC, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment(), cwd=REPO)


def wait_for(condition, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def stage_args(stage: str, files: dict[str, Path], out: Path) -> list[str]:
    """The command line of a stage writing ``out`` (small batches: many safe points to stop or die between)."""
    splits = [str(files[s]) for s in ("train", "valid", "test")]
    if stage == "detect":
        return ["detect", *splits, "--out", str(out), "--imgsz", "160", "--grounding", "none", "--batch-size", "2",
                "--no-progress"]
    if stage == "extract":
        return ["extract", *splits, "--detections", str(files["detections"]), "--out", str(out), "--batch-size",
                "2", "--num-workers", "0", "--device", "cpu", "--quiet"]
    if stage == "train":
        return ["train", "--train", str(files["train"]), "--dev", str(files["valid"]), "--features",
                str(files["features"]), "--detections", str(files["detections"]), "--encoder", str(files["bert"]),
                "--out", str(out), "--state", str(out.with_name(out.name + "-state")), "--log",
                str(out.with_name(out.name + ".csv")), "--epochs", "2", "--batch-size", "4", "--prompt-dim", "16",
                "--save-every-steps", "1", "--no-progress"]
    raise ValueError(stage)


def same_output(stage: str, a: Path, b: Path) -> bool:
    """Bytes for HDF5 files, tensors for checkpoints."""
    if stage in ("detect", "extract"):
        return a.read_bytes() == b.read_bytes()
    import torch
    from safetensors.torch import load_file

    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

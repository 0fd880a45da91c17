"""kill -9 at random moments and two runs at once, for detect, extract and train: nothing lost, one run per output."""
from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.faults.harness import run, same_output, stage_args, start, wait_for

STAGES = ["detect", "extract", "train"]
KILLS = int(os.environ.get("DGHC_FAULT_KILLS", "5"))


def output_name(stage: str) -> str:
    return {"detect": "detections.h5", "extract": "features.h5", "train": "model"}[stage]


@pytest.fixture(scope="module")
def references(tiny_pipeline, tmp_path_factory):
    """Each stage's output from one uninterrupted run, and how long that run took."""
    root = tmp_path_factory.mktemp("references")
    found = {}
    for stage in STAGES:
        out = root / output_name(stage)
        began = time.monotonic()
        done = run(stage_args(stage, tiny_pipeline, out))
        assert done.returncode == 0, done.stderr[-3000:]
        found[stage] = (out, time.monotonic() - began)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_at_random_moments_then_rerun_equals_an_uninterrupted_run(stage, tiny_pipeline, references, tmp_path):
    reference, duration = references[stage]
    seed = random.randrange(100_000)
    moments = [random.Random(seed).uniform(0.3, 1.0) * duration for _ in range(KILLS)]
    print(f"\n{stage}: {KILLS} SIGKILLs, seed {seed}, at {[f'{m:.1f}' for m in moments]} s of a {duration:.1f} s run")
    out = tmp_path / output_name(stage)
    for moment in moments:
        process = start(stage_args(stage, tiny_pipeline, out))
        time.sleep(moment)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate()
    done = run(stage_args(stage, tiny_pipeline, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_output(stage, out, reference), f"{stage}: the output after {KILLS} kills differs from the reference"


@pytest.mark.parametrize("stage", STAGES)
def test_two_runs_on_one_output_one_proceeds_the_other_is_refused(stage, tiny_pipeline, references, tmp_path):
    out = tmp_path / output_name(stage)
    first = start(stage_args(stage, tiny_pipeline, out))
    wait_for(lambda: out.with_name(out.name + ".lock.json").exists() or first.poll() is not None,
             what="the first run to take its lock")
    # paused while the second starts: a short run could otherwise end before the second one (imports take seconds
    # on a loaded machine) gets to the lock; a stopped process keeps its lock, like a slow one
    first.send_signal(signal.SIGSTOP)
    try:
        assert first.poll() is None, "the first run ended before the second one started"
        second = run(stage_args(stage, tiny_pipeline, out))
    finally:
        first.send_signal(signal.SIGCONT)
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert second.returncode != 0
    line = [text for text in second.stderr.splitlines() if "being written by another dghc run" in text]
    assert len(line) == 1 and str(out) in line[0] and f"pid {first.pid}" in line[0], second.stderr
    assert "Traceback" not in second.stderr
    assert same_output(stage, out, references[stage][0])


def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_note(tiny_pipeline, references, tmp_path):
    out = tmp_path / "detections.h5"
    process = start(stage_args("detect", tiny_pipeline, out))
    wait_for(lambda: out.with_name(out.name + ".lock.json").exists(), what="the lock")
    process.send_signal(signal.SIGKILL)  # it dies holding the lock: the OS releases it, its note stays
    process.communicate()
    assert out.with_name(out.name + ".lock.json").exists()
    done = run(stage_args("detect", tiny_pipeline, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "took over the lock" in done.stderr and f"pid {process.pid}" in done.stderr
    assert same_output("detect", out, references["detect"][0])

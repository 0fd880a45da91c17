"""SIGTERM and SIGINT: every stage stops at its next safe point with one line, exit 143 / 130, and resumes."""
from __future__ import annotations

import signal

import pytest

from tests.faults.harness import run, same_output, stage_args, start, wait_for

CASES = [(stage, signum) for stage in ("detect", "extract", "train") for signum in (signal.SIGTERM, signal.SIGINT)]


def started_work(stage: str, out):
    """True once the stage has finished its first unit of work (a batch on disk, a saved state)."""
    if stage == "train":
        return lambda: (out.with_name(out.name + "-state") / "current" / "state.json").exists()
    return lambda: out.with_name(out.name + ".partial.json").exists()


@pytest.mark.parametrize("stage, signum", CASES, ids=[f"{s}-{signal.Signals(n).name}" for s, n in CASES])
def test_a_signal_stops_the_stage_with_one_line_and_a_rerun_resumes(stage, signum, tiny_pipeline, tmp_path):
    out = tmp_path / {"detect": "detections.h5", "extract": "features.h5", "train": "model"}[stage]
    process = start(stage_args(stage, tiny_pipeline, out))
    wait_for(lambda: started_work(stage, out)() or process.poll() is not None, what=f"{stage} to start working")
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0, f"{stage} finished before the signal arrived: give it more work"
    assert process.returncode == 128 + signum, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if f"stopped by {signal.Signals(signum).name}" in line]
    assert len(lines) == 1 and "rerun the same command to resume" in lines[0], stderr[-3000:]
    assert "Traceback" not in stderr
    done = run(stage_args(stage, tiny_pipeline, out))
    assert done.returncode == 0, done.stderr[-3000:]
    reference = tmp_path / "reference"
    assert run(stage_args(stage, tiny_pipeline, reference)).returncode == 0
    assert same_output(stage, out, reference)


def test_evaluate_stopped_by_sigterm_writes_nothing(tiny_pipeline, tmp_path):
    model = tmp_path / "model"
    assert run(stage_args("train", tiny_pipeline, model)).returncode == 0
    metrics = tmp_path / "metrics.json"
    process = start(["evaluate", str(model), str(tiny_pipeline["test"]), "--features", str(tiny_pipeline["features"]),
                     "--metrics", str(metrics)])
    wait_for(lambda: metrics.with_name(metrics.name + ".lock.json").exists() or process.poll() is not None,
             what="evaluate to start")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr[-3000:]
    assert "evaluate: stopped by SIGTERM; nothing was written" in stderr and "Traceback" not in stderr
    assert not metrics.exists() and not list(tmp_path.glob(".metrics.json.*"))

"""Writes that fail (a full disk, a missing or impossible folder, a file that vanishes) and damaged partial files:
one line naming the path and the cause, the previous output untouched, the resumable work kept."""
from __future__ import annotations

import errno
import shutil

import pytest
from click.testing import CliRunner

from dghc.cli import dghc
from tests.faults.harness import run, stage_args


def full_disk_at(call: int):
    """A stand-in for a writer that fails with ENOSPC at its ``call``-th call."""
    calls = {"count": 0}

    def wrap(real):
        def writer(*args, **kwargs):
            calls["count"] += 1
            if calls["count"] == call:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)
        return writer
    return wrap


def invoke(args: list[str]):
    result = CliRunner().invoke(dghc, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


@pytest.mark.parametrize("stage, target", [("detect", "dghc.pipeline.detection.run.write_rows"),
                                           ("extract", "dghc.pipeline.artifacts.partial.PartialOutput.mark_done")])
def test_a_full_disk_keeps_the_previous_output_and_the_finished_rows(stage, target, tiny_pipeline, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / f"{stage}.h5"
    args = stage_args(stage, tiny_pipeline, out)
    assert invoke(args).exit_code == 0
    previous = out.read_bytes()
    args = [*args, "--force"]  # a run that must recompute, over the complete output of the first
    module_name, _, attribute = target.rpartition(".")
    import importlib

    owner = importlib.import_module(module_name) if stage == "detect" else \
        importlib.import_module("dghc.pipeline.artifacts.partial").PartialOutput
    monkeypatch.setattr(owner, attribute, full_disk_at(4)(getattr(owner, attribute)))
    result = invoke(args)
    assert result.exit_code == 1
    assert f"cannot write {out.with_name(out.name + '.partial')}: No space left on device" in result.output
    assert "finished" in result.output and "kept" in result.output
    assert out.read_bytes() == previous  # the complete output of before is untouched
    assert out.with_name(out.name + ".partial").exists()  # the work done is kept: a rerun resumes from it
    monkeypatch.undo()
    assert invoke(args).exit_code == 0
    assert out.read_bytes() == previous  # same settings, same inputs: the same bytes


def test_a_full_disk_when_evaluate_writes_keeps_the_previous_metrics(tiny_pipeline, tmp_path, monkeypatch):
    model = tmp_path / "model"
    assert run(stage_args("train", tiny_pipeline, model)).returncode == 0
    metrics = tmp_path / "metrics.json"
    metrics.write_text("previous\n")
    import dghc.pipeline.artifacts.atomic as atomic

    monkeypatch.setattr(atomic, "publish", full_disk_at(2)(atomic.publish))  # 1: the lock's note, 2: the metrics
    result = invoke(["evaluate", str(model), str(tiny_pipeline["test"]), "--features", str(tiny_pipeline["features"]),
                     "--metrics", str(metrics)])
    assert result.exit_code == 1
    assert f"cannot write {metrics}: No space left on device; the previous metrics.json, if any, is untouched" \
        in result.output
    assert metrics.read_text() == "previous\n" and not list(tmp_path.glob(".metrics.json.*"))


def test_an_impossible_output_folder_is_named(tiny_pipeline, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = invoke(stage_args("detect", tiny_pipeline, blocker / "detections.h5"))
    assert result.exit_code == 1 and f"{blocker} is a file, not a folder" in result.output


def test_a_work_file_that_vanishes_mid_run_is_said(tiny_pipeline, tmp_path, monkeypatch):
    out = tmp_path / "features.h5"
    partial = out.with_name(out.name + ".partial")
    import dghc.pipeline.features.extract as extract

    real = extract.make_loader

    def loader_that_loses_the_work_file(*args, **kwargs):
        for number, batch in enumerate(real(*args, **kwargs)):
            if number == 2:
                partial.unlink()  # someone deletes the work file while the run writes it
            yield batch

    monkeypatch.setattr(extract, "make_loader", loader_that_loses_the_work_file)
    result = invoke(stage_args("extract", tiny_pipeline, out))
    assert result.exit_code == 1 and f"the work file {partial} vanished" in result.output
    assert not out.exists()


@pytest.mark.parametrize("stage", ["detect", "extract"])
def test_a_damaged_partial_file_is_never_trusted(stage, tiny_pipeline, tmp_path):
    out = tmp_path / f"{stage}.h5"
    reference = tmp_path / "reference.h5"
    assert invoke(stage_args(stage, tiny_pipeline, reference)).exit_code == 0
    partial, record = out.with_name(out.name + ".partial"), out.with_name(out.name + ".partial.json")
    shutil.copy(reference, partial)
    partial.write_bytes(partial.read_bytes()[:2000])  # truncated, as by a crash
    record.write_text('{"format": "dghc-partial/1", "resume_key": {}, "rows_done": 4}')  # another run's record
    refused = invoke([*stage_args(stage, tiny_pipeline, out), "--no-restart"])
    assert refused.exit_code == 1 and "--no-restart" in refused.output and partial.exists()
    for damage in (b"garbage" * 10, partial.read_bytes()[:2000]):
        partial.write_bytes(damage)
        record.write_text("{not json")
        result = invoke([*stage_args(stage, tiny_pipeline, out), "--force"])
        assert result.exit_code == 0 and "starting over" in result.output
        assert out.read_bytes() == reference.read_bytes()


def test_a_damaged_training_state_starts_over_or_is_refused(tiny_pipeline, tmp_path):
    import signal

    from tests.faults.harness import same_output, start, wait_for

    reference = tmp_path / "reference"
    assert run(stage_args("train", tiny_pipeline, reference)).returncode == 0
    model = tmp_path / "model"
    args = stage_args("train", tiny_pipeline, model)
    state = model.with_name("model-state") / "current"
    process = start(args)
    wait_for(lambda: (state / "state.json").exists() or process.poll() is not None, what="a saved state")
    process.send_signal(signal.SIGKILL)
    process.communicate()
    (state / "training.pt").write_bytes(b"garbage")  # no longer matches its checksum
    refused = invoke([*args, "--no-restart"])
    assert refused.exit_code == 1 and "the training state is damaged" in refused.output
    assert "--no-restart" in refused.output and (state / "training.pt").exists()
    done = run(args)
    assert done.returncode == 0 and "the training state is damaged" in done.stderr and "starting over" in done.stderr
    assert same_output("train", model, reference)

"""The benchmarks' store of finished training runs (benchmarks/runs.py): a run is trained once across scripts."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from benchmarks import runs as bench_runs


def record(data: str, parameters: dict, f1: float) -> dict:
    return {"data": data, "parameters": parameters, "p": f1, "r": f1, "f1": f1, "strict": f1, "seconds": 1.0,
            "commit": "test", "threads": 1, "jobs": 1}


def test_run_key_names_the_parameters_not_their_order() -> None:
    assert bench_runs.run_key("twitter2017", {"seed": 1, "lr_head": 1e-3}) == \
        bench_runs.run_key("twitter2017", {"lr_head": 1e-3, "seed": 1})
    assert bench_runs.run_key("twitter2017", {"seed": 1}) != bench_runs.run_key("twitter2017", {"seed": 2})
    assert bench_runs.run_key("twitter2017", {"seed": 1}) != bench_runs.run_key("twitter2015", {"seed": 1})


def test_a_run_stored_before_an_option_existed_matches_the_option_at_its_default(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    older = {"seed": 1, "lr_head": 1e-3}  # trained before word_shape_encoder existed (its default: false)
    bench_runs.store_run(record("twitter2017", older, 0.85), path)
    stored = bench_runs.load_runs(path)
    assert bench_runs.run_key("twitter2017", {**older, "word_shape_encoder": False}) in stored
    assert bench_runs.run_key("twitter2017", {**older, "word_shape_encoder": True}) not in stored
    assert bench_runs.missing_runs([("twitter2017", {**older, "word_shape_encoder": False})], stored) == []


def test_the_lr_table_keeps_cells_stored_before_an_option_existed() -> None:
    from benchmarks.bench_lr import other_parameters

    base = {"seed": 2, "lr_head": 1e-4, "epochs": 8, "word_shape_encoder": False}  # params.yaml names the option
    older = {"seed": 1, "lr_head": 3e-4, "epochs": 8}  # a cell trained before it existed
    assert other_parameters(older) == other_parameters(base)
    assert other_parameters({**older, "word_shape_encoder": True}) != other_parameters(base)


def test_store_keeps_the_runs_another_process_added(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    first, second = {"seed": 1, "use_image": True}, {"seed": 2, "use_image": True}
    bench_runs.store_run(record("twitter2017", first, 0.8), path)
    bench_runs.store_run(record("twitter2015", second, 0.7), path)  # e.g. bench_lr.py while bench_f1.py runs
    stored = bench_runs.load_runs(path)
    assert {run["f1"] for run in stored.values()} == {0.8, 0.7}
    assert stored[bench_runs.run_key("twitter2017", first)]["parameters"] == first
    assert sorted(file.name for file in tmp_path.iterdir()) == ["runs.json", "runs.json.lock"], \
        "the atomic write left a temporary file"


def test_missing_runs_skips_stored_and_repeated_runs() -> None:
    stored_parameters, new_parameters = {"seed": 1}, {"seed": 2}
    stored = {bench_runs.run_key("twitter2017", stored_parameters): record("twitter2017", stored_parameters, 0.8)}
    wanted = [("twitter2017", stored_parameters), ("twitter2017", new_parameters), ("twitter2017", new_parameters),
              ("twitter2015", stored_parameters)]
    assert bench_runs.missing_runs(wanted, stored) == [("twitter2017", new_parameters),
                                                       ("twitter2015", stored_parameters)]
    # A run asked with the Durant post but stored without its rows is trained again.
    durant = {bench_runs.run_key("twitter2017", stored_parameters)}
    assert ("twitter2017", stored_parameters) in bench_runs.missing_runs(wanted, stored, durant)


def test_nothing_is_built_or_trained_when_every_run_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "runs.json"
    parameters = {"seed": 1, "use_image": False}
    bench_runs.store_run(record("twitter2017", parameters, 0.85), path)

    def no_cache(*_):
        raise AssertionError("a cache was built although every run is stored")

    monkeypatch.setattr(bench_runs, "build_cache", no_cache)
    result = bench_runs.train_missing([("twitter2017", parameters)], jobs=1, threads=1, path=path)
    assert result[bench_runs.run_key("twitter2017", parameters)]["f1"] == 0.85


def _store_many(path: Path, data: str, count: int) -> None:
    for seed in range(count):
        bench_runs.store_run(record(data, {"seed": seed}, 0.5), path)


def test_two_processes_storing_at_once_lose_no_run(tmp_path: Path) -> None:
    path = tmp_path / "runs.json"
    context = multiprocessing.get_context("fork")  # the module is imported already; nothing threaded runs here
    writers = [context.Process(target=_store_many, args=(path, data, 40)) for data in ("twitter2017", "twitter2015")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    stored = bench_runs.load_runs(path)
    print(f"{len(stored)} runs stored of 80")
    assert len(stored) == 80


def test_bench_f1_set_values_are_typed_as_the_train_command_reads_them() -> None:
    from benchmarks.bench_f1 import parse_set

    typed = parse_set(["word_shape=false", "lr_head=3e-4", "use_image=false", "epochs=3"])
    print(typed)
    # YAML alone reads a boolean (TrainConfig refuses it for the choice word_shape) and the string '3e-4'.
    assert typed == {"word_shape": "false", "lr_head": 3e-4, "use_image": False, "epochs": 3}
    assert bench_runs.run_key("twitter2017", {"lr_head": typed["lr_head"]}) == \
        bench_runs.run_key("twitter2017", {"lr_head": 0.0003}), "a rate given as 3e-4 must find the stored 0.0003 runs"


def test_a_section_keeps_its_previous_run_apart_from_its_last(tmp_path: Path, monkeypatch) -> None:
    from benchmarks import report

    monkeypatch.setattr(report, "BENCHMARKS_MD", tmp_path / "BENCHMARKS.md")
    assert report.last_run("F1") == "" and report.kept_previous_run("F1") == ""
    report.update_section("F1", "| new | 0.85 |\n\n### Previous run\n\n| old | 0.84 |", command="bench")
    report.update_section("other", "| x |", command="bench")
    assert report.last_run("F1").endswith("| new | 0.85 |") and "old" not in report.last_run("F1")
    assert report.kept_previous_run("F1") == "### Previous run\n\n| old | 0.84 |"
    assert report.kept_previous_run("other") == ""


SWEEP_STANDIN = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from benchmarks.runs import exit_with_parent

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=exit_with_parent,
                             initargs=(os.getpid(), 0.2)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)  # the worker, alive and waiting for work
        pool.submit(time.sleep, 600)  # a long training run
        time.sleep(600)
"""


def running(pid: int) -> bool:
    """Whether the process runs (a zombie, dead but not yet reaped by whoever adopted it, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_killed_sweep_leaves_no_worker_training(tmp_path: Path) -> None:
    """SIGKILL the sweep's process (no cleanup runs): its pool worker must end by itself, not train on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_STANDIN)
    sweep = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1],
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    worker = int(sweep.stdout.readline())
    os.kill(sweep.pid, signal.SIGKILL)
    sweep.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not running(worker):
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"worker {worker} still running 30 s after its sweep was killed")

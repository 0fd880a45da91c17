"""The experiment grid of a table: every variant of the table x seeds, queued and run through DVC's own
experiment queue (``dvc exp run --queue -S ...``, then ``dvc exp run --run-all``), so that every run is a DVC
experiment: its parameters, metrics and outputs kept, ``dvc exp show`` lists it, ``dghc table`` reads it."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from ..core.errors import DghcError
from .runs import FLAGS, VARIANTS, dvc_executable
from .table import TABLES


def grid(table: str, seeds: int, overrides: list[str]) -> list[list[str]]:
    """The ``-S`` arguments of every run: each variant's four switches spelled out, the seed, the overrides."""
    if table not in TABLES:
        raise DghcError(f"unknown table {table!r} (use one of: {', '.join(TABLES)})")
    runs = []
    for variant in TABLES[table]:
        switches = {flag: VARIANTS[variant].get(flag, True) for flag in FLAGS}
        for seed in range(1, seeds + 1):
            arguments = [f"train.{flag}={str(value).lower()}" for flag, value in switches.items()]
            runs.append([*arguments, f"train.seed={seed}", *overrides])
    return runs


def run_grid(table: str, seeds: int, overrides: list[str], jobs: int, repo: Path,
             log: Callable[[str], None]) -> int:
    """Queue the grid, run it, and return how many experiments ran."""
    runs = grid(table, seeds, overrides)
    failed_before = failed_experiments(repo)  # the queue keeps failures of earlier grids: not this one's
    for arguments in runs:
        command = [dvc_executable(), "exp", "run", "--queue", *[part for a in arguments for part in ("-S", a)]]
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True)
        if done.returncode != 0:
            raise DghcError(f"`{' '.join(command)}` failed: {done.stderr.strip()[-800:]}")
    log(f"experiments: {len(runs)} runs queued ({len(TABLES[table])} variants x {seeds} seeds); running them with "
        f"`dvc exp run --run-all --jobs {jobs}`")
    done = subprocess.run([dvc_executable(), "exp", "run", "--run-all", "--jobs", str(jobs)], cwd=repo)
    failed = sorted(failed_experiments(repo) - failed_before)
    if failed:
        raise DghcError(f"{len(failed)} of {len(runs)} experiments failed ({', '.join(failed)}); "
                        f"`dvc queue logs {failed[0]}` shows why")
    if done.returncode != 0:
        raise DghcError(f"`dvc exp run --run-all` exited with {done.returncode}; `dvc queue status` lists the runs")
    return len(runs)


def failed_experiments(repo: Path) -> set[str]:
    """Names of the failed experiments that ``dvc queue status`` lists."""
    status = subprocess.run([dvc_executable(), "queue", "status"], cwd=repo, capture_output=True, text=True).stdout
    rows = [line.split() for line in status.splitlines()]  # task, name, created..., status
    return {row[1] for row in rows if len(row) > 2 and row[-1] == "Failed"}

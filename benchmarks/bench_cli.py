"""How long `dghc --help` and a stage's `--help` take from a cold start (a new process), against importing torch.

The command line imports no heavy library until a stage runs (tests/test_params.py checks that none is
imported); this measures what a user waits for. Runs are interleaved: one of each per round.

    .venv/bin/python benchmarks/bench_cli.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import update_section  # noqa: E402

DGHC = str(Path(sys.executable).with_name("dghc"))
CASES = {
    "dghc --help": [DGHC, "--help"],
    "dghc train --help": [DGHC, "train", "--help"],
    "dghc detect --help": [DGHC, "detect", "--help"],
    "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for command in CASES.values():  # warm the file cache once
        seconds(command)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, command in CASES.items():
            times[name].append(seconds(command))
    rows = ["| command | median (s) | min (s) | goal |", "|---|---|---|---|"]
    for name, values in times.items():
        goal = "< 1 s" if name.startswith("dghc") else ""
        rows.append(f"| `{name}` | {statistics.median(values):.3f} | {min(values):.3f} | {goal} |")
    body = (f"Cold start, a new process per run, {args.rounds} interleaved rounds after one warm-up of the file "
            "cache.\n\n" + "\n".join(rows))
    update_section("command line start-up", body, command=f"python benchmarks/bench_cli.py --rounds {args.rounds}")


if __name__ == "__main__":
    main()

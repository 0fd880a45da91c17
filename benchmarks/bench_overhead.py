"""What the fault handling costs (output locks, signal handlers, checks): `dghc --help` and a `dvc repro` that has
nothing to do, against a reference commit, in interleaved rounds of one run (goal: within 5 %).

The reference is checked out as a git worktree beside this one, with this workspace's demo outputs copied in, so
that its `dvc repro` has nothing to do either.

    .venv/bin/python benchmarks/bench_overhead.py --reference 3fca95c [--rounds 7]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import update_section  # noqa: E402

BIN = Path(sys.executable).parent


def seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} in {cwd} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default="3fca95c", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if not (ROOT / "cache" / "features.h5").is_file():
        raise SystemExit("run `make demo` first: the dvc repro measured here must have nothing to do")
    with tempfile.TemporaryDirectory(prefix="dghc-overhead-") as folder:
        reference = Path(folder) / "reference"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(reference), args.reference], cwd=ROOT,
                       check=True)
        try:
            shutil.copytree(ROOT / "data" / "demo", reference / "data" / "demo")
            for item in (ROOT / "cache").iterdir():
                if item.name not in (".gitignore", "README.md"):
                    (shutil.copytree if item.is_dir() else shutil.copy2)(item, reference / "cache" / item.name)
            checkouts = {"this commit": ROOT, f"reference {args.reference}": reference}
            base = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
            envs = {name: {**base, "PYTHONPATH": str(path)} for name, path in checkouts.items()}
            commands = {"dghc --help": [str(BIN / "python"), "-m", "dghc.cli", "--help"],
                        "dvc repro (nothing to do)": [str(BIN / "dvc"), "repro"]}
            for name, path in checkouts.items():  # warm-up: DVC's hash cache, the file cache
                for command in commands.values():
                    seconds(command, path, envs[name])
            times = {(c, n): [] for c in commands for n in checkouts}
            for _ in range(args.rounds):
                for command_name, command in commands.items():
                    for name, path in checkouts.items():
                        times[(command_name, name)].append(seconds(command, path, envs[name]))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(reference)], cwd=ROOT, check=False)
    rows = ["| command | this commit (s) | reference (s) | ratio | goal |", "|---|---|---|---|---|"]
    names = list(checkouts)
    for command_name in commands:
        new, old = (statistics.median(times[(command_name, n)]) for n in names)
        rows.append(f"| `{command_name}` | {new:.3f} | {old:.3f} | {new / old:.3f} | <= 1.05 |")
    body = (f"Median of {args.rounds} interleaved rounds after a warm-up; reference = commit {args.reference} (before "
            "the output locks, signal handling and the write and damage checks).\n\n" + "\n".join(rows))
    update_section("fault handling overhead", body,
                   command=f"python benchmarks/bench_overhead.py --reference {args.reference} --rounds {args.rounds}")


if __name__ == "__main__":
    main()

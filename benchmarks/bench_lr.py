"""Learning-rate sweep of the full model on the real benchmarks' valid splits: lr_head, lr_crf and lr_encoder.

    python benchmarks/bench_lr.py [--data twitter2017 twitter2015] [--seeds 1 2]
                                  [--lr-head 3e-5 1e-4 3e-4 1e-3] [--lr-crf R ...] [--lr-encoder R ...]
                                  [--epochs 8] [--jobs 2]

The grid is every combination of the rates given (a rate not given: params.yaml's). Each cell (data set, rates,
seed) trains the full model with params.yaml's other training parameters and scores its best dev epoch on valid
(dev = valid, gold as written), as bench_f1.py does. Cells run seed by seed, so a sweep stopped early has every
rate at the first seeds. Finished cells are kept in .bench/lr_sweep.json with the commit that ran them and a
fingerprint of the other parameters: a rerun (after a crash, or with more seeds or rates) trains only the cells
it lacks. BENCHMARKS.md's table is rewritten after every cell: every stored cell of the same other parameters,
and the asked cells not yet run. --jobs N trains N cells at once with cores/N threads each (on 2 cores two
one-thread runs did 1.45x the work of one two-thread run: 1728 s each side by side against 1251 s alone for a
Twitter-2017 cell; the encoder's matrices are too small to keep two threads busy).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_f1 import NAMES, REPO, SHARED, build_cache, mean_spread, params_train, train_and_score  # noqa: E402
from benchmarks.report import update_section  # noqa: E402
from pipeline.artifacts.atomic import write_text_atomically  # noqa: E402
from pipeline.artifacts.fingerprint import sha256_json  # noqa: E402

RESULTS = REPO / ".bench" / "lr_sweep.json"
SECTION = "learning-rate sweep (full model)"
RATES = ("lr_encoder", "lr_head", "lr_crf")


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pipeline"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return head.stdout.strip() + ("+changes" if dirty else "")
    except OSError:
        return "?"


def cell_key(data: str, rates: tuple[float, ...], seed: int) -> str:
    return " ".join([data, *(f"{name}={rate:g}" for name, rate in zip(RATES, rates)), f"seed={seed}"])


def run_cell(folder: Path, cache: Path, parameters: dict, threads: int) -> dict[str, float]:
    """One training run in a worker process with ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        return train_and_score(folder, cache, Path(run_dir), parameters)


def write_table(results: dict, args: argparse.Namespace, grid: list[tuple[float, ...]], base: dict,
                fingerprint: str) -> None:
    mine = {key: run for key, run in results.items() if run["fingerprint"] == fingerprint}
    defaults = tuple(base[name] for name in RATES)
    lines = [f"Full model (use_image true), packaged all-MiniLM-L6-v2, params.yaml's other training parameters "
             f"({base['epochs']} epochs); best dev epoch scored on valid (dev = valid, gold as written): mean ± "
             f"sample std over the seeds run. params.yaml's rates: "
             f"{', '.join(f'{name} {rate:g}' for name, rate in zip(RATES, defaults))}. \"not run\": asked, not run "
             f"yet. Cells from commits: {', '.join(sorted({run['commit'] for run in mine.values()})) or '-'}."]
    for data in [name for name in NAMES if name in args.data or any(run["data"] == name for run in mine.values())]:
        stored = {tuple(run["rates"]) for run in mine.values() if run["data"] == data}
        lines += ["", f"**{NAMES[data]} valid**", "",
                  "| lr_encoder | lr_head | lr_crf | F1 (default) | P | R | F1 (strict) | seeds | "
                  "train time per run (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for rates in sorted(stored | (set(grid) if data in args.data else set())):
            runs = sorted((run for run in mine.values() if run["data"] == data and tuple(run["rates"]) == rates),
                          key=lambda run: run["seed"])
            shown = " | ".join(f"{rate:g}" for rate in rates) + (" (params.yaml)" if rates == defaults else "")
            if not runs:
                lines.append(f"| {shown} | not run | | | | | |")
                continue
            lines.append(f"| {shown} | {mean_spread([r['f1'] for r in runs])} | "
                         f"{mean_spread([r['p'] for r in runs])} | {mean_spread([r['r'] for r in runs])} | "
                         f"{mean_spread([r['strict'] for r in runs])} | {', '.join(str(r['seed']) for r in runs)} | "
                         f"{statistics.fmean(r['seconds'] for r in runs):.0f} |")
    lines += ["", f"Cells ran {args.jobs} at once with {args.threads} thread(s) each (the last invocation's setting): "
                  "train times are not comparable with bench_f1.py's one-run-at-a-time figures."]
    update_section(SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["twitter2017", "twitter2015"], choices=sorted(NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--lr-head", nargs="+", type=float, default=[3e-5, 1e-4, 3e-4, 1e-3])
    parser.add_argument("--lr-crf", nargs="+", type=float, default=None, help="default: params.yaml's lr_crf")
    parser.add_argument("--lr-encoder", nargs="+", type=float, default=None,
                        help="default: params.yaml's lr_encoder")
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell (default: cores / jobs)")
    args = parser.parse_args()
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    base = {**params_train(), "use_image": True}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    grid = list(itertools.product(args.lr_encoder or [base["lr_encoder"]], args.lr_head,
                                  args.lr_crf or [base["lr_crf"]]))
    # The parameters a cell does not set: a change (params.yaml, --epochs) makes the stored cells stale.
    fingerprint = sha256_json({k: v for k, v in base.items() if k not in (*RATES, "seed")})[:12]
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    todo = [(data, rates, seed) for seed in args.seeds for data in args.data for rates in grid
            if results.get(cell_key(data, rates, seed), {}).get("fingerprint") != fingerprint]
    print(f"{len(todo)} cell(s) to train; results in {RESULTS}", flush=True)
    if not todo:
        write_table(results, args, grid, base, fingerprint)
        return
    ran_by = commit()
    with tempfile.TemporaryDirectory() as tmp, \
            ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        caches = {}
        for data in args.data:  # detections and features once per data set, read by every cell
            caches[data] = Path(tmp) / data
            caches[data].mkdir()
            build_cache(SHARED / data, caches[data])
        running: dict[Future, tuple] = {}
        for data, rates, seed in todo:
            parameters = {**base, **dict(zip(RATES, rates)), "seed": seed}
            running[pool.submit(run_cell, SHARED / data, caches[data], parameters, args.threads)] = (data, rates, seed)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                data, rates, seed = running.pop(future)
                scores = future.result()
                # Reread first: another invocation of this script may have stored cells since (other data sets).
                results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
                results[cell_key(data, rates, seed)] = {**scores, "data": data, "rates": list(rates), "seed": seed,
                                                        "fingerprint": fingerprint, "commit": ran_by}
                RESULTS.parent.mkdir(exist_ok=True)
                write_text_atomically(RESULTS, json.dumps(results, indent=1, sort_keys=True))
                print(f"{cell_key(data, rates, seed)}: F1 {scores['f1']:.4f} ({scores['seconds']:.0f} s)", flush=True)
                write_table(results, args, grid, base, fingerprint)


if __name__ == "__main__":
    main()

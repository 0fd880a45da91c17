"""Learning-rate sweep of the full model on the real benchmarks' valid splits: lr_head, lr_crf and lr_encoder.

    python benchmarks/bench_lr.py [--data twitter2017 twitter2015] [--seeds 1 2]
                                  [--lr-head 3e-5 1e-4 3e-4 1e-3] [--lr-crf R ...] [--lr-encoder R ...]
                                  [--epochs 8] [--jobs 2] [--threads N] [--table-only]

The grid is every combination of the rates given (lr_head not given: the issue's 3e-5 1e-4 3e-4 1e-3; lr_crf or
lr_encoder not given: params.yaml's). Each cell (data set, rates, seed) trains the full model with params.yaml's
other training parameters and scores its best dev epoch on valid (dev = valid, gold as written), as bench_f1.py
does. Cells run seed by seed, so a sweep stopped early has every rate at the first seeds. Finished cells are
kept in benchmarks/runs.json (benchmarks/runs.py, shared with bench_f1.py) with the commit that ran them: a rerun
(after a crash, or with more seeds or rates) trains only the cells it lacks, and a cell bench_f1.py trained (the
defaults) is not trained again. BENCHMARKS.md's table is rewritten after every cell: every stored cell of the same
other parameters, and the asked cells not yet run.
--jobs N trains N cells at once with cores/N threads each (on 2 cores two one-thread runs did about 1.4x the
work of one two-thread run, measured with two 1-epoch Twitter-2017 runs: 29.7 s for both side by side against
20.6 s for one alone; the encoder's matrices are too small to keep two threads busy).
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import last_run, update_section  # noqa: E402
from benchmarks.runs import NAMES, RUNS_FILE, how_trained, load_runs, mean_spread, named_parameters, params_train, train_missing  # noqa: E402

SECTION = "learning-rate sweep (full model)"
RATES = ("lr_encoder", "lr_head", "lr_crf")


def other_parameters(parameters: dict) -> dict:
    """The parameters a cell shares with its table: all but the rates and the seed, defaults counting as absent."""
    return {key: value for key, value in named_parameters(parameters).items() if key not in (*RATES, "seed")}


def write_table(runs: dict[str, dict], args: argparse.Namespace, grid: list[tuple[float, ...]], base: dict,
                previous: str) -> None:
    """Every stored full-model run with the other parameters of ``base``, the asked cells not run yet, and the
    table of the invocation before this one (``previous``: cells stored before runs.json was committed live on
    only there)."""
    mine = [run for run in runs.values() if other_parameters(run["parameters"]) == other_parameters(base)]
    defaults = tuple(base[name] for name in RATES)
    lines = [f"Full model (use_image true), packaged all-MiniLM-L6-v2, params.yaml's other training parameters "
             f"({base['epochs']} epochs); best dev epoch scored on valid (dev = valid, gold as written): mean ± "
             f"sample std over the seeds run. params.yaml's rates: "
             f"{', '.join(f'{name} {rate:g}' for name, rate in zip(RATES, defaults))}. \"not run\": asked, not run "
             f"yet. Runs from commits: {', '.join(sorted({run['commit'] for run in mine})) or '-'}."]
    for data in [name for name in NAMES if name in args.data or any(run["data"] == name for run in mine)]:
        cells: dict[tuple, list[dict]] = {rates: [] for rates in (grid if data in args.data else [])}
        for run in mine:
            if run["data"] == data:
                cells.setdefault(tuple(run["parameters"][name] for name in RATES), []).append(run)
        lines += ["", f"**{NAMES[data]} valid**", "",
                  "| lr_encoder | lr_head | lr_crf | F1 (default) | P | R | F1 (strict) | seeds | "
                  "train time per run (s) |", "|---|---|---|---|---|---|---|---|---|"]
        for rates, found in sorted(cells.items()):
            found.sort(key=lambda run: run["parameters"]["seed"])
            shown = " | ".join(f"{rate:g}" for rate in rates) + (" (params.yaml)" if rates == defaults else "")
            if not found:
                lines.append(f"| {shown} | not run | | | | | |")
                continue
            lines.append(f"| {shown} | {mean_spread([r['f1'] for r in found])} | "
                         f"{mean_spread([r['p'] for r in found])} | {mean_spread([r['r'] for r in found])} | "
                         f"{mean_spread([r['strict'] for r in found])} | "
                         f"{', '.join(str(r['parameters']['seed']) for r in found)} | "
                         f"{statistics.fmean(r['seconds'] for r in found):.0f} |")
    lines += ["", f"Runs trained with {how_trained(mine)}: train times compare only between runs trained alike, "
                  "and depend on what else ran on the machine."]
    if previous:
        lines += ["", "### Previous run", "", previous]
    update_section(SECTION, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["twitter2017", "twitter2015"], choices=sorted(NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--lr-head", nargs="+", type=float, default=[3e-5, 1e-4, 3e-4, 1e-3],
                        help="default: the issue's grid 3e-5 1e-4 3e-4 1e-3")
    parser.add_argument("--lr-crf", nargs="+", type=float, default=None, help="default: params.yaml's lr_crf")
    parser.add_argument("--lr-encoder", nargs="+", type=float, default=None,
                        help="default: params.yaml's lr_encoder")
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per cell (default: cores / jobs)")
    parser.add_argument("--table-only", action="store_true", help="write the table from the stored cells only")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    base = {**params_train(), "use_image": True}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    grid = list(itertools.product(args.lr_encoder or [base["lr_encoder"]], args.lr_head,
                                  args.lr_crf or [base["lr_crf"]]))
    wanted = [(data, {**base, **dict(zip(RATES, rates)), "seed": seed})
              for seed in args.seeds for data in args.data for rates in grid]
    previous = last_run(SECTION)  # the last invocation's table, kept beside every table this one writes
    runs = load_runs() if args.table_only else \
        train_missing(wanted, args.jobs, threads, on_stored=lambda runs: write_table(runs, args, grid, base, previous))
    write_table(runs, args, grid, base, previous)
    print(f"runs stored in {RUNS_FILE}")


if __name__ == "__main__":
    main()

"""F1 on the real benchmarks' valid splits with the packaged MiniLM: text only and the full model, over seeds.

Nearly every image of the benchmarks is absent here (15 per set are shipped in ../shared/data), so the full model
sees an image for very few posts: this measures the text path, the fusion's robustness (a rare image must not
hurt) and the training options, not what the image adds (the demo set's learning test shows that).

    python benchmarks/bench_f1.py [--data twitter2017 twitter2015] [--seeds 1 2] [--epochs 8]
                                  [--variants text full] [--set prefix_norm=free ...] [--durant]
                                  [--jobs 1] [--threads N] [--table-only]

``--durant`` also tags "Kevin Durant signs with the Golden State Warriors # NBA" without an image and with each
of four real photos of the set (the failure of issue 11: a present image wiped out the text's entities).
Each data set's section of BENCHMARKS.md keeps the previous run's table beside the new one; a run with ``--set``
writes a section of its own, its rows beside the stored params.yaml runs of the same seeds. Runs are kept in
benchmarks/runs.json (benchmarks/runs.py), shared with bench_lr.py: a run already trained with the same parameters,
by either script, is read back instead of trained again, so a rerun after a crash trains only what is missing.
``--jobs N`` trains N runs at once (on 2 cores two one-thread runs do about 1.4x the work of one two-thread run).
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click  # noqa: E402

from benchmarks.report import kept_previous_run, last_run, update_section  # noqa: E402
from benchmarks.runs import (  # noqa: E402
    DURANT,
    NAMES,
    RUNS_FILE,
    SHARED,
    how_trained,
    load_runs,
    mean_spread,
    params_train,
    run_key,
    train_missing,
)
from dghc.cli import dghc  # noqa: E402
from dghc.pipeline.data.conll import read_conll  # noqa: E402
from dghc.stages.options import parse_config, parse_overrides  # noqa: E402

VARIANTS = {"text": ("text only (BERT-CRF)", {"use_image": False}), "full": ("full DGHC", {"use_image": True})}


def parse_set(items: list[str]) -> dict:
    """--set KEY=VALUE items typed as `dghc train --set` reads them (word_shape=false is the choice 'false' and
    lr_head=3e-4 a float, where plain YAML would read a boolean and a string)."""
    train_command = dghc.get_command(click.Context(dghc), "train")
    config = parse_config(train_command, [arg for item in items for arg in ("--set", item)])
    return {key: getattr(config, key) for key in parse_overrides(items)}


def previous_table(section: str) -> str:
    """The F1 table and command of the section's last run, to print beside the new figures."""
    body = last_run(section)
    command = re.search(r"Command: `([^`]*)`", body)
    stamp = re.search(r"Measured ([^\n]*?) on", body)
    lines = body.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    rows = list(itertools.takewhile(lambda line: line.startswith("|"), lines[first:]))  # the F1 table only
    if not rows:
        return ""
    return (f"### Previous run\n\n`{command.group(1) if command else '?'}` ({stamp.group(1) if stamp else '?'}):\n\n"
            + "\n".join(rows))


def table_row(name: str, found: list[dict]) -> str:
    if not found:
        return f"| {name} | not run | | | | | |"
    return (f"| {name} | {mean_spread([r['p'] for r in found])} | {mean_spread([r['r'] for r in found])} | "
            f"{mean_spread([r['f1'] for r in found])} | {mean_spread([r['strict'] for r in found])} | "
            f"{', '.join(str(r['parameters']['seed']) for r in found)} | "
            f"{statistics.fmean(r['seconds'] for r in found):.0f} |")


def described(parameters: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in parameters.items())


def section_body(data: str, args: argparse.Namespace, base: dict, runs: dict[str, dict], overrides: dict) -> str:
    """The section's text; with ``overrides`` (--set) each variant's row is followed by params.yaml's stored runs of
    the same seeds, so the ablation reads in one table."""
    splits = [SHARED / data / "train.txt", SHARED / data / "valid.txt"]
    valid, _ = read_conll(splits[1], invalid_bio="keep")
    # params.yaml's parameters at the run's --epochs; with --set epochs=N, at params.yaml's own epochs
    reference = {**params_train(), **({"epochs": args.epochs} if args.epochs is not None else {})}
    rows, shown = [], []
    for variant in args.variants:
        name, flags = VARIANTS[variant]
        compared = [(name, base)]
        if overrides:
            was = described({key: reference.get(key) for key in overrides})
            compared = [(f"{name}, {described(overrides)}", base), (f"{name}, params.yaml ({was})", reference)]
        for label, parameters in compared:
            keys = [run_key(data, {**parameters, **flags, "seed": seed}) for seed in args.seeds]
            found = [runs[key] for key in keys if key in runs]
            shown += found
            rows.append(table_row(label, found))
    present = sorted({str(r["images_present"]) for r in shown if "images_present" in r})
    body = (f"{NAMES[data]} (../shared/data): train {len(read_conll(splits[0])[0])} posts, scored on valid "
            f"({len(valid)} posts, gold as written; {'/'.join(present) or '?'} images of the set present), packaged "
            f"all-MiniLM-L6-v2, params.yaml's training parameters ({base['epochs']} epochs; changed: "
            f"{described(overrides) or 'none'}), "
            f"best dev epoch (dev = valid: these are dev scores): mean ± sample std over the seeds. Runs from "
            f"commits {', '.join(sorted({r['commit'] for r in shown}))}, trained with {how_trained(shown)} (train times "
            f"compare only between runs trained alike, and depend on what else ran on the machine).\n\n"
            "| model | P (default) | R (default) | F1 (default) | F1 (strict) | seeds | train time per run (s) |\n"
            "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    full_first = runs.get(run_key(data, {**base, **VARIANTS["full"][1], "seed": args.seeds[0]}), {})
    if args.durant and "durant" in full_first:
        body += ("\n\nThe post \"" + " ".join(DURANT) + "\" tagged by the full model (seed "
                 f"{args.seeds[0]}) without an image and with four real photos of the set:\n\n"
                 "| image | relevance s | entities |\n|---|---|---|\n" + "\n".join(full_first["durant"]))
    return body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["twitter2017", "twitter2015"], choices=sorted(NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    parser.add_argument("--variants", nargs="+", default=["text", "full"], choices=sorted(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a training parameter other than params.yaml's (repeatable)")
    parser.add_argument("--durant", action="store_true", help="tag the Kevin Durant post with four real photos")
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    parser.add_argument("--table-only", action="store_true", help="write the tables from the stored runs only")
    args = parser.parse_args()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    overrides = parse_set(args.overrides)
    base = {**params_train(), **overrides}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    wanted = [(data, {**base, **VARIANTS[variant][1], "seed": seed})
              for seed in args.seeds for data in args.data for variant in args.variants]
    durant = {run_key(data, {**base, **VARIANTS["full"][1], "seed": args.seeds[0]}) for data in args.data
              if args.durant and "full" in args.variants}
    runs = load_runs() if args.table_only else train_missing(wanted, args.jobs, threads, durant)
    for data in args.data:
        # an ablation (--set) gets a section of its own, beside params.yaml's runs, and leaves the main table alone
        section = f"F1 on {NAMES[data]} valid" + (f" with {described(overrides)}" if overrides else "")
        body = section_body(data, args, base, runs, overrides)
        previous = kept_previous_run(section) if args.table_only else previous_table(section)
        update_section(section, body + ("\n\n" + previous if previous else ""))
    print(f"runs stored in {RUNS_FILE}")


if __name__ == "__main__":
    main()

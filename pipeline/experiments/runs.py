"""Runs to put in a table: each one's variant, seed, data, scores, dev F1 per epoch and test predictions.

Two sources: the experiments of a DVC repository (``dvc exp show --json`` for the parameters; each experiment's
files read from the DVC cache at its revision), or run folders given by hand, each holding the files a pipeline
run writes (``metrics.json`` from ``dghc evaluate --metrics``; optionally ``params.yaml``, ``train_log.csv`` and
``predictions.txt``).
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..core.errors import DghcError

# A variant is named by the train parameters that make it (the paper's Tables 3 and 5).
VARIANTS: dict[str, dict[str, bool]] = {
    "text only (BERT-CRF)": {"use_image": False},
    "w/o RE score": {"use_relevance": False},
    "w/o gating": {"use_gates": False},
    "w/o augmentation": {"use_regions": False},
    "full (DGHC)": {},
}
FULL = "full (DGHC)"
FLAGS = ("use_image", "use_relevance", "use_gates", "use_regions")
# The files a pipeline run writes (dvc.yaml) and a run folder holds.
METRICS, LOG, PREDICTIONS = "cache/metrics.json", "cache/train_log.csv", "cache/predictions.txt"


@dataclass
class Run:
    name: str
    variant: str
    seed: int | None
    data: dict[str, str]  # train, dev, test: what the run was trained and scored on
    metrics: dict[str, Any]  # dghc evaluate --metrics
    dev_f1: list[tuple[int, float]] = field(default_factory=list)  # (epoch, dev F1) of the epochs scored
    predictions: list[tuple[str, list[str], list[str]]] | None = None  # (post id, gold, predicted) per post
    cross: dict[str, dict[str, Any]] = field(default_factory=dict)  # other data set -> its metrics (Table 6)


def variant_of(train: dict[str, Any]) -> str:
    """The variant of a run's train parameters; a run switching off several parts gets its own name."""
    off = [flag for flag in FLAGS if train.get(flag, True) is False]
    if not off:
        return FULL
    if "use_image" in off:
        return "text only (BERT-CRF)"
    if len(off) == 1:
        return next(name for name, flags in VARIANTS.items() if flags == {off[0]: False})
    return "w/o " + " + ".join(flag.removeprefix("use_") for flag in off)


def check_metrics(metrics: Any, where: str) -> dict[str, Any]:
    """A metrics file of `dghc evaluate --metrics`, or a DghcError naming ``where``."""
    try:
        for mode in ("default", "strict"):
            overall = metrics[mode]["overall"]
            for key in ("precision", "recall", "f1"):
                float(overall[key])
            dict(metrics[mode]["per_type"])
    except (KeyError, TypeError, ValueError):
        raise DghcError(f"{where}: not a metrics file of `dghc evaluate --metrics` (it needs default and strict "
                        "overall precision, recall and f1, and per_type)") from None
    return metrics


def read_log(text: str) -> list[tuple[int, float]]:
    """(epoch, dev F1) of the epochs the training log scored."""
    return [(int(row["epoch"]), float(row["dev_f1"])) for row in csv.DictReader(io.StringIO(text))
            if row.get("dev_f1")]


def read_predictions(text: str, where: str) -> list[tuple[str, list[str], list[str]]]:
    """The CoNLL columns token, gold, predicted of `dghc evaluate --predictions`."""
    posts: list[tuple[str, list[str], list[str]]] = []
    text = text.removeprefix("\ufeff")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")  # a file saved with Windows line endings
        if line.startswith("IMGID:"):
            posts.append((line[len("IMGID:"):], [], []))
        elif line.strip():
            columns = line.split("\t")
            if len(columns) != 3 or not posts:
                raise DghcError(f"{where}:{number}: not a predictions file of `dghc evaluate --predictions` "
                                "(token, gold and predicted label in three columns, posts after IMGID lines)")
            posts[-1][1].append(columns[1])
            posts[-1][2].append(columns[2])
    if not posts:
        raise DghcError(f"{where}: no posts in the predictions file")
    return posts


def run_from_files(name: str, read: Callable[[str], str | None], params: dict[str, Any]) -> Run:
    """A run from its files, ``read(path)`` giving a file's text or None when it is absent."""
    metrics_text = read(METRICS)
    if metrics_text is None:
        raise DghcError(f"{name}: no {METRICS}: the run did not reach `dghc evaluate`")
    try:
        metrics = json.loads(metrics_text)
    except json.JSONDecodeError as err:
        raise DghcError(f"{name}: {METRICS} is not JSON ({err})") from None
    check_metrics(metrics, f"{name}: {METRICS}")
    train = params.get("train", {}) or {}
    log_text, predictions_text = read(LOG), read(PREDICTIONS)
    cross = {}
    for key in (params.get("cross") or {}):  # the stage cross_evaluate of dvc.yaml, one per other data set
        text = read(f"cache/cross/{key}/metrics.json")
        if text is not None:
            try:
                cross[str(key)] = check_metrics(json.loads(text), f"{name}: cache/cross/{key}/metrics.json")
            except json.JSONDecodeError as err:
                raise DghcError(f"{name}: cache/cross/{key}/metrics.json is not JSON ({err})") from None
    return Run(name=name, variant=variant_of(train), seed=train.get("seed"),
               data={k: str(v) for k, v in (params.get("data") or {}).items() if k in ("train", "dev", "test")},
               metrics=metrics, dev_f1=read_log(log_text) if log_text else [],
               predictions=read_predictions(predictions_text, f"{name}: {PREDICTIONS}") if predictions_text else None,
               cross=cross)


def runs_from_folders(folders: list[Path]) -> list[Run]:
    """Run folders: ``params.yaml`` and the cache files of one run (``cache/metrics.json``... or flat)."""
    runs = []
    for folder in folders:
        if not folder.is_dir():
            raise DghcError(f"{folder}: not a run folder (give folders holding a run's metrics.json)")

        def read(path: str, folder: Path = folder) -> str | None:
            for candidate in (folder / path, folder / Path(path).name):
                if candidate.is_file():
                    return candidate.read_text(encoding="utf-8")
            return None

        params_text = read("params.yaml")
        try:
            params = yaml.safe_load(params_text) if params_text else {}
        except yaml.YAMLError as err:
            raise DghcError(f"{folder}: params.yaml is not valid YAML ({err})") from None
        runs.append(run_from_files(folder.name, read, params if isinstance(params, dict) else {}))
    return runs


def dvc_executable() -> str:
    """The dvc installed beside this Python (a virtual environment need not be on PATH), else dvc on PATH."""
    beside = Path(sys.executable).with_name("dvc")
    return str(beside) if beside.is_file() else "dvc"


def dvc_experiments(repo: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, revision, params.yaml) of every experiment of the repository's commits (not the workspace)."""
    done = subprocess.run([dvc_executable(), "exp", "show", "--json", "--all-commits"], cwd=repo,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise DghcError(f"`dvc exp show` failed in {repo}: {done.stderr.strip()[-500:]}")
    found = []
    for commit in json.loads(done.stdout or "[]"):  # the workspace and each commit, with its experiments
        for experiment in (commit.get("experiments") or []) if isinstance(commit, dict) else []:
            for node in experiment.get("revs") or []:
                data = node.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                if node.get("error") or not params:  # a failed experiment: nothing to read
                    continue
                found.append((str(node.get("name") or node["rev"][:7]), str(node["rev"]), params))
    return found


def runs_from_dvc(repo: Path) -> list[Run]:
    """Every DVC experiment of ``repo`` that reached `dghc evaluate`, its files read at its revision."""
    from dvc.api import DVCFileSystem

    runs = []
    for name, rev, params in dvc_experiments(repo):
        fs = DVCFileSystem(str(repo), rev=rev)

        def read(path: str, fs: Any = fs) -> str | None:
            try:
                with fs.open(path, "r", encoding="utf-8") as handle:
                    return handle.read()
            except (FileNotFoundError, OSError):
                return None

        runs.append(run_from_files(name, read, params))
    if not runs:
        raise DghcError(f"no DVC experiment in {repo} (run `dghc experiments run` or `dvc exp run` first)")
    return runs

"""Finished benchmark training runs, stored so that each configuration is trained once across the F1 benchmarks.

A run is a data set and the complete training parameters (seed included). ``benchmarks/runs.json`` (committed:
the raw records behind BENCHMARKS.md's F1 tables, hours of CPU that a lost working tree would lose) keeps
each finished run's scores, the commit that trained it and its --jobs/--threads. bench_f1.py and bench_lr.py both
read it before training and add each run as it finishes: a rerun after a crash, with more seeds or rates, or by
the other script trains only the runs missing. A changed params.yaml changes the parameters, so the runs of the
old ones are simply no longer asked for.
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import MISSING, fields
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(REPO)

import yaml  # noqa: E402

from dghc.pipeline.artifacts.atomic import write_text_atomically  # noqa: E402
from dghc.pipeline.artifacts.fingerprint import sha256_json  # noqa: E402
from dghc.pipeline.data.conll import Post, read_conll  # noqa: E402
from dghc.pipeline.data.tags import OTHER_AS_MISC  # noqa: E402
from dghc.pipeline.detection.config import DetectConfig  # noqa: E402
from dghc.pipeline.detection.run import run_detect  # noqa: E402
from dghc.pipeline.experiments.spread import spread  # noqa: E402
from dghc.pipeline.features.config import ExtractConfig  # noqa: E402
from dghc.pipeline.features.extract import extract_features  # noqa: E402
from dghc.pipeline.features.store import FeatureStore  # noqa: E402
from dghc.pipeline.inference.checkpoint import load_checkpoint  # noqa: E402
from dghc.pipeline.inference.evaluation import evaluate  # noqa: E402
from dghc.pipeline.inference.tagging import predict  # noqa: E402
from dghc.pipeline.training.config import TrainConfig  # noqa: E402
from dghc.pipeline.training.trainer import train  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
NAMES = {"twitter2017": "Twitter-2017", "twitter2015": "Twitter-2015"}
DURANT = "Kevin Durant signs with the Golden State Warriors # NBA".split()
RUNS_FILE = REPO / "benchmarks" / "runs.json"


def params_train() -> dict:
    """params.yaml's train section: the defaults this benchmark measures (files and device left out)."""
    section = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    return {key: value for key, value in section.items()
            if key not in ("train_file", "dev_file", "features_file", "detections_file", "output_dir", "log_file",
                           "metrics_file", "state_dir", "progress")}


def durant_rows(model_dir: Path, features: FeatureStore, image_ids: list[str]) -> list[str]:
    checkpoint = load_checkpoint(model_dir)
    posts = [Post(f"no-image-{image_ids[0]}", DURANT, ["O"] * len(DURANT))]
    posts += [Post(image_id, DURANT, ["O"] * len(DURANT)) for image_id in image_ids]

    class NoImageForTheFirst:  # the first post keeps its words but gets no image
        dim, m = features.dim, features.m

        def __contains__(self, image_id):
            return True

        def batch(self, ids):
            vectors, mask = features.batch([i.removeprefix("no-image-") for i in ids])
            for row, image_id in enumerate(ids):
                if image_id.startswith("no-image-"):
                    mask[row] = False
            return vectors, mask

    rows = []
    for prediction in predict(checkpoint.tagger, checkpoint.tokenizer, posts, NoImageForTheFirst()):
        entities = " ".join(f"{word}/{label}" for word, label in zip(DURANT, prediction.labels) if label != "O")
        image = "none" if prediction.post_id.startswith("no-image-") else prediction.post_id
        relevance = "" if prediction.relevance is None or image == "none" else f"{prediction.relevance:.2f}"
        rows.append(f"| {image} | {relevance} | {entities or '(no entity)'} |")
    return rows


def mean_spread(values: list[float]) -> str:
    """'mean ± sample std' in F1 points, like the paper (the mean alone for one value)."""
    found = spread(values)
    return found.format() if found.std is not None else f"{100 * found.mean:.2f}"


def present_images(features: FeatureStore) -> list[str]:
    """The image ids whose image file was there and readable (the others are stored masked)."""
    return [image_id for image_id in features.image_ids if features.batch([image_id])[1][0, 0]]


def build_cache(folder: Path, root: Path) -> tuple[FeatureStore, list[str], float]:
    """Detect and extract the set's train and valid images into ``root``: the store, the present image ids and
    the seconds it took."""
    splits = [folder / "train.txt", folder / "valid.txt"]
    start = time.perf_counter()
    run_detect(DetectConfig(files=splits, out=root / "detections.h5", images=folder / "images", progress=False),
               log=lambda _: None)
    extract_features(ExtractConfig(data=splits, detections=root / "detections.h5", out=root / "features.h5",
                                   images=folder / "images", num_workers=0, device="cpu", progress=False))
    seconds = time.perf_counter() - start
    features = FeatureStore(root / "features.h5")
    return features, present_images(features), seconds


def train_and_score(folder: Path, cache: Path, run_dir: Path, parameters: dict) -> dict[str, Any]:
    """Train on the set's train split with ``parameters`` (dev = valid), score the best checkpoint on valid with
    the gold as written: default-mode P/R/F1, strict F1, the training seconds, the best epoch and the dev F1 of
    each epoch. The model stays in run_dir/model."""
    start = time.perf_counter()
    result = train(TrainConfig(**parameters, train_file=folder / "train.txt", dev_file=folder / "valid.txt",
                               features_file=cache / "features.h5", detections_file=cache / "detections.h5",
                               output_dir=run_dir / "model", log_file=None, state_dir=run_dir / "state",
                               progress=False))
    seconds = time.perf_counter() - start
    posts, _ = read_conll(folder / "valid.txt", type_map=OTHER_AS_MISC, invalid_bio="keep")
    scored = evaluate(load_checkpoint(run_dir / "model"), posts, FeatureStore(cache / "features.h5"))
    default, strict = scored.metrics["default"]["overall"], scored.metrics["strict"]["overall"]
    # the epoch curve says whether more epochs or another schedule could help
    return {"p": default["precision"], "r": default["recall"], "f1": default["f1"], "strict": strict["f1"],
            "seconds": seconds, "best_epoch": result.best_epoch,
            "dev_f1_by_epoch": [record.dev_f1 for record in result.history]}


def how_trained(runs: list[dict]) -> str:
    """The --jobs and --threads the runs were trained with (their train times depend on it, and on the runs of
    other invocations that shared the machine, which the store does not know)."""
    ways = sorted({(run.get("jobs"), run.get("threads")) for run in runs}, key=str)
    return "; ".join(f"--jobs {jobs} --threads {threads}" for jobs, threads in ways)


def _train_defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def named_parameters(parameters: dict) -> dict:
    """The parameters that differ from TrainConfig's defaults. A parameter at its default counts as absent: a run
    stored before an option existed trained as its default, and keeps matching once params.yaml names it."""
    defaults = _train_defaults()
    return {key: value for key, value in parameters.items() if key not in defaults or value != defaults[key]}


def run_key(data: str, parameters: dict) -> str:
    """The data set and a hash of the parameters (named_parameters: defaults count as absent)."""
    return f"{data} {sha256_json(named_parameters(parameters))[:16]}"


def load_runs(path: Path = RUNS_FILE) -> dict[str, dict]:
    """The stored runs by run_key (recomputed: the key's rules may be newer than the file)."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    return {run_key(record["data"], record["parameters"]): record for record in stored.values()}


def store_run(record: dict, path: Path = RUNS_FILE) -> None:
    """Add one finished run. Reread and rewritten under a lock: another benchmark process may store a run too."""
    path.parent.mkdir(exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = load_runs(path)
        runs[run_key(record["data"], record["parameters"])] = record
        write_text_atomically(path, json.dumps(runs, indent=1, sort_keys=True))


def commit() -> str:
    """HEAD's short hash, '+changes' when pipeline/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pipeline"], cwd=REPO, capture_output=True,
                               text=True).stdout.strip()
        return head.stdout.strip() + ("+changes" if dirty else "")
    except OSError:
        return "?"


def exit_with_parent(parent_pid: int, poll_seconds: float = 2.0) -> None:
    """Pool worker initializer: end this worker when the benchmark process that started it is gone. A sweep killed
    with SIGTERM or SIGKILL otherwise leaves its workers training for an hour on cores the next sweep needs."""
    import threading

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _train_one(data: str, cache: Path, parameters: dict, threads: int, durant: bool) -> dict:
    """One training run in a worker process with ``threads`` torch threads: its scores, the number of images
    present and, if asked, the Durant post's rows."""
    import torch

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as run_dir:
        scores = train_and_score(SHARED / data, cache, Path(run_dir), parameters)
        features = FeatureStore(cache / "features.h5")
        present = present_images(features)
        scores["images_present"] = len(present)
        if durant:
            scores["durant"] = durant_rows(Path(run_dir) / "model", features, present[:4])
        return scores


def missing_runs(wanted: list[tuple[str, dict]], runs: dict[str, dict], durant: set[str] = frozenset()
                 ) -> list[tuple[str, dict]]:
    """The runs of ``wanted`` not in ``runs`` (each once), and those of ``durant`` stored without the Durant rows."""
    todo, seen = [], set()
    for data, parameters in wanted:
        key = run_key(data, parameters)
        if key not in seen and (key not in runs or (key in durant and "durant" not in runs[key])):
            todo.append((data, parameters))
        seen.add(key)
    return todo


def train_missing(wanted: list[tuple[str, dict]], jobs: int, threads: int, durant: set[str] = frozenset(),
                  on_stored: Callable[[dict[str, dict]], None] | None = None, path: Path = RUNS_FILE
                  ) -> dict[str, dict]:
    """Train the runs of ``wanted`` (data set, parameters) not stored yet, ``jobs`` at a time with ``threads``
    torch threads each, storing each as it finishes (then calling ``on_stored`` with every stored run). Keys in
    ``durant`` also tag the Kevin Durant post; such a run stored without those rows is trained again.
    Returns every stored run."""
    runs = load_runs(path)
    todo = missing_runs(wanted, runs, durant)
    print(f"{len(todo)} of the {len(wanted)} run(s) asked to train (the others are stored in {path})", flush=True)
    if not todo:
        return runs
    ran_by = commit()
    with tempfile.TemporaryDirectory() as tmp, \
            ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=exit_with_parent,
                                initargs=(os.getpid(),)) as pool:
        caches = {}
        for data in dict.fromkeys(data for data, _ in todo):  # detections and features once per data set
            caches[data] = Path(tmp) / data
            caches[data].mkdir()
            build_cache(SHARED / data, caches[data])
        # Spawned workers: a fork of this process, which ran torch to build the caches, can hang in its thread pools.
        running: dict[Future, tuple[str, dict]] = {
            pool.submit(_train_one, data, caches[data], parameters, threads,
                        run_key(data, parameters) in durant): (data, parameters) for data, parameters in todo}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                data, parameters = running.pop(future)
                scores = future.result()
                store_run({"data": data, "parameters": parameters, **scores, "commit": ran_by, "threads": threads,
                           "jobs": jobs,
                           "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}, path)
                print(f"{data} seed {parameters['seed']} use_image {parameters['use_image']} "
                      f"lr_head {parameters['lr_head']:g} lr_crf {parameters['lr_crf']:g}: F1 {100 * scores['f1']:.2f} "
                      f"({scores['seconds']:.0f} s)", flush=True)
                if on_stored:
                    on_stored(load_runs(path))
    return load_runs(path)

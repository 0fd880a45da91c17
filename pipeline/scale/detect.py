"""``dghc detect --engine ray``: the detect stage as a Ray Data pipeline that writes a sharded detections store.

    the local engine's batches  ->  decode + detectors + merge  ->  shard files + index.h5
       (ids, paths, phrases)           actor pool of ``workers``       written by the driver, in row order
       ray.data.from_items             actors (``detect_batch``)

Each actor loads the detection sources once and runs the local stage's ``detect_batch`` on exactly the local
engine's batches (``dghc.pipeline.scale.batches``; the detectors resize the decoded images themselves). The driver
loads the sources too, for the fingerprint (weights and their hashes), and writes each shard with the local
writer once all its rows are back. A rerun skips the shards a killed run finished; Ray retries the batches of a
worker that died.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifacts.fingerprint import sha256_json
from ..artifacts.lock import output_lock
from ..artifacts.shards import Shard, check_store_folder, plan_shards, unfinished_shards, write_index
from ..core.console import say
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..data.images import count_statuses
from ..detection.config import DetectConfig
from ..detection.detectors import PredictSettings
from ..detection.run import (
    DetectSummary,
    ImageItem,
    build_fingerprint,
    check_strict,
    collect_items,
    detect_batch,
    summarise_detections,
)
from ..detection.sources import load_sources
from ..detection.store import STRING_ARRAYS, load_detections, read_fingerprint_sha256, write_detections
from .batches import BatchActor, check_worker_identity, local_batches, run_batches
from .session import import_ray, ray_cluster, worker_resources
from .shard_writer import ShardWriter

KIND = "detections"  # the shard files: detections-00000.h5, ...


@dataclass
class DetectBatch:
    """One batch of the local engine: its rows and their images (absolute paths, prompt phrases)."""

    rows: np.ndarray
    items: list[ImageItem]


class DetectActor(BatchActor):
    """A Ray actor holding the detection sources: a batch in, its rows of the output out (``detect_batch``)."""

    def __init__(self, config: DetectConfig, device: str, threads: int,
                 expected: dict[str, Any] | None = None) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        settings = PredictSettings(imgsz=config.imgsz, conf=config.conf, iou=config.iou, device=device)
        loaded = load_sources(config.detector, config.grounding, settings)
        if expected is not None:  # before any detection: shards carry the driver's fingerprint
            check_same_sources(expected, worker_identity(loaded.report))
        self.sources = loaded.sources
        self.m, self.iou = config.m, config.iou

    def process(self, batch: DetectBatch) -> dict[str, np.ndarray]:
        return {"row": batch.rows, **detect_batch(batch.items, self.sources, self.m, self.iou)}


def worker_identity(report: dict[str, Any]) -> dict[str, Any]:
    """What a worker must share with the driver: which sources ran, their weights' sha256 (not their paths, which
    differ between nodes), and the dghc version (the code that detects)."""
    from ... import __version__

    sources = {role: {key: info.get(key) for key in ("ran", "sha256", "untrained", "text_encoder")}
               for role, info in sorted(report.items())}
    return {"sources": sources, "dghc": __version__}


def check_same_sources(expected: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Refuse a worker whose detection sources or dghc differ from the driver's (``check_worker_identity``)."""

    def describe(loaded: dict[str, Any], expected: dict[str, Any]) -> str:
        ours, theirs = loaded["sources"], expected["sources"]
        parts = []
        for role in sorted({*ours, *theirs}):
            mine, driver = ours.get(role) or {}, theirs.get(role) or {}
            if mine == driver:
                continue
            if mine.get("ran") != driver.get("ran"):
                parts.append(f"{role} {'running' if mine.get('ran') else 'not running'} but the driver's "
                             f"{'runs' if driver.get('ran') else 'does not run'}")
            elif mine.get("sha256") != driver.get("sha256"):
                parts.append(f"{role} weights sha256 {str(mine.get('sha256'))[:12]}… but the driver's are "
                             f"{str(driver.get('sha256'))[:12]}…")
            else:
                keys = sorted(key for key in {*mine, *driver} if mine.get(key) != driver.get(key))
                parts.append("; ".join(f"{role} {key} {mine.get(key)!r} but the driver's is {driver.get(key)!r}"
                                       for key in keys))
        return "loaded " + "; ".join(parts)

    check_worker_identity("detect", expected, loaded, describe, "detector weights")


def detect_on_ray(config: DetectConfig, *, log: Callable[[str], None] = say) -> DetectSummary:
    """Run the detect stage on Ray; ``out`` is a folder of shards plus ``index.h5`` (see the module's docstring)."""
    from tqdm import tqdm

    import_ray()  # first: no work before saying that Ray is missing
    config.check_inputs()
    out = config.out_file
    check_store_folder(out, KIND)
    with stop_signals("detect") as stop, output_lock(out, note=log):
        items = collect_items(config.files, config.images, config.max_phrases)
        if not items:
            raise DghcError(f"detect: no posts in {', '.join(str(path) for path in config.files)}: nothing to shard")
        # The driver's copy of the sources (on its CPU) only identifies them for the fingerprint.
        loaded = load_sources(config.detector, config.grounding, PredictSettings(imgsz=config.imgsz, conf=config.conf,
                                                                                 iou=config.iou, device="cpu"))
        if not loaded.sources:
            reasons = "; ".join(f"{role}: {info.get('reason')}" for role, info in sorted(loaded.report.items()))
            raise DghcError(f"detect: no detection source can run ({reasons})")
        fingerprint = build_fingerprint(config, items, loaded)
        fingerprint_sha = sha256_json(fingerprint)
        ids = [item.image_id for item in items]
        if not config.force and out.is_dir() and read_fingerprint_sha256(out) == fingerprint_sha:
            summary = _summary_of(out, shards=None, report=loaded.report)
            summary.up_to_date = True
            check_strict(config, summary)
            return summary
        out.mkdir(parents=True, exist_ok=True)
        shards = plan_shards(len(items), config.shard_size, config.batch_size, KIND)

        def is_finished(path: Path, shard: Shard) -> bool:
            return (read_fingerprint_sha256(path) == fingerprint_sha
                    and list(load_detections(path).image_ids) == ids[shard.start:shard.stop])

        todo, resumed = unfinished_shards(out, shards, is_finished, force=config.force, stage="detect", unit="images",
                                          note=log)

        def write(path: Path, shard: Shard, rows: dict[str, np.ndarray]) -> None:
            write_detections(path, rows, config.m, fingerprint, loaded.report)

        if todo:
            with ray_cluster("detect", config.address, config.workers) as cluster, \
                    tqdm(total=len(items), initial=resumed, unit="img", desc="detect", file=sys.stderr,
                         disable=not config.progress, dynamic_ncols=True) as bar:
                writer = ShardWriter(out, todo, write, "detect")
                for batch in _run(config, items, todo, cluster, worker_identity(loaded.report)):
                    writer.add({key: _stacked(value) for key, value in batch.items()})
                    bar.update(len(batch["row"]))
                    stop.check(f"{writer.shards_written} shards are written in {out}: rerun the same command to "
                               "resume")
                writer.finish()
        summary = _summary_of(out, shards, loaded.report)
        summary.resumed_from = resumed
        check_strict(config, summary)  # under --strict no index is written: the shards stay for a rerun
        write_index(out, shards, [count_statuses(load_detections(out / shard.file).status) for shard in shards],
                    text_datasets=tuple(sorted(STRING_ARRAYS)))
        return summary


def _run(config: DetectConfig, items: list[ImageItem], todo: list[Shard], cluster: dict[str, float],
         expected: dict[str, Any]) -> Any:
    """The local engine's batches of the unfinished shards through Ray; yields rows in row order."""
    resources = worker_resources(config.device, cluster)
    # Paths as the driver sees them: a worker on another node does not share its working directory.
    payloads = [DetectBatch(np.arange(batch.start, batch.stop),
                            [replace(items[row], path=items[row].path.resolve()) for row in batch])
                for batch in local_batches(todo, config.batch_size)]
    sources = {key: str(Path(value).resolve()) for key, value in (("detector", config.detector),
                                                                  ("grounding", config.grounding))
               if value is not None and Path(value).is_file()}
    actor = {"config": replace(config, **sources), "device": resources.device, "threads": int(resources.num_cpus),
             "expected": expected}
    return run_batches(payloads, DetectActor, actor, resources, config.workers,
                       blocks=max(4 * config.workers, len(todo)))


def _stacked(column: np.ndarray) -> np.ndarray:
    """Ray returns a (B, m) text column as B lists: back to one (B, m) array."""
    if column.dtype == object and len(column) and isinstance(column[0], (list, np.ndarray)):
        return np.array([list(value) for value in column], dtype=object)
    return column


def _summary_of(out: Path, shards: list[Shard] | None, report: dict[str, Any]) -> DetectSummary:
    """The stage's summary from the finished store (``shards`` None) or from its shard files, before the index."""
    parts = [load_detections(out)] if shards is None else [load_detections(out / shard.file) for shard in shards]
    return summarise_detections(out, np.concatenate([part.status for part in parts]),
                                [reason for part in parts for reason in part.reason],
                                [image_id for part in parts for image_id in part.image_ids],
                                np.concatenate([part.sources for part in parts]),
                                np.concatenate([part.valid for part in parts]), report)

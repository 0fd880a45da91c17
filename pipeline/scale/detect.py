"""``dghc detect --engine ray``: the detect stage as a Ray Data pipeline that writes a sharded detections store.

    rows (image id, path, phrases)  ->  decode + detectors + merge  ->  shard files + index.h5
       ray.data.from_items               actor pool of ``workers``       written by the driver, in row order
                                         actors (``detect_batch``)

Each actor loads the detection sources once and runs the local stage's ``detect_batch`` on its batches (the
detectors resize the decoded images themselves). The driver loads the sources too, for the fingerprint (weights
and their hashes), and writes each shard with the local writer once all its rows are back. A rerun skips the
shards a killed run finished; Ray retries the batches of a worker that died.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.artifacts.fingerprint import sha256_json
from pipeline.artifacts.lock import output_lock
from pipeline.artifacts.shards import Shard, check_store_folder, finished_shards, plan_shards, write_index
from pipeline.core.console import say
from pipeline.core.errors import DghcError
from pipeline.core.signals import stop_signals
from pipeline.data.images import count_statuses
from pipeline.detection.config import DetectConfig
from pipeline.detection.detectors import PredictSettings
from pipeline.detection.run import (
    DetectSummary,
    ImageItem,
    build_fingerprint,
    check_strict,
    collect_items,
    detect_batch,
    summarise_detections,
)
from pipeline.detection.sources import load_sources
from pipeline.detection.store import STRING_ARRAYS, load_detections, read_fingerprint_sha256, write_detections
from pipeline.scale.session import import_ray, ray_cluster, worker_resources
from pipeline.scale.shard_writer import ShardWriter


class DetectActor:
    """A Ray actor holding the detection sources: rows in, the output's rows out."""

    def __init__(self, config: DetectConfig, device: str, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        settings = PredictSettings(imgsz=config.imgsz, conf=config.conf, iou=config.iou, device=device)
        self.sources = load_sources(config.detector, config.grounding, settings).sources
        self.m, self.iou = config.m, config.iou

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [ImageItem(str(image_id), Path(path), list(phrases))
                 for image_id, path, phrases in zip(batch["image_id"], batch["path"], batch["phrases"])]
        rows = detect_batch(items, self.sources, self.m, self.iou)
        return {"row": batch["row"], **rows}


def detect_on_ray(config: DetectConfig, *, log: Callable[[str], None] = say) -> DetectSummary:
    """Run the detect stage on Ray; ``out`` is a folder of shards plus ``index.h5`` (see the module's docstring)."""
    from tqdm import tqdm

    import_ray()  # first: no work before saying that Ray is missing
    config.check_inputs()
    out = config.out_file
    check_store_folder(out)
    with stop_signals("detect") as stop, output_lock(out, note=log):
        items = collect_items(config.files, config.images, config.max_phrases)
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
        shards = plan_shards(len(items), config.shard_size)

        def is_finished(path: Path, shard: Shard) -> bool:
            return (read_fingerprint_sha256(path) == fingerprint_sha
                    and list(load_detections(path).image_ids) == ids[shard.start:shard.stop])

        done = finished_shards(out, shards, (lambda *_: False) if config.force else is_finished)
        todo = [shard for shard in shards if shard.number not in done]
        resumed = sum(shard.stop - shard.start for shard in shards if shard.number in done)
        if done:
            log(f"detect: {len(done)} of {len(shards)} shards were finished by an earlier run ({resumed} images): "
                "skipped")

        def write(path: Path, shard: Shard, rows: dict[str, np.ndarray]) -> None:
            write_detections(path, rows, config.m, fingerprint, loaded.report)

        if todo:
            with ray_cluster("detect", config.address, config.workers) as cluster, \
                    tqdm(total=len(items), initial=resumed, unit="img", desc="detect", file=sys.stderr,
                         disable=not config.progress, dynamic_ncols=True) as bar:
                writer = ShardWriter(out, todo, write, "detect")
                for batch in _pipeline(config, items, todo, cluster):
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


def _pipeline(config: DetectConfig, items: list[ImageItem], todo: list[Shard], cluster: dict[str, float]) -> Any:
    """The Ray Data pipeline over the rows of the unfinished shards; yields numpy batches in row order."""
    import ray.data

    resources = worker_resources(config.device, cluster)
    rows = [{"row": row, "image_id": items[row].image_id, "path": str(items[row].path),
             "phrases": list(items[row].phrases)} for shard in todo for row in range(shard.start, shard.stop)]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // config.batch_size)))
    dataset = dataset.map_batches(
        DetectActor, batch_size=config.batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=config.workers),
        fn_constructor_kwargs={"config": config, "device": resources.device, "threads": int(resources.num_cpus)},
        num_cpus=resources.num_cpus, num_gpus=resources.num_gpus)
    return dataset.iter_batches(batch_size=None, batch_format="numpy")


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

"""``dghc predict --engine ray``: tag posts in a Ray Data actor pool, written as a folder of Parquet shards.

    posts (read and checked by the driver)  ->  detect + CLIP + tagger  ->  shard-NNNNN.parquet + _index.json
       ray.data.from_items                       actor pool of ``workers``    written by the driver, in input order
                                                 ``PostTagger``s

Each actor loads the checkpoint and its visual pipeline once and tags its batches with the local engine's
``PostTagger``. A shard holds the output records of ``shard_size`` consecutive input posts, one row per post with
the JSONL output's fields as typed columns; its Parquet metadata records which run wrote it (the input posts, the
model's files, the settings). ``_index.json`` is written last and lists the shards: ``pandas.read_parquet(folder)``
or ``pyarrow.dataset.dataset(folder)`` read the folder as one table (files starting with ``_`` are skipped). A
rerun skips the shards a killed run finished.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

from ..artifacts.atomic import write_text_atomically
from ..artifacts.file_hashes import sha256_files
from ..artifacts.fingerprint import sha256_json
from ..artifacts.lock import output_lock
from ..artifacts.shards import Shard, check_store_folder, plan_shards, unfinished_shards
from ..core.console import say
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..inference.visual_features import warn_if_images_rare
from ..prediction.config import PredictConfig
from ..prediction.inputs import InputPost
from ..prediction.post_tagger import empty_image_counts
from ..prediction.run import PredictSummary, read_input
from .batches import BatchActor, check_worker_identity, local_batches, run_batches
from .session import import_ray, ray_cluster, worker_resources
from .shard_writer import ShardWriter

KIND = "predictions"  # the shard files: predictions-00000.parquet, ...
PARQUET_INDEX = "_index.json"  # "_": Parquet readers skip it
KEY = b"dghc_run_key"  # Parquet metadata: what the shard's rows depend on
ROWS = b"dghc_rows"  # Parquet metadata: "start:stop", the input posts of the shard


def record_schema() -> Any:
    """The Parquet columns of an output record (the fields of predict's JSONL lines)."""
    import pyarrow as pa

    entity = pa.struct([("text", pa.string()), ("type", pa.string()), ("start_token", pa.int64()),
                        ("end_token", pa.int64()), ("start_char", pa.int64()), ("end_char", pa.int64())])
    region = pa.struct([("box", pa.list_(pa.float64())), ("class_name", pa.string()), ("score", pa.float64()),
                        ("source", pa.string())])
    return pa.schema([("id", pa.string()), ("tokens", pa.list_(pa.string())), ("entities", pa.list_(entity)),
                      ("relevance", pa.float64()), ("gates", pa.list_(pa.list_(pa.float64()))),
                      ("image_status", pa.string()), ("image_reason", pa.string()), ("regions", pa.list_(region)),
                      ("words_cut", pa.int64())])


@dataclass
class PostBatch:
    """One batch of the local engine: its rows and their posts (image paths absolute)."""

    rows: np.ndarray
    posts: list[InputPost]


class PredictActor(BatchActor):
    """A Ray actor holding a ``PostTagger``: a batch of posts in, their records (JSON text) and notes out."""

    def __init__(self, config: PredictConfig, device: str, threads: int, with_images: bool, source: str,
                 expected: dict[str, Any] | None = None) -> None:
        import torch

        from ..inference.checkpoint import load_checkpoint
        from ..prediction.post_tagger import PostTagger

        torch.set_num_threads(max(1, threads))
        if expected is not None:  # before any post is tagged: shards carry the driver's run key
            check_same_model(expected, worker_identity(config.model_dir))
        resolved = worker_device(config.precision, device)  # before any work: the GPU here, not the driver's
        checkpoint = load_checkpoint(config.model_dir)
        # the driver said what a log line would say (warn_if_images_rare); the workers' output is not shown
        self.tagger = PostTagger.from_config(config, checkpoint, resolved, with_images,
                                             log=lambda _: None)
        self.source = source

    def process(self, batch: PostBatch) -> dict[str, np.ndarray]:
        tagged = self.tagger.tag(batch.posts, self.source)
        return {"row": batch.rows,
                "record": np.array([json.dumps(item.record, ensure_ascii=False) for item in tagged], dtype=object),
                "note": np.array([item.note for item in tagged], dtype=object)}


def worker_device(precision: str, device: str) -> Any:
    """The torch device of a worker, refused (one line, naming the host) when it cannot compute in ``precision``:
    checked where the work runs, as the driver may have no GPU (a CPU head node) or another one."""
    import socket

    from ..core.devices import resolve_device
    from ..core.precision import check_precision

    try:
        resolved = resolve_device(device)
        check_precision(precision, resolved)
    except DghcError as err:
        raise DghcError(f"predict: worker on {socket.gethostname()}: {err}") from None
    return resolved


def check_precision_on_driver(precision: str, device: str) -> None:
    """What the driver can check of the workers' precision without touching CUDA (a CPU head node has none): the
    name, and fp16 on CPU workers. The GPU's own capability (bf16) each worker checks (``worker_device``)."""
    import torch

    from ..core.precision import PRECISIONS, check_precision

    if precision not in PRECISIONS or device == "cpu":
        check_precision(precision, torch.device("cpu"))


def model_files_sha256(model_dir: Path) -> dict[str, str]:
    """sha256 of every file of a model folder, by its path in the folder (from the hash cache when unchanged)."""
    model = Path(model_dir)
    model_files = [path for path in sorted(model.rglob("*")) if path.is_file()]
    model_hashes = sha256_files(model_files, unreadable=())  # a model file that cannot be read is an error
    return {str(path.relative_to(model)): model_hashes[path] for path in model_files}


def worker_identity(model_dir: Path) -> dict[str, Any]:
    """What a worker must share with the driver: the model folder's files (the CLIP model and detector are checked
    against the checkpoint's record when the tagger loads them) and the dghc version (the code that tags)."""
    from ... import __version__

    return {"model_files": model_files_sha256(model_dir), "dghc": __version__}


def check_same_model(expected: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Refuse a worker whose model folder or dghc is not the driver's (``check_worker_identity``)."""

    def describe(loaded: dict[str, Any], expected: dict[str, Any]) -> str:
        ours, theirs = loaded["model_files"], expected["model_files"]
        names = sorted(name for name in {*ours, *theirs} if ours.get(name) != theirs.get(name))
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"has another model folder than the driver's (files that differ: {shown})"

    check_worker_identity("predict", expected, loaded, describe, "model folder")


def run_key(config: PredictConfig, posts: Sequence[InputPost]) -> str:
    """What the output rows depend on: the posts (with their image files' bytes), the model's files, settings.
    Unchanged files' hashes come from the hash cache (``artifacts.file_hashes``): a rerun reads none of them."""
    files = model_files_sha256(config.model_dir)
    images = sha256_files([p.image for p in posts if p.image is not None], unreadable=(OSError,))

    def image_sha(path: Path | None) -> str | None:
        return images[path] if path is not None else None

    return sha256_json({"posts": [[p.post_id, p.text, p.words, str(p.image), image_sha(p.image)] for p in posts],
                        "model": files, "precision": config.precision, "batch_size": config.batch_size,
                        "clip_model": config.clip_model, "detector_weights": config.detector_weights,
                        "grounding_weights": config.grounding_weights})


def predict_on_ray(config: PredictConfig, *, stdin: BinaryIO | None = None,
                   log: Callable[[str], None] = say) -> PredictSummary:
    """Read and check every input line on the driver, then tag the posts on Ray into the folder ``config.out`` (one
    run per folder; SIGINT/SIGTERM stop it at once, the finished shards kept)."""
    import_ray()  # first: no work before saying that Ray is missing
    if config.out is None:
        raise DghcError("--engine ray writes a folder of Parquet shards: name it with --out (e.g. --out predictions)")
    kept = f"the finished shards are kept in {config.out}: rerun the same command to resume"
    with stop_signals("predict", at_once=True, kept=kept), output_lock(config.out, note=log):
        read = read_input(config, stdin, log)
        if read.tagger.config.use_image and any(post.image is not None for post in read.posts):
            warn_if_images_rare(read.tagger.info.get("train_image_share"), str(config.model_dir))
        return _tag_on_ray(config, read.posts, read.source, skipped_lines=read.skipped_lines, log=log)


def _tag_on_ray(config: PredictConfig, posts: list[InputPost], source: str, *, skipped_lines: int,
                log: Callable[[str], None]) -> PredictSummary:
    import pyarrow.parquet as pq
    from tqdm import tqdm

    out = Path(config.out)
    check_store_folder(out, KIND, index=PARQUET_INDEX)
    if not posts:
        raise DghcError(f"predict: {source} holds no posts to tag")
    key = run_key(config, posts)
    summary = PredictSummary(skipped_lines=skipped_lines, out=out, image_status=empty_image_counts())
    out.mkdir(parents=True, exist_ok=True)
    shards = plan_shards(len(posts), config.shard_size, config.batch_size, KIND, suffix=".parquet")

    def is_finished(path: Path, shard: Shard) -> bool:
        metadata = pq.read_schema(path).metadata or {}
        return metadata.get(KEY) == key.encode() and metadata.get(ROWS) == f"{shard.start}:{shard.stop}".encode()

    todo, resumed = unfinished_shards(out, shards, is_finished, force=False, stage="predict", unit="posts", note=log,
                                      index=PARQUET_INDEX)

    def write(path: Path, shard: Shard, rows: dict[str, np.ndarray]) -> None:
        import pyarrow as pa

        records = [json.loads(text) for text in rows["record"]]
        schema = record_schema().with_metadata({KEY: key.encode(), ROWS: f"{shard.start}:{shard.stop}".encode()})
        pq.write_table(pa.Table.from_pylist(records, schema=schema), path)

    if todo:
        with ray_cluster("predict", config.address, config.workers) as cluster, \
                tqdm(total=len(posts), initial=resumed, unit="post",
                     desc="predict", file=sys.stderr, disable=not config.progress) as bar:
            writer = ShardWriter(out, todo, write, "predict")
            for batch in _run(config, posts, todo, source, cluster):
                for note in batch["note"]:
                    if note:
                        bar.write(note, file=sys.stderr) if config.progress else log(note)
                writer.add(batch)
                bar.update(len(batch["row"]))
            writer.finish()
    entries = []
    for shard in shards:
        table = pq.read_table(out / shard.file, columns=["entities", "image_status"])
        statuses = table.column("image_status").to_pylist()
        counts = {status: statuses.count(status) for status in empty_image_counts()}
        entities = sum(len(value) for value in table.column("entities").to_pylist())
        entries.append({"file": shard.file, "rows": shard.stop - shard.start, "image_status": counts,
                        "entities": entities})
        summary.posts += shard.stop - shard.start
        summary.entities += entities
        for status, count in counts.items():
            summary.image_status[status] += count
    write_text_atomically(out / PARQUET_INDEX, json.dumps({"run_key": key, "posts": len(posts), "shards": entries},
                                                  indent=1) + "\n")
    return summary


def _run(config: PredictConfig, posts: list[InputPost], todo: list[Shard], source: str,
         cluster: dict[str, float]) -> Any:
    """The local engine's batches of the unfinished shards through Ray; yields rows in input order."""
    resources = worker_resources(config.device, cluster)
    check_precision_on_driver(config.precision, resources.device)  # the GPU's capability: in the workers
    # Paths as the driver sees them: a worker on another node does not share its working directory.
    payloads = [PostBatch(np.arange(batch.start, batch.stop),
                          [replace(posts[row], image=posts[row].image.resolve() if posts[row].image else None)
                           for row in batch])
                for batch in local_batches(todo, config.batch_size)]
    actor = {"config": replace(config, model_dir=Path(config.model_dir).resolve()), "device": resources.device,
             "threads": int(resources.num_cpus), "with_images": any(post.image is not None for post in posts),
             "source": source, "expected": worker_identity(config.model_dir)}
    return run_batches(payloads, PredictActor, actor, resources, config.workers,
                       blocks=max(4 * config.workers, len(todo)))

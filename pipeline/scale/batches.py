"""The local engine's batches through a Ray actor pool: one Ray row carries one whole batch.

A batch of the local engine is rows ``k * batch_size`` to ``(k + 1) * batch_size`` of the stage's rows. Ray Data
would cut its own batches at block boundaries, and CPU kernels round differently per batch composition, so each
batch travels pickled as one Ray row (``map_batches(batch_size=1)``): an actor computes exactly the batches the
local engine computes, and returns their rows, which the driver writes in order (``ShardWriter``).
"""
from __future__ import annotations

import pickle
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..artifacts.shards import Shard
from ..core.errors import DghcError
from .session import WorkerResources


def local_batches(shards: Sequence[Shard], batch_size: int) -> list[range]:
    """The local engine's batches inside ``shards`` (shards hold whole batches: ``plan_shards``)."""
    return [range(start, min(start + batch_size, shard.stop))
            for shard in shards for start in range(shard.start, shard.stop, batch_size)]


def check_worker_identity(stage: str, expected: dict[str, Any], loaded: dict[str, Any],
                          describe: Callable[[dict[str, Any], dict[str, Any]], str], needs: str) -> None:
    """Refuse, in one line naming the host, a worker whose identity (``{"dghc": version, ...}``, built by the stage's
    ``worker_identity`` on both sides) is not the driver's ``expected`` one: its rows would be written under the
    driver's fingerprint. ``describe(loaded, expected)`` says what else differs, ``needs`` what every node needs."""
    import socket

    if loaded == expected:
        return
    if loaded["dghc"] != expected["dghc"]:
        what = f"runs dghc {loaded['dghc']} but the driver runs {expected['dghc']}"
    else:
        what = describe(loaded, expected)
    raise DghcError(f"{stage}: worker on {socket.gethostname()} {what}: every node needs the same {needs} and dghc "
                    "version")


class BatchActor:
    """Base of the model actors: ``process`` takes one batch (the payload the driver pickled) and returns its
    rows as numpy columns, a ``row`` column included."""

    def process(self, payload: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = [self.process(pickle.loads(blob)) for blob in rows["batch"]]
        return {key: np.concatenate([output[key] for output in outputs]) for key in outputs[0]}


def _prepared(rows: dict[str, np.ndarray], prepare: Callable[[Any], Any]) -> dict[str, np.ndarray]:
    return {"batch": np.array([pickle.dumps(prepare(pickle.loads(blob))) for blob in rows["batch"]], dtype=object)}


def run_batches(payloads: Sequence[Any], actor: type[BatchActor], actor_arguments: dict[str, Any],
                resources: WorkerResources, workers: int, blocks: int,
                prepare: Callable[[Any], Any] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Each payload (one batch) through ``prepare`` in CPU tasks when given (decoding for GPU actors), then
    through a pool of ``workers`` actors; yields the rows in payload order, as numpy columns.

    ``blocks``: how many Ray blocks to cut the payloads into (a block goes to one task or actor at a time).
    """
    import ray.data

    dataset = ray.data.from_items([{"batch": pickle.dumps(payload)} for payload in payloads],
                                  override_num_blocks=max(1, min(len(payloads), blocks)))
    if prepare is not None:
        dataset = dataset.map_batches(_prepared, fn_kwargs={"prepare": prepare}, batch_size=1, batch_format="numpy",
                                      num_cpus=1)
    dataset = dataset.map_batches(actor, batch_size=1, batch_format="numpy",
                                  compute=ray.data.ActorPoolStrategy(size=workers),
                                  fn_constructor_kwargs=actor_arguments, num_cpus=resources.num_cpus,
                                  num_gpus=resources.num_gpus)
    return dataset.iter_batches(batch_size=None, batch_format="numpy")

"""Joining or starting the Ray cluster a stage runs on (``--engine ray``), and what its workers ask for."""
from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..core.console import say
from ..core.errors import DghcError, first_line

INSTALL_HINT = "pip install 'dghc[ray]'"


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a DghcError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra installs both; a bare ray lacks pyarrow)
    except ImportError as err:
        raise DghcError(f"--engine ray needs Ray Data, which is not installed here ({err}): {INSTALL_HINT}, or run "
                        "with --engine local") from None
    return ray


@dataclass(frozen=True)
class WorkerResources:
    """What each model actor asks Ray for, and the torch device it then uses."""

    device: str  # "cuda" or "cpu"
    num_gpus: float
    num_cpus: float
    # extract: decode and crop in CPU tasks that feed the actors (GPU actors), or inside each actor (CPU actors:
    # separate decode tasks would compete with the forwards for the same cores)
    decode_in_tasks: bool


def worker_resources(asked: str, cluster: dict[str, float],
                     note: Callable[[str], None] = say) -> WorkerResources:
    """``asked`` (the stage's --device) against the cluster: auto takes a GPU per worker where the cluster has GPUs.
    A GPU index (cuda:N) cannot be honoured, as Ray picks each worker's GPU: ``note`` says so, once."""
    gpus = float(cluster.get("GPU", 0))
    if asked == "auto":
        asked = "cuda" if gpus > 0 else "cpu"
    if asked.startswith("cuda"):
        if gpus == 0:
            raise DghcError(f"device {asked!r} asked for, but the Ray cluster has no GPU (use --device cpu or auto)")
        # Ray picks the GPU and sets CUDA_VISIBLE_DEVICES: inside the actor it is always cuda (cuda:0).
        if asked != "cuda" and not re.fullmatch(r"cuda:\d+", asked):
            raise DghcError(f"unknown device {asked!r} for --engine ray (use auto, cpu or cuda)")
        if asked != "cuda":
            note(f"--device {asked}: on Ray each worker gets the GPU Ray assigns it (CUDA_VISIBLE_DEVICES per "
                 "actor); the index is not used")
        return WorkerResources("cuda", num_gpus=1.0, num_cpus=1.0, decode_in_tasks=True)
    if asked != "cpu":
        raise DghcError(f"unknown device {asked!r} for --engine ray (use auto, cpu or cuda)")
    return WorkerResources("cpu", num_gpus=0.0, num_cpus=1.0, decode_in_tasks=False)


@contextlib.contextmanager
def ray_cluster(stage: str, address: str | None, workers: int) -> Iterator[dict[str, float]]:
    """Join the cluster at ``address`` or start a local one for the block; yields the cluster's resources.

    A local cluster gets this machine's cores (at least ``workers``). Ray's own progress output is kept quiet:
    the stage shows its own bar.
    """
    ray = import_ray()
    # Ray Data logs each dataset's plan and progress at INFO: the stage shows its own bar and summary. A failed
    # worker's traceback it logs before raising: the stage reports the failure in one line (worker_error).
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # ...and the notice that a cluster started here uses token authentication, printed on every start
    for name in ("ray.data.exceptions", "ray.data._internal.execution.streaming_executor_state",
                 "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        if address is None:
            options["num_cpus"] = max(os.cpu_count() or 1, workers)
        else:
            check_reachable(stage, address)
            options["address"] = address
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = address if address is not None else "a local Ray instance"
            raise DghcError(f"{stage}: cannot start or join {where}: {str(err).splitlines()[0][:200]}") from None
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.execution_options.preserve_order = True  # shards are written in row order, as they complete
        resources = {key: float(value) for key, value in ray.cluster_resources().items()}
        say(f"{stage}: Ray cluster with {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs"
            + (" (started here)" if started_here and address is None else f" at {address}" if address else ""))
        yield resources
    except ray.exceptions.RayError as err:  # raised by the workers' code, rethrown by Ray on the driver
        raise worker_error(stage, err) from None
    finally:
        if started_here:
            ray.shutdown()


def check_reachable(stage: str, address: str) -> None:
    """A HOST:PORT address that nothing answers on is refused in seconds (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not host or not port.isdigit():
        return  # auto: Ray reads the cluster of this node; other forms Ray checks itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise DghcError(f"{stage}: no Ray cluster answers at {address} ({err.strerror or err}): give the head node's "
                        "HOST:PORT (port 6379 by default), auto on a cluster node, or no --address for a local "
                        "Ray") from None


def worker_error(stage: str, err: BaseException) -> DghcError:
    """An exception raised in a Ray worker, as one line: a DghcError keeps its message; anything else is named
    with its type and first line, and the finished shards are kept for a rerun.

    Ray Data rethrows a worker's exception as a ``RayTaskError(UserCodeException)`` whose text, not its chain of
    causes, holds the original: the first ``module.Type: message`` line of that text outside ``ray.``.
    """
    original = next((match for match in re.finditer(r"^([A-Za-z_][\w.]*): (.*)$", str(err), re.M)
                     if not match.group(1).startswith("ray.")), None)
    if original is None:
        kind, message = type(err).__name__, first_line(err)
    else:
        kind, message = original.group(1).rsplit(".", 1)[-1], original.group(2).strip()
    if kind == DghcError.__name__ or (original is None and isinstance(err, DghcError)):
        return DghcError(message)
    return DghcError(f"{stage}: a Ray worker failed ({kind}: {message}); the finished shards are kept: fix the cause "
                     "and rerun the same command")

"""Training over several processes with Hugging Face Accelerate: the Accelerator of this process (its device, the
precision, the processes it runs with: gloo on the CPU, one GPU each with CUDA), the stop signal every process
agrees on, and dev scoring split across the processes and gathered: every post exactly once."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..core.devices import announce_device, check_process_devices, resolve_device
from ..core.errors import DghcError
from ..core.precision import autocast, check_precision
from ..core.signals import StopRequest
from ..data.conll import Post
from ..inference.metrics import all_modes
from ..inference.tagging import predict
from ..model.batching import VisualFeatures
from ..model.tagger import DGHCTagger
from .config import TrainConfig


def make_accelerator(config: TrainConfig) -> Any:
    """The Accelerator of this process: its device, the precision, and the processes it runs with."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    device = resolve_device(config.device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched (torchrun): each rank takes its local rank's GPU
        check_process_devices(config.device, int(os.environ["WORLD_SIZE"]),
                              int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    check_precision(config.precision, device)
    if "WORLD_SIZE" not in os.environ:
        # Accelerate keeps one state per process and refuses another precision later in the same process (tests,
        # notebooks train several models): start from a fresh one; a launched multi-process run keeps its own.
        AcceleratorState._reset_state(reset_partial_state=True)
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # one process runs on the current GPU: make it the one asked for
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=config.precision)
    if accelerator.is_main_process:
        announce_device("train", accelerator.device, config.device)
    if accelerator.num_processes != config.processes:
        raise DghcError(f"train: processes is {config.processes} but this run has {accelerator.num_processes}: start "
                        f"several with `dghc train --processes {config.processes}` (or torchrun/accelerate launch)")
    return accelerator


def stop_agreed(stop: StopRequest, accelerator: Any) -> int | None:
    """The signal that stops training now, agreed by every process (they must stop at the same step)."""
    if accelerator.num_processes == 1:
        return stop.signum
    signums = accelerator.gather(torch.tensor([stop.signum or 0], device=accelerator.device))
    return int(signums.max()) or None


def score_dev(accelerator: Any, tagger: DGHCTagger, tokenizer: Any, dev_posts: Sequence[Post],
              features: VisualFeatures | None, config: TrainConfig) -> dict:
    """Dev P/R/F1 in both modes: each process tags its share of the posts, the predictions are gathered (every
    post exactly once, no padding), and every process computes the same scores."""
    from accelerate.utils import gather_object

    rank, processes = accelerator.process_index, accelerator.num_processes
    mine = list(range(rank, len(dev_posts), processes))
    with autocast(config.precision, accelerator.device):
        predicted = predict(tagger, tokenizer, [dev_posts[i] for i in mine], features,
                            batch_size=config.batch_size * 2, device=accelerator.device)
    gathered = gather_object([(i, p.labels) for i, p in zip(mine, predicted)]) if processes > 1 else \
        [(i, p.labels) for i, p in zip(mine, predicted)]
    labels = dict(gathered)
    if sorted(labels) != list(range(len(dev_posts))):
        raise RuntimeError("dev scoring lost or doubled posts across processes")
    tagger.train()
    return all_modes([p.labels for p in dev_posts], [labels[i] for i in range(len(dev_posts))])

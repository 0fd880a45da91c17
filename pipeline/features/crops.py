"""Turning an image and its detected boxes into CLIP pixel tensors, batch by batch, off the main thread.

``CropDataset`` decodes each image once and makes the preprocessor's crops of the whole image and its valid
region crops (boxes padded, clamped, trimmed to ``max_aspect``): uint8 on the fast path, turned into the model's
float32 pixels by ``ClipEncoder.encode`` on its device (``preprocess.RegionPreprocessor``); ``make_loader``
batches it with DataLoader worker processes, or on the CPU with a pool of threads in this process (see
``default_num_workers`` for why).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data.images import ImageStatus, load_image
from .preprocess import as_preprocessor, aspect_box


def crop_box(box: Sequence[float], width: int, height: int, padding: float = 0.0,
             min_size: int = 2) -> tuple[int, int, int, int] | None:
    """Integer pixel box to crop for a detected ``(x1, y1, x2, y2)``: padded, clamped to the image, or None.

    None when the box is not finite, empty, or narrower/lower than ``min_size`` once clamped.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = max(0, math.floor(x1 - pad_x + 0.5))
    top = max(0, math.floor(y1 - pad_y + 0.5))
    right = min(width, math.floor(x2 + pad_x + 0.5))
    bottom = min(height, math.floor(y2 + pad_y + 0.5))
    if right - left < max(min_size, 1) or bottom - top < max(min_size, 1):
        return None
    return left, top, right, bottom


class CropDataset(torch.utils.data.Dataset):
    """Item i: the crops (``RegionPreprocessor.crops``) of the whole image of row ``rows[i]`` and of its valid
    boxes, with a slot mask.

    ``processor`` is the model's image processor (or a preprocessor made from it): the fast path of
    ``preprocess.make_preprocessor`` when it reproduces the processor. The image is decoded once; the crops are
    boxes into it, each trimmed to ``max_aspect``.
    """

    def __init__(self, rows: Sequence[int], paths: Sequence[Path | None], boxes: np.ndarray, valid: np.ndarray,
                 processor: Any, image_size: int, padding: float, min_size: int, max_aspect: float) -> None:
        self.rows = list(rows)
        self.paths = list(paths)
        self.boxes = boxes
        self.valid = valid
        self.preprocess = as_preprocessor(processor)
        self.image_size = image_size
        self.padding = padding
        self.min_size = min_size
        self.max_aspect = max_aspect

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        m = self.boxes.shape[1]
        slots = torch.zeros(1 + m, dtype=torch.bool)
        loaded = load_image(self.paths[i])
        empty_boxes = 0
        regions = []
        if loaded.status == ImageStatus.PRESENT:
            image = loaded.image
            regions.append(aspect_box((0, 0, image.width, image.height), self.max_aspect))
            slots[0] = True
            for slot in range(m):
                if not self.valid[i, slot]:
                    continue
                box = crop_box(self.boxes[i, slot], image.width, image.height, self.padding, self.min_size)
                if box is None:
                    empty_boxes += 1
                    continue
                regions.append(aspect_box(box, self.max_aspect))
                slots[1 + slot] = True
            pixels = self.preprocess.crops(image, regions)
        else:  # of the crops' dtype: torch.cat would promote a batch's uint8 crops to float
            pixels = torch.zeros(0, 3, self.image_size, self.image_size, dtype=self.preprocess.crop_dtype)
        width, height = loaded.size
        return {"row": row, "status": int(loaded.status), "size": (width, height), "pixels": pixels,
                "slots": slots, "empty_boxes": empty_boxes}


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch: pixels of all valid slots in row-major slot order, which ``slots[mask]`` follows too."""
    return {"rows": [item["row"] for item in items],
            "status": torch.tensor([item["status"] for item in items], dtype=torch.uint8),
            "sizes": torch.tensor([item["size"] for item in items], dtype=torch.int64),
            "pixels": _concatenate(item["pixels"] for item in items),
            "slots": torch.stack([item["slots"] for item in items]),
            "empty_boxes": sum(item["empty_boxes"] for item in items)}


def _concatenate(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """``torch.cat``; in a DataLoader worker straight into shared memory, as torch's default collate does: the
    batch (0.6 MB of uint8 crops per image and 3 regions) is then not copied once more on its way to the main
    process."""
    parts = list(parts)
    if torch.utils.data.get_worker_info() is None:
        return torch.cat(parts)
    first = parts[0]
    storage = first._typed_storage()._new_shared(sum(part.numel() for part in parts), device=first.device)
    out = first.new(storage).resize_(sum(part.shape[0] for part in parts), *first.shape[1:])
    return torch.cat(parts, out=out)


def default_num_workers(device: torch.device) -> int:
    """DataLoader processes for ``num_workers=None``: 0 on the CPU, up to 4 with a GPU.

    On the CPU the forward and the preprocessing need the same cores. Worker processes beside a forward that
    runs on torch's intra-op threads oversubscribe them: each parallel op of the forward waits for its slowest
    thread, the one sharing its core with a worker, so the forward slows down about as much as the workers
    gain. Alternating instead -- preprocess a batch on a pool of as many threads as torch uses (PIL decoding and
    torch ops release the GIL; each pool thread runs torch on 1 thread), then run its forward on all of them --
    keeps every core busy in both phases, with no process start and no copy of the pixels between processes.
    On 2 cores (benchmarks/bench_extract.py) it gave the most images/s: 44 against 43 with 2 workers and 39
    with 1 on a quiet machine, and under other jobs' load the loader alone took 8.5-14 ms an image against
    14-17 ms with 2 workers. With a GPU the forward leaves the CPU free, so worker processes overlap with it.
    """
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class ThreadedBatches:
    """The batches of ``make_loader(..., num_workers=0)``: made in the calling process, each batch's items on a
    pool of ``threads`` threads (in order: the same items as a DataLoader gives)."""

    def __init__(self, dataset: CropDataset, batch_size: int, threads: int, pin_memory: bool = False) -> None:
        self.dataset, self.batch_size, self.threads, self.pin_memory = dataset, batch_size, max(1, threads), pin_memory

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        # Each preprocessing thread runs torch ops on 1 intra-op thread, as a DataLoader worker does: the pool
        # already spreads the work over the cores, and nested intra-op threads oversubscribe them (on a loaded
        # machine a parallel op then waits a whole scheduler slice for a descheduled thread: 8x slower measured).
        # torch.set_num_threads is per thread for OpenMP but also sets process-wide values (the default of new
        # threads, MKL's), so the caller's count is set again after the pool's threads started.
        threads = torch.get_num_threads()
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="extract-preprocess",
                                initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for start in range(0, len(self.dataset), self.batch_size):
                indices = range(start, min(start + self.batch_size, len(self.dataset)))
                items = list(pool.map(self.dataset.__getitem__, indices))
                torch.set_num_threads(threads)
                batch = collate_items(items)
                if self.pin_memory:
                    batch["pixels"] = batch["pixels"].pin_memory()
                yield batch


def make_loader(dataset: CropDataset, batch_size: int, num_workers: int, pin_memory: bool = False,
                threads: int | None = None) -> Iterable[dict[str, Any]]:
    """Batches of ``dataset`` in order: from ``num_workers`` DataLoader processes, or, with 0, made in this
    process on ``threads`` threads (default: torch's intra-op thread count; see ``default_num_workers``)."""
    if num_workers == 0:
        return ThreadedBatches(dataset, batch_size, threads if threads is not None else torch.get_num_threads(),
                               pin_memory)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=collate_items, pin_memory=pin_memory,
                                       persistent_workers=False)

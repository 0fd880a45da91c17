"""The precision switch (``no``, ``fp16``, ``bf16``) shared by training, evaluation and prediction."""
from __future__ import annotations

import contextlib
from typing import ContextManager, Literal

import torch

from .errors import DghcError

Precision = Literal["no", "fp16", "bf16"]
PRECISIONS: tuple[str, ...] = ("no", "fp16", "bf16")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot compute in, before any work starts."""
    if precision not in PRECISIONS:
        raise DghcError(f"unknown precision {precision!r} (use one of: {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise DghcError(f"precision fp16 needs a CUDA GPU, and the device is {device}: use bf16 or no")
    if precision == "bf16" and device.type == "cuda" and not torch.version.hip:  # ROCm GPUs compute in bf16
        # The GPU actually used (cuda:N, or the current one for plain cuda), not device 0. Native bf16 needs compute
        # capability 8.0 (Ampere) or later; older GPUs (T4, V100) emulate it several times slower, and
        # torch.cuda.is_bf16_supported() counts emulation as support by default: refuse rather than slow down
        # silently.
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        if major < 8:
            raise DghcError(f"precision bf16 is not native on cuda:{index} ({torch.cuda.get_device_name(index)}, "
                            f"compute capability {major}.{minor}; bf16 needs 8.0 or later, else it is emulated "
                            f"and slow): use fp16 or no")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed-precision autocast for inference on ``device`` (nothing for ``no``)."""
    if precision == "no":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])

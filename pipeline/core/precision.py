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
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DghcError(f"precision bf16 is not supported by {torch.cuda.get_device_name(device)}: use fp16 or no")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed-precision autocast for inference on ``device`` (nothing for ``no``)."""
    if precision == "no":
        return contextlib.nullcontext()
    check_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])

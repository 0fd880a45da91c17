"""Choosing the torch device a stage runs on."""
from __future__ import annotations

import torch

from pipeline.core.errors import DghcError


def resolve_device(device: str) -> torch.device:
    """``auto`` is the GPU when there is one, else the CPU; a device this machine lacks is refused."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as err:
        raise DghcError(f"unknown device {device!r}: {err} (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DghcError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DghcError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                        f"numbered from 0 (use cuda:0 to cuda:{torch.cuda.device_count() - 1}, or cuda)")
    return resolved

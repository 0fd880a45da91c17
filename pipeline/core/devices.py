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
    return resolved

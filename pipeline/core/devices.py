"""Choosing the torch device a stage runs on."""
from __future__ import annotations

import torch

from .console import say
from .errors import DghcError


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
    count = torch.cuda.device_count() if resolved.type == "cuda" else 0
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= count:
        raise DghcError(f"device {device!r} asked for, but this machine has {count} CUDA GPU(s), numbered from 0 "
                        f"(use cuda:0 to cuda:{count - 1}, or cuda)")
    return resolved


def check_process_devices(asked: str, processes: int, per_machine: int | None = None) -> None:
    """``--processes N`` on GPUs: each process takes one GPU, its local rank's (0..N-1 of those visible), so a GPU
    index is refused rather than ignored, and so are more processes on this machine (``per_machine``, default
    ``processes``) than it has GPUs (two ranks would share one). On the CPU (gloo) anything goes."""
    if processes <= 1:
        return
    device = resolve_device(asked)
    if device.type != "cuda":
        return
    if device.index is not None:
        raise DghcError(f"--device {asked} with --processes {processes}: each process takes one GPU "
                        f"(0..{processes - 1}); give --device cuda, or set CUDA_VISIBLE_DEVICES to choose the GPUs")
    here = processes if per_machine is None else per_machine
    count = torch.cuda.device_count()
    if here > count:
        raise DghcError(f"--processes {here} but this machine has {count} GPU{'s' if count != 1 else ''}: each "
                        f"process takes one; give --processes {count} or fewer, or --device cpu")


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``: which device, in words."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def announce_device(stage: str, device: torch.device | str, asked: str) -> None:
    """One line on stderr saying where ``stage`` runs: ``train: running on cpu (device auto; no CUDA GPU here)``."""
    try:
        chosen = describe_device(torch.device(device))
    except RuntimeError:  # a form torch does not read but ultralytics does ("0", "0,1")
        chosen = f"device {device}"
    notes = (["device auto"] if asked == "auto" else []) + \
        (["no CUDA GPU here"] if chosen == "cpu" and not torch.cuda.is_available() else [])
    say(f"{stage}: running on {chosen}" + (f" ({'; '.join(notes)})" if notes else ""))


def tagging_device(stage: str, asked: str, precision: str) -> torch.device:
    """The device a stage that tags with a trained model runs on (evaluate, predict, report): ``asked`` resolved
    once (``auto`` becomes the GPU or the CPU here), said in one line, and checked against ``precision``."""
    from .precision import check_precision

    device = resolve_device(asked)
    announce_device(stage, device, asked)
    check_precision(precision, device)
    return device

"""Choosing the device: auto, unknown names, and GPUs this machine lacks, refused in one line."""
from __future__ import annotations

import pytest
import torch

from pipeline.core.devices import resolve_device
from pipeline.core.errors import DghcError


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device("cpu") == torch.device("cpu")


def test_unknown_device_names_the_choices():
    with pytest.raises(DghcError, match="unknown device 'gpu0'.*auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DghcError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_a_gpu_number_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DghcError, match=r"'cuda:2' asked for, but this machine has 2 CUDA GPU\(s\).*cuda:0 to cuda:1"):
        resolve_device("cuda:2")

"""Choosing the device: auto, unknown names, and GPUs this machine lacks, refused in one line."""
from __future__ import annotations

import pytest
import torch

from dghc.pipeline.core.devices import resolve_device
from dghc.pipeline.core.errors import DghcError


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


def test_every_stage_defaults_to_auto():
    """A GPU user gets the GPU without a flag; on a CPU-only machine auto is the CPU."""
    from dataclasses import fields

    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.inference.config import EvaluateConfig
    from dghc.pipeline.prediction.config import PredictConfig
    from dghc.pipeline.report.config import ReportConfig
    from dghc.pipeline.training.config import TrainConfig

    for config in (DetectConfig, ExtractConfig, TrainConfig, EvaluateConfig, PredictConfig, ReportConfig):
        device = next(f for f in fields(config) if f.name == "device")
        assert device.default == "auto", config.__name__


def test_the_device_line_says_where_and_why(monkeypatch, capsys):
    from dghc.pipeline.core.devices import announce_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    announce_device("train", torch.device("cpu"), "auto")
    announce_device("detect", "cpu", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"Test GPU {index}")
    announce_device("extract", torch.device("cuda:1"), "auto")
    announce_device("predict", torch.device("cuda:0"), "cuda:0")
    assert capsys.readouterr().err.splitlines() == [
        "train: running on cpu (device auto; no CUDA GPU here)", "detect: running on cpu (no CUDA GPU here)",
        "extract: running on cuda:1 (Test GPU 1) (device auto)", "predict: running on cuda:0 (Test GPU 0)"]

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


# --- several GPUs: detect, train --processes, Ray (a fake multi-GPU torch.cuda; nothing runs on a GPU) ---

def fake_gpus(monkeypatch, count: int) -> None:
    """A machine with ``count`` CUDA GPUs as torch sees them. Like the CUDA runtime, the list is fixed once read:
    changing CUDA_VISIBLE_DEVICES afterwards changes nothing (the count is not recomputed)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: f"Test GPU {index}")


def select_device_8_3(device="", newline=False, verbose=True):
    """ultralytics 8.3.x's select_device as far as devices go (the floor pyproject.toml allows): a torch.device
    passes through untouched; a string is written into CUDA_VISIBLE_DEVICES and the result is always cuda:0."""
    import os

    if isinstance(device, torch.device):
        return device
    device = str(device).lower()
    for remove in "cuda:", "none", "(", ")", "[", "]", "'", " ":
        device = device.replace(remove, "")
    if device in ("cpu", "mps"):
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return torch.device(device)
    if device:
        device = "0" if device == "cuda" else device
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        if not (torch.cuda.is_available() and torch.cuda.device_count() >= len(device.split(","))):
            raise ValueError(f"Invalid CUDA 'device={device}' requested.")
    return torch.device("cuda:0")


def test_detect_on_the_second_gpu_leaves_cuda_visible_devices_alone(monkeypatch):
    """--device cuda:1 is resolved here and ultralytics gets a torch.device, which no version remaps."""
    import os

    from ultralytics.utils import torch_utils

    from dghc.pipeline.detection.detectors import PredictSettings
    from dghc.pipeline.detection.run import detector_device

    fake_gpus(monkeypatch, 2)
    monkeypatch.setattr(torch_utils, "select_device", select_device_8_3)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    device = detector_device("cuda:1")
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert device == torch.device("cuda:1")
    handed = PredictSettings(device=device).kwargs()["device"]
    assert select_device_8_3(handed) == torch.device("cuda:1") and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert detector_device("cpu") == torch.device("cpu") and os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_a_ray_detect_actor_keeps_the_gpu_ray_assigned(monkeypatch):
    """A Ray actor builds its settings with device "cuda" under CUDA_VISIBLE_DEVICES=3 (Ray's pick): what reaches
    ultralytics must not turn that into physical GPU 0."""
    import os

    from dghc.pipeline.detection.detectors import PredictSettings

    fake_gpus(monkeypatch, 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    handed = PredictSettings(device="cuda").kwargs()["device"]
    assert select_device_8_3(handed).type == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"


def test_detect_on_a_gpu_this_machine_lacks_is_one_line(monkeypatch):
    from dghc.pipeline.detection.run import detector_device

    fake_gpus(monkeypatch, 2)
    with pytest.raises(DghcError) as refused:
        detector_device("cuda:5")
    assert "'cuda:5'" in str(refused.value) and "\n" not in str(refused.value)


def _launch(monkeypatch, tmp_path, device: str, processes: int) -> list:
    """``dghc train --processes N --device D`` up to the launch: the launcher is recorded, not run."""
    import subprocess

    from dghc.pipeline.training.config import TrainConfig
    from dghc.stages import train as train_stage

    launched: list = []

    class Done:
        returncode = 0

        def poll(self):
            return 0

    def popen(command, **kwargs):
        launched.append(command)
        return Done()

    monkeypatch.setattr(subprocess, "Popen", popen)
    config = TrainConfig(output_dir=tmp_path / "model", state_dir=tmp_path / "state", device=device,
                         processes=processes)
    train_stage._launch_processes(config)
    return launched


def test_train_processes_refuse_a_gpu_index(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, 2)
    with pytest.raises(DghcError, match=r"--device cuda:1 with --processes 2: each process takes one GPU \(0\.\.1\); "
                                        r"give --device cuda, or set CUDA_VISIBLE_DEVICES to choose the GPUs"):
        _launch(monkeypatch, tmp_path, "cuda:1", 2)


def test_train_processes_refuse_more_processes_than_gpus(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, 2)
    with pytest.raises(DghcError, match=r"--processes 3 but this machine has 2 GPUs"):
        _launch(monkeypatch, tmp_path, "cuda", 3)
    with pytest.raises(DghcError, match=r"--processes 3 but this machine has 2 GPUs"):
        _launch(monkeypatch, tmp_path, "auto", 3)


def test_train_processes_one_gpu_each_or_the_cpu_still_launch(monkeypatch, tmp_path):
    fake_gpus(monkeypatch, 2)
    assert len(_launch(monkeypatch, tmp_path, "cuda", 2)) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert len(_launch(monkeypatch, tmp_path, "cpu", 4)) == 1


def test_ray_says_it_assigns_the_gpus(capsys):
    from dghc.pipeline.scale.session import worker_resources

    cluster = {"CPU": 8.0, "GPU": 2.0}
    assert worker_resources("cuda", cluster).device == "cuda"
    assert capsys.readouterr().err == ""
    assert worker_resources("cuda:1", cluster).device == "cuda"
    assert capsys.readouterr().err.splitlines() == [
        "--device cuda:1: on Ray each worker gets the GPU Ray assigns it (CUDA_VISIBLE_DEVICES per actor); "
        "the index is not used"]

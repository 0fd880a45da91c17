"""benchmarks/gpu_check.py without a GPU: the whole script on the CPU as a real process (every check, its figures
and its section of BENCHMARKS.md), and a GPU below compute capability 8.0 (a fake torch.cuda), where dghc refuses
bf16: the check says so and goes on in fp16."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.environment import REPO
from tests.test_mixed_precision import fake_gpus

SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    benchmarks = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1",
           "YOLO_CONFIG_DIR": str(tmp_path / "yolo"), "MPLCONFIGDIR": str(tmp_path / "mpl")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--benchmarks", str(benchmarks)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    print(done.stdout[-3000:], done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    figures = json.loads("\n".join(lines[lines.index("{"): lines.index("}") + 1]))  # the figures, printed as JSON

    assert figures["device"]["name"] == "cpu" and figures["bf16_refused"] is None
    assert figures["detect"]["images"] > 0 and figures["predict"]["posts"] > 0
    assert figures["extract"]["ratio"] > 0 and figures["extract"]["images"] > 0
    assert sorted(figures["train"]) == ["bf16", "no"]
    assert all(f["steps_per_s"] > 0 and f["peak_gib"] is None for f in figures["train"].values())
    assert figures["memory"] == {p: {"8": None, "16": None, "32": None} for p in ("no", "bf16")}  # n/a on the CPU
    same = figures["same_outputs"]  # the CPU against itself: the same numbers
    assert same["clip_max_abs"] == same["emissions_max_abs"] == same["loss_relative"] == 0 and same["tags_same"] == 1
    assert figures["two_gpus"] is None
    assert set(figures["seconds"]) == {"detect", "extract", "train", "memory", "same_outputs", "two_gpus", "predict",
                                       "total"}
    verdicts = [line for line in lines if line.startswith(("PASS  ", "FAIL  "))]  # one per goal
    assert len(verdicts) == 7, verdicts  # no two-GPU goal here
    for goal in ("extract stage / raw CLIP forward: ", "bf16 / fp32 train step speed-up: ",
                 "CLIP vectors, device vs CPU (fp32), max abs difference: 0 ",
                 "tagger emissions, device vs CPU (fp32), max abs difference: 0 ",
                 "tagger loss, device vs CPU (fp32), relative difference: 0 ",
                 "Viterbi tags, device vs CPU: share of words with the same tag: 1 ", "all checks, seconds: "):
        assert any(goal in line for line in verdicts), goal
    assert all(line.startswith("PASS  ") for line in verdicts if "device vs CPU" in line), verdicts

    section = benchmarks.read_text()
    print(section)
    assert section.count("<!-- bench:GPU check") == 1 and "<!-- /bench:GPU check" in section
    assert "**CPU run** (`--device cpu`" in section
    assert f"ratio **{figures['extract']['ratio']:.2f}**" in section
    assert "| bf16 / fp32 train step speed-up | " in section
    assert "| no | n/a | n/a | n/a |" in section and "| bf16 | n/a | n/a | n/a |" in section
    assert "Same outputs as the CPU (fp32 on both)" in section and "100.0% of the words" in section
    assert "two-GPU data parallel: not measured: fewer than 2 GPUs" in section


def stub_checks(monkeypatch, gpu_check) -> dict:
    """Every heavy step of run_checks replaced by canned figures; what the training checks were asked to time."""
    asked: dict = {}

    def train(data, device, precisions, steps):
        asked["train"] = precisions
        return {p: {"steps_per_s": 10.0 if p == "no" else 20.0, "peak_gib": 1.5} for p in precisions}

    def memory(data, device, precisions):
        asked["memory"] = precisions
        return {p: {size: 1.0 + size / 32 for size in gpu_check.MEMORY_BATCHES} for p in precisions}

    stubs = {
        "make_demo": lambda root, posts: [root / "train.txt", root / "valid.txt"],
        "train_data": lambda root, splits, tiny: None,
        "save_tiny_bert": lambda folder: folder,
        "check_detect": lambda *args: {"images": 40, "imgsz": 640, "seconds": 2.0, "regions": 10},
        "check_extract": lambda *args: {"images": 45, "raw_seconds": 0.95, "stage_seconds": 1.0, "ratio": 0.95,
                                        "workers": 4},
        "check_train": train,
        "check_memory": memory,
        "check_same_outputs": lambda *args: {"clip_max_abs": 1e-6, "clip_max_abs_torch_default": 1e-4,
                                             "clip_scale": 2.0, "emissions_max_abs": 1e-6, "loss_cpu": 30.0,
                                             "loss_relative": 1e-7, "tags_same": 1.0},
        "check_two_gpus": lambda *args: {"exit": 0, "seconds": 30.0, "tail": ""},
        "check_predict": lambda *args: {"posts": 32, "seconds": 3.0, "statuses": {}},
    }
    for name, stub in stubs.items():
        assert hasattr(gpu_check, name), name
        monkeypatch.setattr(gpu_check, name, stub)
    return asked


@pytest.mark.parametrize("device, gpu, mixed", [("cuda:1", "Tesla T4", ["no", "fp16"]),
                                                ("cuda:0", "NVIDIA A100-SXM4-40GB", ["no", "bf16", "fp16"])])
def test_bf16_refused_on_a_pre_ampere_gpu_is_reported_and_the_check_goes_on(monkeypatch, tmp_path, capsys,
                                                                            device, gpu, mixed):
    from benchmarks import gpu_check

    fake_gpus(monkeypatch)  # cuda:0 an A100 (compute capability 8.0), cuda:1 a T4 (7.5)
    asked = stub_checks(monkeypatch, gpu_check)
    figures = gpu_check.run_checks(device, 2, tmp_path)
    printed = capsys.readouterr().out
    section = gpu_check.markdown(figures, 2)
    lines = gpu_check.goal_lines(figures)
    print(printed, section, *lines, sep="\n")

    assert asked == {"train": mixed, "memory": mixed[:2]}  # fp32 and one mixed precision for the memory rows
    assert f"{device} ({gpu})" in section
    speedup = [line for line in lines if "train step speed-up" in line]
    assert speedup == [f"PASS  {mixed[1]} / fp32 train step speed-up: 2 (goal >= 1.6)"]
    refusal = "bf16 refused on this GPU (compute capability 7.5)"
    if gpu == "Tesla T4":
        assert figures["bf16_refused"] == refusal
        assert f"{refusal}: timing fp16 against fp32 instead" in printed
        assert f"{refusal}: mixed precision measured in fp16." in section
        assert "| fp16 | 20.00 | 2.00 | 1.50 |" in section and "| fp16 | 1.25 | 1.50 | 2.00 |" in section
    else:
        assert figures["bf16_refused"] is None and "refused" not in printed + section
        assert "| bf16 | 20.00 | 2.00 | 1.50 |" in section
    assert len(lines) == 8 and all(line.startswith("PASS  ") for line in lines)  # two GPUs: the 2-process goal too

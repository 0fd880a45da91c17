"""Mixed precision as it runs on the GPUs users have, checked on the CPU: an fp16 step the grad scaler skips leaves
the learning-rate schedule where it was, and bf16 is refused on a GPU that would only emulate it."""
from __future__ import annotations

import pytest
import torch

from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.core.precision import check_precision
from dghc.pipeline.training.distributed import make_accelerator
from dghc.pipeline.training.trainer import set_up_run
from tests.test_training import POSTS, image_features, tiny_bert, tiny_config  # noqa: F401 (a fixture)


def test_a_step_the_grad_scaler_skips_does_not_advance_the_schedule(tmp_path, tiny_bert):  # noqa: F811
    torch.set_num_threads(1)
    # A real run whose Accelerator holds a real grad scaler, as Accelerate sets one up for fp16 on CUDA (here on
    # the CPU: torch's CPU GradScaler, fp32 compute); warmup makes every step of the schedule change the LR.
    config = tiny_config(tmp_path, tiny_bert, epochs=2, batch_size=2, warmup_ratio=0.5, max_grad_norm=0.0)
    accelerator = make_accelerator(config)
    accelerator.scaler = torch.amp.GradScaler("cpu")
    run = set_up_run(config, accelerator, POSTS, POSTS, image_features())
    assert run.optimizer.scaler is accelerator.scaler  # the prepared optimizer steps through the scaler
    run.step_module.train()
    weights = accelerator.unwrap_model(run.step_module).tagger.emissions.weight
    step = [[0, 1]]

    def observe() -> dict:
        return {"schedule step": run.scheduler.last_epoch, "lr": run.scheduler.get_last_lr()[0],
                "scale": accelerator.scaler.get_scale(), "adam step": float(run.optimizer.state[weights]["step"]),
                "weights": weights.detach().clone()}

    def report(what: str, before: dict, after: dict) -> None:
        print(f"{what}: " + ", ".join(f"{key} {before[key]:g} -> {after[key]:g}" for key in before
                                      if key != "weights")
              + f", weights changed: {not torch.equal(before['weights'], after['weights'])}")

    run.optimizer_step(step)  # a first update: the LR leaves 0 and AdamW has a state
    start = observe()
    # a gradient that overflows, as an fp16 backward pass can: the scaler skips the update and halves its scale
    overflow = weights.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    run.optimizer_step(step)
    overflow.remove()
    skipped = observe()
    report("overflowing step", start, skipped)
    assert skipped["scale"] == start["scale"] / 2 and skipped["adam step"] == start["adam step"]
    assert torch.equal(start["weights"], skipped["weights"])
    assert (skipped["schedule step"], skipped["lr"]) == (start["schedule step"], start["lr"]), \
        f"the schedule advanced on a skipped optimizer step: step {start['schedule step']} -> " \
        f"{skipped['schedule step']}, lr {start['lr']:.3e} -> {skipped['lr']:.3e}"

    # a finite gradient: the optimizer updates, and the schedule advances with it
    run.optimizer_step(step)
    stepped = observe()
    report("finite step", skipped, stepped)
    assert stepped["scale"] == skipped["scale"] and stepped["adam step"] == skipped["adam step"] + 1
    assert not torch.equal(skipped["weights"], stepped["weights"])
    assert stepped["schedule step"] == skipped["schedule step"] + 1 and stepped["lr"] > skipped["lr"]


def fake_gpus(monkeypatch) -> None:
    """A machine with two GPUs: cuda:0 an A100 (compute capability 8.0), cuda:1 a T4 (7.5), which torch's
    is_bf16_supported() reports as supporting bf16 (by emulation)."""
    gpus = {0: ("NVIDIA A100-SXM4-40GB", (8, 0)), 1: ("Tesla T4", (7, 5))}

    def index(device=None) -> int:
        return torch.device(device).index if isinstance(device, (torch.device, str)) else (device or 0)

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: gpus[index(device)][0])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: gpus[index(device)][1])
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


def test_bf16_is_refused_on_a_gpu_that_would_emulate_it(monkeypatch):
    fake_gpus(monkeypatch)
    check_precision("bf16", torch.device("cuda:0"))  # the A100 computes in bf16
    check_precision("bf16", torch.device("cuda"))  # the current GPU: the A100
    check_precision("fp16", torch.device("cuda:1"))  # the T4 computes in fp16
    with pytest.raises(DghcError) as refused:
        check_precision("bf16", torch.device("cuda:1"))
        pytest.fail("bf16 on cuda:1 (Tesla T4, compute capability 7.5) was allowed")
    message = str(refused.value)
    print(message)
    assert "\n" not in message and "Tesla T4" in message and "cuda:1" in message and "use fp16 or no" in message

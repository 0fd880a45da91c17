"""The optimizer and learning-rate schedule: AdamW with three rates, linear warmup then linear decay; optionally a
moving average of the weights."""
from __future__ import annotations

import torch

from ..model.tagger import DGHCTagger
from .config import TrainConfig


def parameter_groups(tagger: DGHCTagger, config: TrainConfig) -> list[dict]:
    """AdamW groups: encoder / new layers / CRF, each split into decayed and not decayed (biases, LayerNorm).

    Every trainable parameter lands in exactly one group (a check, since a forgotten head would silently
    stay at its initial values).
    """
    groups: dict[tuple[str, bool], list] = {}
    rates = {"encoder": config.lr_encoder, "head": config.lr_head, "crf": config.lr_crf}
    for name, parameter in tagger.named_parameters():
        if not parameter.requires_grad:
            continue
        part = "encoder" if name.startswith("encoder.") else "crf" if name.startswith("crf.") else "head"
        no_decay = parameter.ndim < 2 or part == "crf"  # biases and norm weights are the 1-d parameters
        groups.setdefault((part, no_decay), []).append(parameter)
    result = [{"params": params, "lr": rates[part], "weight_decay": 0.0 if no_decay else config.weight_decay,
               "name": f"{part}{'/no_decay' if no_decay else ''}"} for (part, no_decay), params in groups.items()]
    grouped = {id(p) for g in result for p in g["params"]}
    trainable = {id(p) for p in tagger.parameters() if p.requires_grad}
    if grouped != trainable:
        raise RuntimeError(f"{len(trainable - grouped)} trainable parameters are in no optimizer group")
    return result


def make_optimizer(tagger: DGHCTagger, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the parameter groups; the fused kernel when the device has one (on CPU it is several times
    faster than the per-tensor loop, which matters since the optimizer touches every encoder weight each step)."""
    groups = parameter_groups(tagger, config)
    try:
        return torch.optim.AdamW(groups, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' linear schedule: warmup over ``warmup_ratio`` of the steps, then a linear decay to 0."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)


def make_weight_average(tagger: DGHCTagger, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """torch's AveragedModel keeping an exponential moving average of the tagger's weights (None when decay is 0).

    Its first update copies the weights; each later one moves the average by (1 - decay) towards them.
    """
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(tagger, multi_avg_fn=get_ema_multi_avg_fn(decay))

"""Text-image relevance score ("RE score", docs/ARCHITECTURE.md, eqs. 2-5).

    M = tanh(h^T W_TI v_i)                    bilinear form, a scalar per post
    C = tanh(W_T h + W_I (v_i M))             in R^{d_v}
    s = sigmoid(Linear(C * v_i))              in (0, 1): how much of the image to let in
"""
from __future__ import annotations

import math

import torch
from torch import nn


class RelevanceScore(nn.Module):
    def __init__(self, text_dim: int, vision_dim: int, start: float = 0.5) -> None:
        """``start``: the score every post gets before training (the output bias is logit(start)). A score that
        starts near 0 keeps an untrained visual path from disturbing the text: it opens only where images help."""
        super().__init__()
        if not 0.0 < start < 1.0:
            raise ValueError(f"the relevance score's start must lie in (0, 1), not {start}")
        self.bilinear = nn.Bilinear(text_dim, vision_dim, 1, bias=False)  # W_TI
        self.text_to_vision = nn.Linear(text_dim, vision_dim, bias=False)  # W_T
        self.vision_to_vision = nn.Linear(vision_dim, vision_dim, bias=False)  # W_I
        self.score = nn.Linear(vision_dim, 1)
        nn.init.constant_(self.score.bias, math.log(start / (1.0 - start)))

    def forward(self, text_vector: torch.Tensor, image_vector: torch.Tensor) -> torch.Tensor:
        """(batch, d), (batch, d_v) -> s of shape (batch,)."""
        m = torch.tanh(self.bilinear(text_vector, image_vector))  # (batch, 1)
        c = torch.tanh(self.text_to_vision(text_vector) + self.vision_to_vision(image_vector * m))
        return torch.sigmoid(self.score(c * image_vector)).squeeze(-1)

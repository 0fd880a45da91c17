"""Per-layer dynamic gates over the visual blocks (docs/ARCHITECTURE.md, eqs. 6-8).

    a^(l) = LeakyReLU(W_l mean_b V^C_b),   gates^(l) = softmax(a^(l))

The mean runs over the blocks that are present, and absent blocks get gate 0, so the gates of the
present blocks sum to 1 (a post without image gets uniform gates, which the prefix mask makes moot).
"""
from __future__ import annotations

import torch
from torch import nn


class DynamicGates(nn.Module):
    def __init__(self, vision_dim: int, num_blocks: int, num_layers: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.num_layers = num_layers
        self.logits = nn.Linear(vision_dim, num_layers * num_blocks)  # W_1 .. W_L stacked
        self.activation = nn.LeakyReLU()

    def forward(self, blocks: torch.Tensor, block_mask: torch.Tensor) -> torch.Tensor:
        """(batch, blocks, d_v), (batch, blocks) bool -> gates (batch, layers, blocks)."""
        weights = block_mask.to(blocks.dtype).unsqueeze(-1)
        present = weights.sum(dim=1).clamp(min=1.0)
        mean_block = (blocks * weights).sum(dim=1) / present
        logits = self.activation(self.logits(mean_block)).view(-1, self.num_layers, self.num_blocks)
        any_present = block_mask.any(dim=1, keepdim=True)  # (batch, 1)
        usable = torch.where(any_present, block_mask, torch.ones_like(block_mask))
        logits = logits.masked_fill(~usable.unsqueeze(1), float("-inf"))
        return torch.softmax(logits, dim=-1)

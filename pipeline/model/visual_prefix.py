"""Visual prefix tokens (docs/ARCHITECTURE.md, eqs. 10-14).

A projection shared by all blocks and layers turns each visual block into ``prompt_len`` prefix tokens,
each with a key and a value:  P_b = Linear(tanh(Linear(V^C_b))) : d_v -> prompt_dim -> prompt_len * 2 * d.
Layer l's prefix is [g_1 P_1 ; ... ; g_B P_B] with that layer's gates, split into heads by viewing d as
(heads, head_size) and moving the head axis forward (a plain reshape to (heads, length, head_size) would
scramble heads: docs/ARCHITECTURE.md, "Traps avoided").
"""
from __future__ import annotations

import torch
from torch import nn

from pipeline.model.prefix_attention import LayerPrefix


class VisualPrefix(nn.Module):
    def __init__(self, vision_dim: int, hidden_size: int, num_heads: int, prompt_len: int = 4,
                 prompt_dim: int = 800, dropout: float = 0.1) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.prompt_len = prompt_len
        self.project = nn.Sequential(
            nn.Linear(vision_dim, prompt_dim),
            nn.Tanh(),
            nn.Linear(prompt_dim, prompt_len * 2 * hidden_size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, blocks: torch.Tensor, block_mask: torch.Tensor, gates: torch.Tensor) -> list[LayerPrefix]:
        """blocks (batch, B, d_v), block_mask (batch, B), gates (batch, layers, B) -> one prefix per layer."""
        batch, num_blocks, _ = blocks.shape
        num_layers = gates.shape[1]
        tokens = self.dropout(self.project(blocks))  # (batch, B, prompt_len * 2 * d)
        tokens = tokens.view(batch, 1, num_blocks, self.prompt_len, 2, self.hidden_size)
        # every layer at once: (batch, layers, B, prompt_len, 2, d), gate g_l,b scaling block b's tokens
        gated = gates[:, :, :, None, None, None] * tokens
        prefix_len = num_blocks * self.prompt_len
        # -> (layers, key/value, batch, heads, prefix_len, head_size): heads split from d, then moved forward
        per_layer = gated.view(batch, num_layers, prefix_len, 2, self.num_heads, self.head_size)
        per_layer = per_layer.permute(1, 3, 0, 4, 2, 5)
        slot_mask = block_mask.repeat_interleave(self.prompt_len, dim=1)  # (batch, B * prompt_len)
        prefixes = [LayerPrefix(keys=per_layer[layer, 0], values=per_layer[layer, 1], mask=slot_mask)
                    for layer in range(num_layers)]
        return prefixes

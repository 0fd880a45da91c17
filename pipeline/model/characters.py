"""The character CNN: a vector per word from its bytes as written, so an uncased encoder's tags still see case,
prefixes and suffixes (the character features of the classic neural NER taggers)."""
from __future__ import annotations

import torch
from torch import nn

from ..data.characters import BYTE_VOCABULARY

CHAR_EMBEDDING_DIM = 32
CHAR_FILTERS = 64
CHAR_WIDTH = 3


class CharacterCNN(nn.Module):
    """Byte embedding, one convolution of width 3, ReLU, max over the word's bytes: (batch, words, CHAR_FILTERS)."""

    output_dim = CHAR_FILTERS

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(BYTE_VOCABULARY, CHAR_EMBEDDING_DIM, padding_idx=0)
        self.convolution = nn.Conv1d(CHAR_EMBEDDING_DIM, CHAR_FILTERS, CHAR_WIDTH, padding=CHAR_WIDTH // 2)

    def forward(self, byte_ids: torch.Tensor) -> torch.Tensor:
        """byte_ids: (batch, words, bytes) long, 0 = padding."""
        batch, words, length = byte_ids.shape
        flat = byte_ids.reshape(batch * words, length)
        features = torch.relu(self.convolution(self.embedding(flat).transpose(1, 2)))  # (batch*words, filters, bytes)
        # ReLU output is >= 0, so zeroing the padding keeps it out of the max; a padded word gives zeros
        features = features.masked_fill((flat == 0).unsqueeze(1), 0.0).amax(dim=-1)
        return features.view(batch, words, CHAR_FILTERS)

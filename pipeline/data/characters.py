"""A word's characters as written (case included), for the tagger's character CNN (``char_cnn``).

Each word becomes its UTF-8 bytes, each byte + 1 (0 pads): a fixed vocabulary of 257 ids that needs no
vocabulary file in the checkpoint and covers every script and emoji.
"""
from __future__ import annotations

BYTE_VOCABULARY = 257  # 256 byte values + padding
MAX_WORD_BYTES = 20  # longer words keep their first and last 10 bytes: prefixes and suffixes carry the cues


def word_byte_ids(word: str) -> list[int]:
    """The word's UTF-8 bytes + 1, at most MAX_WORD_BYTES (an empty word: one padding id)."""
    encoded = word.encode("utf-8")
    if len(encoded) > MAX_WORD_BYTES:
        half = MAX_WORD_BYTES // 2
        encoded = encoded[:half] + encoded[-half:]
    return [byte + 1 for byte in encoded] or [0]

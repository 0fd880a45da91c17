"""The shape of a word: the cue an uncased encoder never sees.

Capitalisation is the strongest sign of a name in tweets, and an uncased tokenizer lowercases it away. The
tagger can add a small learned embedding of each word's shape to the emission layer's input (``word_shape``).
"""
from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHAPES: tuple[str, ...] = ("other", "lower", "capitalised", "all_caps", "mixed_case", "digits", "hashtag",
                           "mention", "url", "emoji", "punctuation")
SHAPE_IDS = {shape: index for index, shape in enumerate(SHAPES)}

_URL = re.compile(r"^(https?://|www\.)\S+$", re.IGNORECASE)


def _is_emoji(char: str) -> bool:
    # Emoji are "Symbol, other" (So), plus the variation selector / joiner that decorate them.
    return unicodedata.category(char) == "So" or char in "\ufe0f\u200d"


def word_shape(word: str) -> str:
    """One of ``SHAPES`` for a word of a post, as written."""
    if _URL.match(word):
        return "url"
    if len(word) > 1 and word[0] == "#":
        return "hashtag"
    if len(word) > 1 and word[0] == "@":
        return "mention"
    letters = [char for char in word if char.isalpha()]
    if not letters:
        if word and any(char.isdigit() for char in word):
            return "digits"
        if word and all(_is_emoji(char) for char in word):
            return "emoji"
        if word and all(unicodedata.category(char).startswith("P") for char in word):
            return "punctuation"
        return "other"
    if all(char.islower() for char in letters):
        return "lower"
    if all(char.isupper() for char in letters):
        return "all_caps" if len(letters) > 1 else "capitalised"
    if letters[0].isupper() and all(char.islower() for char in letters[1:]):
        return "capitalised"
    return "mixed_case"


def word_shape_ids(words: list[str]) -> list[int]:
    return [SHAPE_IDS[word_shape(word)] for word in words]


def tokenizer_lowercases(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer maps upper and lower case to the same sub-tokens (an uncased encoder)."""
    return tokenizer.tokenize("Paris NASA") == tokenizer.tokenize("paris nasa")

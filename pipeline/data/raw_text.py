"""Splitting raw post text into word tokens with character offsets, the way the Twitter sets are tokenized.

Whitespace separates tokens; punctuation at the edges of a token is split off, except in URLs and inner
apostrophes/hyphens ("don't", "e-mail"). @mentions and #hashtags are kept whole (Twitter-2015: "#NBA") or split
("#", "NBA": Twitter-2017) as the data a model was trained on does (``TextSplit``, recorded in the checkpoint).
Our own rules, not a library tokenizer's: what matters is to split as the benchmark files were split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence

from ..core.errors import DghcError

_URL = re.compile(r"https?://\S+|www\.\S+")
_TAGGED = re.compile(r"([@#])[\w_]+")
_WORD = re.compile(r"\w+(?:['’\-.]\w+)*", re.UNICODE)


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offset in the post text
    end: int


@dataclass(frozen=True)
class TextSplit:
    """Where the Twitter sets cut words differently: "#NBA" / "@user" as one token, or the sign split off."""

    hashtags_whole: bool = True
    mentions_whole: bool = True

    @classmethod
    def of_words(cls, posts: Iterable[Sequence[str]]) -> TextSplit:
        """The convention of a data set's tokenized posts: whole where "#word" tokens are at least as many as lone
        "#" (likewise "@"); a sign the data never shows follows the other one (a set that cuts one cuts both)."""
        counts = {"#": [0, 0], "@": [0, 0]}  # sign -> [whole, alone]
        for words in posts:
            for word in words:
                if word[:1] in counts:
                    counts[word[0]][len(word) == 1] += 1
        whole = {sign: whole >= alone for sign, (whole, alone) in counts.items()}
        seen = {sign: sum(pair) > 0 for sign, pair in counts.items()}
        hashtags = whole["#"] if seen["#"] or not seen["@"] else whole["@"]
        mentions = whole["@"] if seen["@"] or not seen["#"] else whole["#"]
        return cls(hashtags_whole=hashtags, mentions_whole=mentions)

    @classmethod
    def from_json(cls, value: Any, source: str = "the checkpoint") -> TextSplit:
        """As recorded in a checkpoint (``source`` names it in errors); models trained before it was recorded, with
        no record, kept both whole."""
        if value is None:
            return cls()
        keys = {field.name for field in fields(cls)}
        if not isinstance(value, dict) or set(value) != keys or not all(isinstance(v, bool) for v in value.values()):
            raise DghcError(f"{source}: text_split is {value!r}, not an object of {' and '.join(sorted(keys))} "
                            "(true or false each); retrain or restore the model folder")
        return cls(**value)

    def keeps(self, sign: str) -> bool:
        return self.hashtags_whole if sign == "#" else self.mentions_whole


def tokenize(text: str, split: TextSplit = TextSplit()) -> list[Token]:
    tokens: list[Token] = []
    for chunk in re.finditer(r"\S+", text):
        tokens.extend(_split_chunk(chunk.group(), chunk.start(), split))
    return tokens


def _split_chunk(chunk: str, offset: int, split: TextSplit) -> list[Token]:
    if _URL.fullmatch(chunk):
        return [Token(chunk, offset, offset + len(chunk))]
    tokens = []
    position = 0
    while position < len(chunk):
        tagged = _TAGGED.match(chunk, position)
        match = (tagged if tagged and split.keeps(tagged.group(1)) else None) or _WORD.match(chunk, position)
        if match and match.end() > position:
            end = match.end()
        else:
            end = position + 1  # one punctuation or symbol character
        tokens.append(Token(chunk[position:end], offset + position, offset + end))
        position = end
    return tokens

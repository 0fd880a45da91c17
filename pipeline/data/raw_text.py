"""Splitting raw post text into word tokens with character offsets, the way the Twitter sets are tokenized.

Whitespace separates tokens; punctuation at the edges of a token is split off, except in URLs,
@mentions and #hashtags (kept whole, as Twitter-2015 does) and inner apostrophes/hyphens ("don't", "e-mail").
Our own rules, not a library tokenizer's: what matters is to split as the benchmark files were split.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_URL = re.compile(r"https?://\S+|www\.\S+")
_KEEP_WHOLE = re.compile(r"[@#][\w_]+")
_WORD = re.compile(r"\w+(?:['’\-.]\w+)*", re.UNICODE)


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offset in the post text
    end: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    for chunk in re.finditer(r"\S+", text):
        tokens.extend(_split_chunk(chunk.group(), chunk.start()))
    return tokens


def _split_chunk(chunk: str, offset: int) -> list[Token]:
    if _URL.fullmatch(chunk):
        return [Token(chunk, offset, offset + len(chunk))]
    tokens = []
    position = 0
    while position < len(chunk):
        match = _KEEP_WHOLE.match(chunk, position) or _WORD.match(chunk, position)
        if match and match.end() > position:
            end = match.end()
        else:
            end = position + 1  # one punctuation or symbol character
        tokens.append(Token(chunk[position:end], offset + position, offset + end))
        position = end
    return tokens

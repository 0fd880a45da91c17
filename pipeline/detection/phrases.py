"""Prompt phrases for the grounding detector, taken from a post's words (never from its labels).

A post names what its image may show: runs of capitalised words ("Kawhi Leonard", "Block of the Year"),
hashtags and mentions split into words ("#NBAAwards" -> "NBA Awards", "@real_madrid" -> "real madrid").
Twitter-2017 splits ``#`` and ``@`` off as tokens of their own; Twitter-2015 keeps them on the word: both
are handled. URLs, ``RT`` and HTML entities are skipped.
"""
from __future__ import annotations

import re
from typing import Sequence

MAX_PHRASES = 8
MAX_WORDS = 6

# Small words allowed inside a capitalised run when a capitalised word follows ("Festival of Voice").
CONNECTORS = frozenset({"of", "the", "and", "&", "de", "la", "le", "du", "del", "da", "van", "von", "y", "for"})
# Capitalised words that name nothing on their own (sentence starts, pronouns, Twitter jargon).
STOPWORDS = frozenset("""
a an the and or but of to in on at for with from by as is are was were be been it its this that these those
i me my we our you your he him his she her they them their us rt via post event photo video watch
breaking live today tonight yesterday tomorrow here there what when where who why how just so if not no yes
oh omg lol happy thanks thank please do does did can will would could should has have had get got all
""".split())
# Words that may start a name ("New York") but say nothing alone.
WEAK_ALONE = frozenset({"new", "big", "great", "old", "little", "good", "best", "first", "last"})

_URL = re.compile(r"^(https?:|www\.|t\.co/)", re.IGNORECASE)
_ENTITY = re.compile(r"^&\w+;?$")
# Boundaries inside a hashtag or handle: lower->Upper, Upper->Upper+lower ("NBAAwards"), letters<->digits.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")


def split_compound(word: str) -> str:
    """Words of a hashtag or handle body: ``NBAAwards`` -> ``NBA Awards``, ``real_madrid`` -> ``real madrid``."""
    parts = re.split(r"[_\-.]+", word)
    words: list[str] = []
    for part in parts:
        words.extend(w for w in _CAMEL.split(part) if w)
    return " ".join(words)


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def _is_capitalised(token: str) -> bool:
    return token[:1].isupper()


def _skip(token: str) -> bool:
    return bool(_URL.match(token) or _ENTITY.match(token)) or token.upper() == "RT"


def _clean_run(words: list[str]) -> str | None:
    """Trim stopwords and connectors at both ends of a run; None when nothing is left."""
    def weak(word: str) -> bool:  # "LA" is a place, "la" a connector
        return word.lower() in STOPWORDS or word in CONNECTORS

    while words and weak(words[0]):
        words = words[1:]
    while words and weak(words[-1]):
        words = words[:-1]
    if not words or (len(words) == 1 and words[0].lower() in WEAK_ALONE):
        return None
    return " ".join(words[:MAX_WORDS])


def post_phrases(tokens: Sequence[str], max_phrases: int = MAX_PHRASES) -> list[str]:
    """Prompt phrases of one post, in order of appearance, deduplicated ignoring case, at most ``max_phrases``."""
    found: list[str] = []
    run: list[str] = []
    pending: list[str] = []  # connectors seen after a run, kept only if another capitalised word follows

    def close_run() -> None:
        nonlocal run, pending
        if run:
            phrase = _clean_run(run)
            if phrase:
                found.append(phrase)
        run, pending = [], []

    i = 0
    while i < len(tokens):
        token = tokens[i].strip()
        i += 1
        if not token or _skip(token):
            close_run()
            continue
        # Hashtag or mention: "#word" / "@word", or "#" then "word" as two tokens (Twitter-2017).
        if token[0] in "#@":
            body = token[1:]
            if not body and i < len(tokens):
                body = tokens[i].strip()
                i += 1
            close_run()
            body = body.lstrip("#@")
            if _is_word(body) and not _skip(body):
                phrase = split_compound(body)
                if phrase and phrase.lower() not in STOPWORDS:
                    found.append(" ".join(phrase.split()[:MAX_WORDS]))
            continue
        if not _is_word(token):
            close_run()
            continue
        if _is_capitalised(token):
            run.extend(pending)
            pending = []
            run.append(token)
        elif run and token.lower() in CONNECTORS:
            pending.append(token)
        else:
            close_run()
    close_run()

    phrases: list[str] = []
    seen: set[str] = set()
    for phrase in found:
        key = phrase.lower()
        if key in seen:
            continue
        seen.add(key)
        phrases.append(phrase)
        if len(phrases) >= max_phrases:
            break
    return phrases

"""The entity types a data file uses, where each first appears, and the two checks that catch a mistyped tag.

A tag such as ``B-LCO`` is a valid BIO tag, so the reader accepts it; trained on, it becomes a type of its own that
the model learns from one example. ``likely_typos`` names such a type (rare, and one edit away from a frequent type)
with its file and line. A type in dev or test data that the model never learned cannot be scored meaningfully:
``refuse_unseen_types`` refuses it, naming the first line, unless the caller was asked to score it anyway.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import DghcError
from .conll import Post
from .tags import bio_spans

RARE = 2  # entities: a type seen at most this often...
COMMON_RATIO = 10  # ...beside a look-alike seen at least this many times more often reads as a typo of it


@dataclass(frozen=True)
class TypeUse:
    """How a file uses one entity type."""

    count: int  # entities of the type
    line: int  # the line of its first entity's first tag
    tag: str  # that tag as written


def type_uses(posts: Sequence[Post]) -> dict[str, TypeUse]:
    """Every entity type of ``posts`` with its count and first line (token lines follow their post's IMGID line)."""
    uses: dict[str, TypeUse] = {}
    for post in posts:
        for entity_type, start, _ in bio_spans(post.labels):
            seen = uses.get(entity_type)
            if seen is None:
                uses[entity_type] = TypeUse(1, post.line + 1 + start, post.labels[start])
            else:
                uses[entity_type] = TypeUse(seen.count + 1, seen.line, seen.tag)
    return uses


def one_edit_apart(a: str, b: str) -> bool:
    """One letter changed, added, dropped, or two neighbours swapped (LCO/LOC); letter case ignored."""
    a, b = a.upper(), b.upper()
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
                                  and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def likely_typos(uses: dict[str, TypeUse], path: str | Path) -> list[str]:
    """One message per rare type that looks like a frequent one, naming ``path`` and the line of its first tag."""
    messages = []
    for name, use in sorted(uses.items()):
        if use.count > RARE:
            continue
        for other, common in sorted(uses.items()):
            if other != name and common.count >= COMMON_RATIO * use.count and one_edit_apart(name, other):
                messages.append(f"{path}:{use.line}: {use.tag}: type {name} appears {use.count} time(s) and {other} "
                                f"{common.count} times: a typo of {other}? (fix the tag; a real type of its own "
                                "needs more examples to be learned)")
                break
    return messages


def refuse_unseen_types(posts: Sequence[Post], known: set[str], path: str | Path, allow_flag: str) -> None:
    """Refuse gold entities of a type outside ``known`` (what the model learns or learned), naming the first line."""
    unseen = {name: use for name, use in type_uses(posts).items() if name not in known}
    if not unseen:
        return
    name, use = min(unseen.items(), key=lambda item: item[1].line)
    others = f" (and {', '.join(sorted(set(unseen) - {name}))})" if len(unseen) > 1 else ""
    raise DghcError(f"{path}:{use.line}: {use.tag}: type {name}{others} is not one the model learns "
                    f"({', '.join(sorted(known)) or 'none'}): fix the tag, or give {allow_flag} to score such "
                    "entities as missed")

"""Fingerprints: what an output was made from, as canonical JSON and its sha256, and how to compare two.

Every output file records a fingerprint (a flat JSON object of the settings and input hashes it depends on).
A stage whose fingerprint equals the file's has nothing to redo; a reader that needs certain settings names
each key that differs.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..core.errors import FingerprintMismatch


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, ASCII only: the same value gives the same string (and hash) on every machine."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_json(value: Any) -> str:
    """sha256 of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode("ascii")).hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def code_sha256(paths: Iterable[Path]) -> str:
    """sha256 of what Python files compute, not of their text: each file's syntax tree without docstrings, so that
    editing a comment, a docstring or the layout gives the same hash (and a saved training state still resumes)."""
    digest = hashlib.sha256()
    for path in paths:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body and \
                    isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and \
                    isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        digest.update(f"{Path(path).name}\0{ast.dump(tree)}\0".encode())
    return digest.hexdigest()


def module_file(name: str, root: Path, packages: Sequence[str]) -> Path | None:
    """The file of module ``name`` when it is one of ``packages`` or inside one (``dghc.pipeline``, ``dghc.cli``);
    None for other modules. ``root`` is the folder of the top package: the repository root is the package ``dghc``
    (pyproject.toml maps it), so ``dghc.pipeline.data.conll`` is root/pipeline/data/conll.py."""
    if not any(name == package or name.startswith(package + ".") for package in packages):
        return None
    inner = name.split(".")[1:]
    if not inner:  # the top package itself: the repository root has no __init__.py
        return None
    base = Path(root).joinpath(*inner)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file of ``module`` names (submodules of ``from``
    included), relative imports resolved against the file's package."""
    package = module if Path(path).name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from ..core.errors import X: up level - 1 packages from the file's own
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.add(origin)
            names.update(f"{origin}.{alias.name}" for alias in node.names)
    return names


def import_closure(module: str, root: Path, packages: Sequence[str]) -> set[Path]:
    """The files of ``packages`` that running ``module`` may execute: itself, the ``__init__`` of every package on
    the way, and the same for each project import, function-level ones too (read from the syntax, never run)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        parts = todo.pop().split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            name = ".".join(parts[:depth])
            path = module_file(name, root, packages)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path, name))
    return seen


def normalise(value: Any) -> Any:
    """JSON round trip: tuples become lists, so that a dict compares equal to what a file gives back."""
    return json.loads(json.dumps(value, sort_keys=True))


def differences(expected: Mapping[str, Any], found: Mapping[str, Any]) -> list[str]:
    """One line per key of ``expected`` whose value differs in ``found``: ``key: expected X, found Y``; nested
    objects name the inner key that differs (``params.seed``), not the whole object."""
    lines = []
    for key in sorted(expected):
        want = normalise(expected[key])
        if key not in found:
            lines.append(f"{key}: expected {_show(want)}, found nothing (the file does not record it)")
            continue
        got = normalise(found[key])
        if isinstance(want, dict) and isinstance(got, dict):
            lines.extend(f"{key}.{line}" for line in differences(want, got))
            lines.extend(f"{key}.{extra}: expected nothing, found {_show(got[extra])}" for extra in sorted(set(got) - set(want)))
        elif want != got:
            lines.append(f"{key}: expected {_show(want)}, found {_show(got)}")
    return lines


def require_match(expected: Mapping[str, Any], found: Mapping[str, Any], path: str | Path, fix: str) -> None:
    """Raise ``FingerprintMismatch`` naming every key of ``expected`` that ``found`` does not match."""
    lines = differences(expected, found)
    if lines:
        raise FingerprintMismatch(f"{path} was made with other settings than asked for: " + "; ".join(lines)
                                  + f" ({fix})")


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."

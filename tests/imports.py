"""The project modules a module needs: its imports, followed through the project (function-level ones too)."""
from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PROJECT_PACKAGES = ("pipeline", "stages")


def module_file(name: str) -> Path | None:
    """The file of a project module (``pipeline.data.conll`` -> pipeline/data/conll.py), None if not ours."""
    if name == "cli":
        return REPO / "cli.py"
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names (submodules of ``from`` included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_closure(module: str) -> set[Path]:
    """The project files ``module`` runs, itself and the ``__init__`` of every package on the way included."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(imported_modules(path))
    return seen

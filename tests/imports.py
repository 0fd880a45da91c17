"""The project modules a module needs: its imports, followed through the project (function-level ones too)."""
from __future__ import annotations

from pathlib import Path

from dghc.pipeline.artifacts.fingerprint import import_closure
from tests.environment import REPO

PROJECT_PACKAGES = ("dghc.pipeline", "dghc.stages", "dghc.cli")


def project_closure(module: str) -> set[Path]:
    """The project files ``module`` runs, itself and the ``__init__`` of every package on the way included."""
    return import_closure(module, REPO, PROJECT_PACKAGES)

"""Test-wide settings: everything offline, nothing written outside the repository."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real benchmark data, beside the repository (not in a clone)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".yolo"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MPLCONFIGDIR", str(REPO / ".mplconfig"))

# The files that take minutes, the longest first. make test's workers (pytest-xdist, --dist loadfile
# --no-loadscope-reorder) take whole files in collection order: the long ones start first, not last behind the
# quick ones, and the quick files fill in around them.
LONG_FILES_FIRST = ("test_experiments_dvc.py", "test_learning_demo.py", "test_train_resume.py",
                    "test_learning_twitter2017.py", "test_dvc_pipeline.py")
assert all((REPO / "tests" / name).is_file() for name in LONG_FILES_FIRST), "LONG_FILES_FIRST names a missing file"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def require_tool(available: bool, what: str) -> None:
    """Skip a test that needs ``what`` when it is missing on a developer's machine; fail under CI, which installs
    everything (`.ci/run`), so that a missing tool never passes silently there."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run every test")
    pytest.skip(f"{what} is missing")

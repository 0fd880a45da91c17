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



def require_tool(available: bool, what: str) -> None:
    """Skip a test that needs ``what`` when it is missing on a developer's machine; fail under CI, which installs
    everything (`.ci/run`), so that a missing tool never passes silently there."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run every test")
    pytest.skip(f"{what} is missing")

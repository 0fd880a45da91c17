"""Where the tests run: the repository, the real benchmark data beside it, the cores each test process may use, and
what to do when a tool a test needs is missing. Test modules import these from here (``tests/conftest.py`` is
pytest's, and importing it as ``tests.conftest`` would load it a second time)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real benchmark data, beside the repository (not in a clone)

# The cores each test process may use: pytest-xdist runs one worker per core, and two workers that each start an
# OpenMP thread per core slow each other 2-3x (measured: the Durant test 109 s alone, 328 s beside the DVC
# experiments). conftest.py sets OMP_NUM_THREADS from it before torch is imported, so it holds in the workers and
# in every subprocess they start.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
# sched_getaffinity: the cores this process may use (a container may have fewer than the machine); not on macOS
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
TEST_THREADS = max(1, CORES // WORKERS)


def require_tool(available: bool, what: str) -> None:
    """Skip a test that needs ``what`` when it is missing on a developer's machine; fail under CI, which installs
    everything (`.ci/run`), so that a missing tool never passes silently there."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run every test")
    pytest.skip(f"{what} is missing")

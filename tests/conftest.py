"""Test-wide settings: everything offline, nothing written outside the repository."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from dghc.pipeline.core.offline import offline_environment

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # real benchmark data, beside the repository (not in a clone)

offline_environment(REPO)

# The cores each test process may use: pytest-xdist runs one worker per core, and two workers that each start an
# OpenMP thread per core slow each other 2-3x (measured: the Durant test 109 s alone, 328 s beside the DVC
# experiments). Set before torch is imported, so it holds in the workers and in every subprocess they start.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
# sched_getaffinity: the cores this process may use (a container may have fewer than the machine); not on macOS
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
TEST_THREADS = max(1, CORES // WORKERS)
os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))

# The files that take minutes, longest first (seconds in one worker of `make test` on 2 cores, measured with
# --durations=0). make test's workers take whole files in collection order (--dist loadfile
# --no-loadscope-reorder): the long files start first and the quick ones fill in around them. xdist's own order
# (most tests first) left the long files to the end, one worker idle for 4 minutes.
LONG_FILES_FIRST = ("test_learning_demo.py",  # 370
                    "test_experiments_dvc.py",  # 262
                    "faults/test_kills_and_concurrency.py",  # 260
                    "faults/test_signals.py",  # 188
                    "test_dvc_pipeline.py",  # 176
                    "test_scale_ray.py",  # 170 (alone)
                    "test_train_resume.py",  # 129
                    "test_learning_twitter2017.py",  # 75
                    "faults/test_write_failures.py")  # 61
assert all((REPO / "tests" / name).is_file() for name in LONG_FILES_FIRST), "LONG_FILES_FIRST names a missing file"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONG_FILES_FIRST)}
    tests = REPO / "tests"
    # stable: the other files keep their order
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))


def require_tool(available: bool, what: str) -> None:
    """Skip a test that needs ``what`` when it is missing on a developer's machine; fail under CI, which installs
    everything (`.ci/run`), so that a missing tool never passes silently there."""
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing, and CI must run every test")
    pytest.skip(f"{what} is missing")

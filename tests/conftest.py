"""Test-wide settings: everything offline, nothing written outside the repository."""
from __future__ import annotations

import importlib.util
import os

import pytest

from tests.environment import REPO, TEST_THREADS

os.environ.setdefault("OMP_NUM_THREADS", str(TEST_THREADS))


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module is imported: dghc must be installed (the repository is the package dghc once it is),
    and every library offline, with its settings files inside the repository."""
    if importlib.util.find_spec("dghc") is None:
        pytest.exit("dghc is not installed in this Python: run `make install` and `source .venv/bin/activate` "
                    "first (or `pip install -e '.[test]'`)", returncode=4)
    from dghc.pipeline.core.offline import offline_environment

    offline_environment(REPO)


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
                    "test_rehearsal.py",  # 68 (measured alone)
                    "faults/test_write_failures.py")  # 61
assert all((REPO / "tests" / name).is_file() for name in LONG_FILES_FIRST), "LONG_FILES_FIRST names a missing file"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONG_FILES_FIRST)}
    tests = REPO / "tests"
    # stable: the other files keep their order
    items.sort(key=lambda item: rank.get(item.path.relative_to(tests).as_posix(), len(rank)))


"""The committed dvc.lock matches the committed code and parameters, so `make demo` on a fresh clone leaves
`git status` clean (but for output hashes, which a CPU of another kind can change: floats differ in the last bit).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.environment import REPO

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_committed_dvc_lock_matches_the_code_and_params(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    tracked = [name for name in files.split("\0") if name]
    for name in tracked:
        if (REPO / name).is_file():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tmp_path / name)
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env.update(DVC_NO_ANALYTICS="1", DVC_SITE_CACHE_DIR=str(tmp_path / ".dvc" / "tmp" / "site-cache"),
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    result = subprocess.run([str(BIN / "dvc"), "status", "--json"], cwd=tmp_path, capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout or "{}")
    stale = {}
    for stage, entries in status.items():
        for entry in entries if isinstance(entries, list) else []:
            if entry == "changed command":  # dvc.yaml's command edited after the lock was written
                stale.setdefault(stage, {})["cmd"] = entry
            if not isinstance(entry, dict):
                continue
            for path, change in entry.get("changed deps", {}).items():
                # outputs of other stages and the demo data are absent from a clone ("deleted"): not a mismatch
                if path in tracked or any(t.startswith(path.rstrip("/") + "/") for t in tracked):
                    stale.setdefault(stage, {})[path] = change
    print(json.dumps(status, indent=1)[:3000])
    assert not stale, (f"dvc.lock does not match the committed code or params: {stale}; run `make demo` and "
                       "commit dvc.lock")

"""The offline environment of tests and benchmarks, in a fresh process whose variables are unset."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NAMES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE", "YOLO_CONFIG_DIR", "DVC_NO_ANALYTICS", "MPLCONFIGDIR",
         "DGHC_HASH_CACHE")
PROBE = """
import json, os, sys
from pathlib import Path
from dghc.pipeline.core.offline import offline_environment
offline_environment(Path(sys.argv[1]))
import huggingface_hub.constants
print(json.dumps({"env": {name: os.environ.get(name) for name in sys.argv[2:]},
                  "hub_offline": huggingface_hub.constants.HF_HUB_OFFLINE}))
"""


def probe(root: Path, **preset: str) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in NAMES} | preset
    result = subprocess.run([sys.executable, "-c", PROBE, str(root), *NAMES], env=env, capture_output=True,
                            text=True, check=True, timeout=120)
    return json.loads(result.stdout)


def test_every_library_is_offline_with_its_settings_under_the_root(tmp_path):
    seen = probe(tmp_path)
    print(seen)
    assert seen["hub_offline"] is True  # set before huggingface_hub read it
    assert all(seen["env"][name] == "1" for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "YOLO_OFFLINE",
                                                     "DVC_NO_ANALYTICS"))
    assert seen["env"]["YOLO_CONFIG_DIR"] == str(tmp_path / ".yolo")
    assert seen["env"]["MPLCONFIGDIR"] == str(tmp_path / ".mplconfig")
    # the tests' and benchmarks' image hashes (artifacts.file_hashes) stay out of the user's ~/.cache
    assert seen["env"]["DGHC_HASH_CACHE"] == str(tmp_path / ".dghc-cache" / "file-hashes.sqlite")


def test_a_variable_the_caller_set_is_kept(tmp_path):
    seen = probe(tmp_path, YOLO_CONFIG_DIR=str(tmp_path / "mine"))
    assert seen["env"]["YOLO_CONFIG_DIR"] == str(tmp_path / "mine")
    assert seen["env"]["YOLO_OFFLINE"] == "1"

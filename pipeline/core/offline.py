"""The environment of tests and benchmarks: no downloads, no telemetry, library settings inside the repository."""
from __future__ import annotations

import os
from pathlib import Path


def offline_environment(root: Path) -> None:
    """Sets, where the caller has not, the variables that keep Hugging Face, ultralytics, DVC and matplotlib offline
    and their settings files, and dghc's cache of file hashes, under ``root`` (as the Makefile does for the CLI).
    Call it before importing them: they read the variables once, at import."""
    defaults = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1",
                "YOLO_CONFIG_DIR": str(root / ".yolo"), "DVC_NO_ANALYTICS": "1",
                "MPLCONFIGDIR": str(root / ".mplconfig"),
                "DGHC_HASH_CACHE": str(root / ".dghc-cache" / "file-hashes.sqlite")}  # artifacts.file_hashes
    for name, value in defaults.items():
        os.environ.setdefault(name, value)

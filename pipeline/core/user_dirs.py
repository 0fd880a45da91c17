"""Where dghc keeps a user's files that belong to no project: the user's cache folder, never the working directory."""
from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dghc``, else ``~/.cache/dghc`` (created by whoever writes there)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dghc"

"""Where vidloader keeps its caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$VIDLOADER_CACHE_DIR``, else ``$XDG_CACHE_HOME/vidloader``, else ``~/.cache/vidloader``."""
    root = os.environ.get("VIDLOADER_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vidloader"
    )
    return Path(root)

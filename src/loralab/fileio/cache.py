"""Where loralab keeps what it computes once and reuses: pretrained tiny bases, tokenised
texts, the float32 copies of GGUF models."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_cache_dir"]


def default_cache_dir() -> Path:
    """``$LORALAB_CACHE``, else ``$XDG_CACHE_HOME/loralab``, else ``~/.cache/loralab``."""
    if os.environ.get("LORALAB_CACHE"):
        return Path(os.environ["LORALAB_CACHE"])
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "loralab"

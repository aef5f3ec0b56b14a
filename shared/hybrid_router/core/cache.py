"""Where hybrid-llm keeps files it builds on first use (converted models, ONNX encoders)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder: ``$HYBRID_LLM_CACHE``, else ``$XDG_CACHE_HOME/hybrid-llm`` (``~/.cache/hybrid-llm``)."""
    base = os.environ.get("HYBRID_LLM_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hybrid-llm"

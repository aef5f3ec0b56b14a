"""Lazy package exports (PEP 562): a package names what it exports, and each name's module loads on first use.

This keeps ``import hybrid_router`` (and each subpackage) free of heavy imports: torch, transformers,
onnxruntime and FastAPI load only when something that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``; ``exports`` maps a public name to its module (relative)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__

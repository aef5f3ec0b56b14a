"""The 0.1 module paths (``hybrid_router.routing_log``, ``hybrid_router.local_chat``, ...) as aliases of the moves.

0.1 kept every module at the top of the package; 0.2 sorts them into ``core``, ``train``, ``traffic``, ``local``,
``serve`` and ``cli``. Importing an old path still works: it returns the moved module itself (one module object,
so state such as caches is shared) and warns once with :class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

MOVED = {
    **{
        name: f"core.{name}"
        for name in (
            "calibration",
            "conversation",
            "encoder",
            "encoder_onnx",
            "fallback",
            "features",
            "head",
            "options",
            "pinning",
            "pricing",
            "records",
            "router",
            "default_router",
        )
    },
    **{
        name: f"train.{name}"
        for name in ("data", "data_io", "depth", "embedding_cache", "evaluation", "labels", "recipes", "training")
    },
    **{name: f"traffic.{name}" for name in ("exports", "log_scoring", "routing_log")},
    "local_models": "local.models",
    "local_chat": "local.chat",
    "local_server": "local.server",
    "quantize": "local.quantize",
    "distill": "local.distill",
    "openai_app": "serve.app",
    "backends": "serve.backends",
    "demo": "serve.demo",
    "commands": "cli",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target
        self.own: tuple = (None, None)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.target}; import it from there", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(self.target)
        self.own = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """The target module ran when it was imported; give it back its own spec (the import system set ours)."""
        module.__spec__, module.__loader__ = self.own


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds ``hybrid_router.<old>`` and ``hybrid_router.commands.<name>`` and serves the moved module."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, rest = fullname.partition(".")
        if package != __package__ or not rest:
            return None
        head, _, tail = rest.partition(".")
        if head not in MOVED:
            return None
        new = f"{__package__}.{MOVED[head]}" + (f".{tail}" if tail else "")
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (before the path finder, which would load a second copy), once."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())

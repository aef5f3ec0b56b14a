"""The package layout: light imports, every documented import path, the 0.1 aliases, one shared default router."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from hybrid_router._compat import MOVED

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "onnxruntime", "sentence_transformers", "tiktoken", "fastapi")


def loaded_after_import(statement: str) -> list[str]:
    """The heavy modules a fresh interpreter has loaded after ``statement``."""
    probe = f"import sys\n{statement}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().split(",") if m]


@pytest.mark.parametrize("package", ["hybrid_router", "langchain_hybrid", "llamaindex_hybrid"])
def test_importing_a_package_loads_no_heavy_library(package):
    assert loaded_after_import(f"import {package}") == []


def test_the_public_api_of_the_core_is_importable_without_heavy_libraries():
    names = "HybridRouter, routing, RouteDecision, RoutingOptions, FallbackRunner, RoutingLog, CostTracker, PriceTable"
    assert loaded_after_import(f"from hybrid_router import {names}") == []


def test_importing_llamaindex_hybrid_leaves_llamaindex_tokenizer_unset():
    probe = "import llamaindex_hybrid\nimport llama_index.core\nprint(llama_index.core.global_tokenizer is None)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def test_a_later_settings_tokenizer_is_used_by_the_routing_log_counts():
    from llama_index.core import Settings
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse

    from llamaindex_hybrid.traffic import _text_and_tokens

    previous = Settings.tokenizer
    Settings.tokenizer = lambda text: text.split()  # one token per word
    try:
        reply = ChatResponse(message=ChatMessage(role="assistant", content="antidisestablishmentarianism " * 5))
        _, _, n_out = _text_and_tokens(reply, [ChatMessage(role="user", content="hi")], None)
    finally:
        Settings.tokenizer = previous
    assert n_out == len(str(reply.message).split())  # 6 words; tiktoken would count over 20 tokens


def documented_paths() -> list[str]:
    """Every ``hybrid_router...`` import path in the README: ``from X import a, b`` lines and dotted names."""
    readme = (ROOT / "README.md").read_text()
    paths = set()
    for module, names in re.findall(r"^from (hybrid_router[\w.]*) import ([\w, ]+)", readme, re.M):
        paths.update(f"{module}:{name.strip()}" for name in names.split(","))
    for dotted in re.findall(r"`(hybrid_router(?:\.\w+)+)", readme):
        paths.add(dotted)
    old = tuple(f"hybrid_router.{name}" for name in MOVED)  # the layout section names the 0.1 aliases
    return sorted(p for p in paths if not p.split(":")[0].startswith(old))


def resolve(path: str) -> object:
    """Import ``module:name`` or the longest importable module prefix of a dotted path, then its attributes."""
    if ":" in path:
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def test_the_readme_documents_import_paths():
    assert len(documented_paths()) >= 10


@pytest.mark.parametrize("path", documented_paths())
def test_every_import_path_the_readme_documents_works(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the README uses the current paths, not the aliases
        assert resolve(path) is not None


@pytest.mark.parametrize(
    "old, new",
    [
        ("hybrid_router.routing_log", "hybrid_router.traffic.routing_log"),
        ("hybrid_router.records", "hybrid_router.core.records"),
        ("hybrid_router.local_chat", "hybrid_router.local.chat"),
        ("hybrid_router.data", "hybrid_router.train.data"),
        ("hybrid_router.commands.serve", "hybrid_router.cli.serve"),
    ],
)
def test_the_0_1_module_paths_are_aliases_of_the_moved_modules(old, new):
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_an_unknown_module_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hybrid_router.no_such_module")


def test_both_wrappers_share_one_default_router():
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from llama_index.core.llms import MockLLM

    from hybrid_router import HybridRouter
    from langchain_hybrid import HybridChatModel
    from llamaindex_hybrid import HybridLLM

    chat = HybridChatModel(small=FakeListChatModel(responses=["a"]), large=FakeListChatModel(responses=["b"]))
    llm = HybridLLM(small=MockLLM(), large=MockLLM())
    assert chat.router is llm.router is HybridRouter.shared_default()
    assert HybridRouter.default() is not HybridRouter.shared_default()  # default() is a private copy

"""The two chat models the LangChain examples route between.

small: the shipped SmolLM2-135M, in process (``langchain_hybrid.local_chat_model``).
large: OpenAI (``ChatOpenAI``) when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` override the
endpoint and the model); otherwise a local OpenAI-compatible stand-in server on 127.0.0.1 serving the shipped model
(started in the background while the small model loads; it stops when the block ends).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from langchain_core.language_models import BaseChatModel  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from hybrid_router.local.server import LocalOpenAIServer  # noqa: E402
from hybrid_router.serve.backends import DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL  # noqa: E402
from langchain_hybrid import local_chat_model  # noqa: E402

torch.set_num_threads(1)  # a 135M model gains little from more threads on a small CPU


@contextmanager
def example_models(max_tokens: int = 32) -> Iterator[tuple[BaseChatModel, BaseChatModel]]:
    """(small, large) LangChain chat models, exactly what an app would pass to ``HybridChatModel``."""
    api_key = os.environ.get("OPENAI_API_KEY")
    server = None if api_key else LocalOpenAIServer().start()
    try:
        small = local_chat_model(max_new_tokens=max_tokens)
        if server is not None:
            server.wait_ready()
            base_url, model, api_key = server.base_url, server.model_name, "not-needed"
        else:
            base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_LARGE_URL)
            model = os.environ.get("OPENAI_MODEL", DEFAULT_LARGE_MODEL)
        large = ChatOpenAI(
            model=model,
            base_url=base_url,
            api_key=api_key,
            max_tokens=max_tokens,
            temperature=0,
            stream_usage=True,
            timeout=120,
        )
        yield small, large
    finally:
        if server is not None:
            server.stop()

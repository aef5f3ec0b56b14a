"""The two models the LlamaIndex examples route between.

small: the shipped SmolLM2-135M, in process (``llamaindex_hybrid.local.local_llm``).
large: OpenAI when ``OPENAI_API_KEY`` is set (``OPENAI_BASE_URL`` / ``OPENAI_MODEL`` override the endpoint and the
model, as for ``hybrid-llm serve``); otherwise a local OpenAI-compatible stand-in server on 127.0.0.1 serving the
shipped model (started in the background while the small model loads; it stops when the block ends).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from llama_index.core.llms import LLM  # noqa: E402

from hybrid_router.local.server import LocalOpenAIServer  # noqa: E402
from hybrid_router.serve.backends import DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL  # noqa: E402
from llamaindex_hybrid.local import local_llm  # noqa: E402

torch.set_num_threads(1)  # a 135M model gains little from more threads on a small CPU


@contextmanager
def example_models(max_tokens: int = 32, *, tools: bool = False) -> Iterator[tuple[LLM, LLM]]:
    """(small, large) LlamaIndex LLMs; ``tools`` marks the large client as function-calling."""
    from llama_index.llms.openai_like import OpenAILike

    api_key = os.environ.get("OPENAI_API_KEY")
    server = None if api_key else LocalOpenAIServer().start()
    try:
        small = local_llm(max_new_tokens=max_tokens)
        if server is not None:
            server.wait_ready()
            base_url, model, api_key = server.base_url, server.model_name, "not-needed"
        else:
            base_url = os.environ.get("OPENAI_BASE_URL", DEFAULT_LARGE_URL)
            model = os.environ.get("OPENAI_MODEL", DEFAULT_LARGE_MODEL)
        large = OpenAILike(
            model=model,
            api_base=base_url,
            api_key=api_key,
            max_tokens=max_tokens,
            temperature=0,
            is_chat_model=True,
            is_function_calling_model=tools,
            context_window=8192,
            timeout=120,
        )
        yield small, large
    finally:
        if server is not None:
            server.stop()

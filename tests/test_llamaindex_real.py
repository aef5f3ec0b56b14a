"""HybridLLM over real models: the shipped SmolLM2 (small, in process) and a real OpenAI-compatible server on
127.0.0.1 (large, ``transformers serve``). Every entry point, the router on real prompts, fallback to a dead
endpoint, exact token counts and costs, and a FunctionAgent run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.tools import FunctionTool

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from hybrid_router.local.server import free_port
from llamaindex_hybrid import HybridLLM, track_costs

pytestmark = pytest.mark.real_model

EASY = "What is 2 + 2?"
HARD = "Prove that there are infinitely many primes p such that p + 2 is also prime, or explain why this is open."
ENTRY_TARGETS = [
    ("chat", "small"),
    ("achat", "large"),
    ("stream_chat", "large"),
    ("astream_chat", "small"),
    ("complete", "large"),
    ("acomplete", "small"),
    ("stream_complete", "small"),
    ("astream_complete", "large"),
]


def call(llm, entry: str, text: str, **kwargs: Any) -> list:
    """Run one entry point; the responses (one, or every streamed chunk)."""
    arg = [ChatMessage(role="user", content=text)] if "chat" in entry else text
    if entry.startswith("a"):

        async def run():
            result = await getattr(llm, entry)(arg, **kwargs)
            return [c async for c in result] if entry.startswith("astream") else [result]

        return asyncio.run(run())
    result = getattr(llm, entry)(arg, **kwargs)
    return list(result) if entry.startswith("stream") else [result]


def text_of(response) -> str:
    return response.text if isinstance(response, CompletionResponse) else response.message.content


TOKENS = 8  # enough for an answer to check; generation dominates the time on a small CPU


def server_client(openai_server: str, model: str, **kwargs: Any) -> Any:
    """An OpenAILike client of the local server with a fresh HTTP client per request.

    (The session fixture reuses one AsyncOpenAI client; each test's ``asyncio.run`` makes a new event loop, and a
    client bound to a closed loop fails with "Connection error".)
    """
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=model,
        api_base=openai_server,
        api_key="x",
        is_chat_model=True,
        max_tokens=TOKENS,
        temperature=0,
        max_retries=0,
        timeout=120,
        reuse_client=False,
        **kwargs,
    )


@pytest.fixture
def small(small_llamaindex_llm):
    """The shipped small model (the session's weights) as a fresh LLM capped at TOKENS new tokens."""
    from llamaindex_hybrid.local import LocalLLM

    return LocalLLM(chat_engine=small_llamaindex_llm.chat_engine, max_new_tokens=TOKENS)


@pytest.fixture
def large(openai_server, large_model_name):
    return server_client(openai_server, large_model_name)


@pytest.fixture
def hybrid(small, large, default_router):
    return HybridLLM(small, large, router=default_router)


@pytest.fixture
def dead_endpoint(large_model_name):
    """An OpenAI-compatible client pointed at a port where nothing listens."""
    from llama_index.llms.openai_like import OpenAILike

    return OpenAILike(
        model=large_model_name,
        api_base=f"http://127.0.0.1:{free_port()}/v1",
        api_key="x",
        is_chat_model=True,
        max_retries=0,
        timeout=5,
        max_tokens=TOKENS,
    )


@pytest.mark.parametrize("entry,target", ENTRY_TARGETS)
def test_every_entry_point_on_real_models(hybrid, entry, target):
    responses = call(hybrid, entry, EASY, hybrid_route=target)
    assert text_of(responses[-1]).strip()
    child = hybrid.small if target == "small" else hybrid.large
    for r in responses:
        meta = r.additional_kwargs["hybrid_router"]
        assert (meta["answered_by"], meta["model"], meta["fallback_reason"]) == (
            target,
            child.metadata.model_name,
            None,
        )


def test_the_router_splits_real_prompts_at_the_threshold(hybrid, default_router):
    easy, hard = default_router.score(EASY), default_router.score(HARD)
    assert easy != hard
    middle = (easy + hard) / 2
    with routing(quality_threshold=middle), record_routes() as routes:
        hybrid.complete(EASY)
        hybrid.complete(HARD)
    expected = ["small" if s >= middle else "large" for s in (easy, hard)]
    assert [r["answered_by"] for r in routes] == expected and sorted(expected) == ["large", "small"]
    assert [r["score"] for r in routes] == pytest.approx([easy, hard], abs=1e-5)


@pytest.mark.parametrize("entry", ["chat", "astream_chat"])
def test_a_dead_large_endpoint_falls_back_to_the_small_model(small, dead_endpoint, default_router, entry):
    llm = HybridLLM(small, dead_endpoint, router=default_router)
    responses = call(llm, entry, EASY, hybrid_route="large")
    meta = responses[-1].additional_kwargs["hybrid_router"]
    assert (meta["route"], meta["answered_by"], meta["fallback"]) == ("large", "small", True)
    assert "large model failed" in meta["fallback_reason"] and text_of(responses[-1]).strip()


def test_token_counts_and_costs_match_the_reported_usage(small, large, default_router):
    counter = TokenCountingHandler()
    llm = HybridLLM(small, large, router=default_router, callback_manager=CallbackManager([counter]))
    small_name, large_name = small.metadata.model_name, large.metadata.model_name
    prices = {small_name: (0.1, 0.2), large_name: (5.0, 15.0)}
    with track_costs(prices) as costs:
        answers = [
            llm.chat([ChatMessage(role="user", content=EASY)], hybrid_route="small"),
            llm.chat([ChatMessage(role="user", content=EASY)], hybrid_route="large"),
        ]
    assert len(counter.llm_token_counts) == 2  # one event per call, none from the wrapper
    small_usage = answers[0].raw["usage"]
    assert counter.llm_token_counts[0].prompt_token_count == small_usage["prompt_tokens"]
    assert counter.llm_token_counts[0].completion_token_count == small_usage["completion_tokens"]
    large_usage = answers[1].raw.usage
    assert counter.llm_token_counts[1].prompt_token_count == large_usage.prompt_tokens
    tracker = costs.tracker
    assert tracker.routes == {"small": 1, "large": 1}
    assert tracker.per_model[small_name].input_tokens == small_usage["prompt_tokens"]
    assert tracker.per_model[large_name].output_tokens == large_usage.completion_tokens
    assert sum(t.input_tokens + t.output_tokens for t in tracker.per_model.values()) == counter.total_llm_token_count
    assert 0 < tracker.total_cost < tracker.all_large_cost and tracker.savings > 0


def add(a: int, b: int) -> int:
    """Add two integers a and b."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers a and b."""
    return a * b


@pytest.fixture
def tool_capable_hybrid(openai_server, large_model_name, default_router):
    """Two function-calling OpenAI clients on the local server (its model decides whether it calls tools)."""
    return HybridLLM(
        server_client(openai_server, large_model_name, is_function_calling_model=True),
        server_client(openai_server, large_model_name, is_function_calling_model=True),
        router=default_router,
    )


def test_function_agent_on_real_models(tool_capable_hybrid):
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)],
        llm=tool_capable_hybrid,
        system_prompt="Use the tools to compute.",
    )

    async def go():
        with record_routes() as routes:
            output = await agent.run(user_msg="What is 3 times 4? Use the multiply tool.", max_iterations=3)
        return output, routes

    output, routes = asyncio.run(go())
    assert routes and len({r["answered_by"] for r in routes}) == 1  # the run stays on one model
    assert all(r["threshold_source"].startswith("pinned:") for r in routes[1:])
    if not output.tool_calls:
        pytest.skip(
            "the stand-in model (SmolLM2-135M) has no tool-calling chat template: it answered in text "
            f"({str(output.response.content)[:60]!r}); the agent ran end to end without a tool call"
        )
    assert any(c.tool_name in {"add", "multiply"} for c in output.tool_calls)


def test_react_agent_on_real_models(hybrid):
    """ReActAgent's text protocol works with any model; a run is routed once (here the router decides)."""
    agent = ReActAgent(tools=[FunctionTool.from_defaults(add)], llm=hybrid)

    async def go():
        with routing(quality_threshold=0.0), record_routes() as routes:
            output = await agent.run(user_msg="What is 2 + 3?", max_iterations=2)
        return output, routes

    output, routes = asyncio.run(go())
    assert str(output.response.content).strip()
    assert (
        routes and routes[0]["answered_by"] == "small" and routes[0]["threshold_source"] == "context:quality_threshold"
    )
    assert all(r["threshold_source"] == "pinned:context:quality_threshold" for r in routes[1:])


def test_a_chat_engine_session_sticks_to_the_large_model_on_real_models(small, large, default_router):
    """Turn 1 goes large (threshold 1); turn 2 would go small (threshold 0) but the memory holds a large answer."""
    from llama_index.core.chat_engine import SimpleChatEngine

    llm = HybridLLM(small, large, router=default_router, sticky_sessions=True)
    chat_engine = SimpleChatEngine.from_defaults(llm=llm)
    with record_routes() as routes:
        with routing(quality_threshold=1.0):
            chat_engine.chat(HARD)
        with routing(quality_threshold=0.0):
            chat_engine.chat(EASY)
        with routing(quality_threshold=0.0):
            SimpleChatEngine.from_defaults(llm=llm).chat(EASY)  # a new conversation starts free
    assert [r["answered_by"] for r in routes] == ["large", "large", "small"]
    assert routes[1]["threshold_source"] == "sticky:context:quality_threshold"

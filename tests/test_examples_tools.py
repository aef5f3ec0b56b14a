"""The agent examples' tool path (part 2 of examples/*_agent.py) offline: routed, a real tool call, one model per run.

The examples' offline tool callers are scripted (the shipped SmolLM2-135M cannot call tools); these tests keep the
path the examples show working through the real ``create_agent`` / ``FunctionAgent`` loops.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in ("langchain_models", "llamaindex_models", "scripted_tools"):
        sys.modules.pop(name, None)


def test_langchain_agent_tool_path(examples, default_router):
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_models import tool_calling_models

    from langchain_hybrid import HybridChatModel

    @tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    with tool_calling_models() as (small, large, what):
        assert "scripted" in what and "not language models" in what
        agent = create_agent(model=HybridChatModel(small=small, large=large, router=default_router), tools=[multiply])
        config = {"metadata": {"quality_threshold": 0.0}}
        state = agent.invoke({"messages": [("user", "What is 12 times 7? Use the multiply tool.")]}, config=config)
    ai = [m for m in state["messages"] if isinstance(m, AIMessage)]
    (result,) = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    assert ai[0].tool_calls[0]["args"] == {"a": 12, "b": 7} and result.content == "84"
    assert ai[-1].text == "The result is 84."
    routes = [m.response_metadata["hybrid_router"] for m in ai]
    assert {r["model"] for r in routes} == {"scripted-small"}
    assert routes[1]["threshold_source"] == "pinned:metadata:quality_threshold"


def test_llamaindex_agent_tool_path(examples, default_router):
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.tools import FunctionTool
    from llamaindex_models import tool_calling_models

    from hybrid_router import routing
    from hybrid_router.core.records import record_routes
    from llamaindex_hybrid import HybridLLM

    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    async def run(llm):
        agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=llm, streaming=False)
        with routing(route="large"), record_routes() as routes:
            output = await agent.run(user_msg="What is 2 + 3? Use the add tool.", max_iterations=3)
        return output, routes

    with tool_calling_models() as (small, large, _):
        output, routes = asyncio.run(run(HybridLLM(small, large, router=default_router)))
    assert [(c.tool_name, c.tool_kwargs, c.tool_output.raw_output) for c in output.tool_calls] == [
        ("add", {"a": 2, "b": 3}, 5)
    ]
    assert str(output.response.content) == "The result is 5."
    assert [r["model"] for r in routes] == ["scripted-large"] * 2

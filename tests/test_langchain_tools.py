"""Tools through ``HybridChatModel``: per-child binding, structured output, ToolMessage round trips, create_agent.

The two scripted children use different tool formats (OpenAI-style and Anthropic-style) and each rejects the
other's format, so a call only succeeds if the routed child received its own binding.
"""

from __future__ import annotations

import asyncio

import pytest
from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from lc_fakes import NO_NETWORK, ScriptedChatModel
from pydantic import BaseModel, Field

from hybrid_router import routing
from langchain_hybrid import HybridChatModel

pytestmark = NO_NETWORK


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class Weather(BaseModel):
    """A weather report."""

    city: str = Field(description="the city")
    degrees: int = Field(description="temperature in Celsius")


@pytest.fixture
def model(default_router) -> HybridChatModel:
    return HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small", tool_format="openai"),
        large=ScriptedChatModel(model_name="fake-large", tool_format="anthropic"),
        router=default_router,
    )


def merge(chunks):
    full = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    return full


@pytest.mark.parametrize("route", ["small", "large"])
def test_bind_tools_uses_the_routed_childs_own_format(model, route):
    bound = model.bind_tools([add], tool_choice="any")
    message = bound.invoke("add 3 and 4", hybrid_route=route)
    assert message.tool_calls == [
        {"name": "add", "args": {"a": 3, "b": 4}, "id": message.tool_calls[0]["id"], "type": "tool_call"}
    ]
    assert message.response_metadata["model_name"] == f"fake-{route}"
    child = model.small if route == "small" else model.large
    other = model.large if route == "small" else model.small
    sent = child.calls[-1]["kwargs"]
    if route == "small":
        assert sent["tools"][0]["type"] == "function" and sent["tool_choice"] == "required"
    else:
        assert "input_schema" in sent["tools"][0] and sent["tool_choice"] == {"type": "any"}
    assert not other.calls
    streamed = merge(bound.stream("add 3 and 4", hybrid_route=route))
    assert streamed.tool_calls[0]["args"] == {"a": 3, "b": 4}
    assert streamed.response_metadata["model_name"] == f"fake-{route}"


def test_each_child_rejects_the_others_format():
    small = ScriptedChatModel(model_name="s", tool_format="openai")
    large = ScriptedChatModel(model_name="l", tool_format="anthropic")
    anthropic_tools = large.bind_tools([add]).kwargs["tools"]
    with pytest.raises(ValueError, match="OpenAI-format"):
        small.invoke("add 1 and 2", tools=anthropic_tools)


def test_bind_tools_fails_clearly_for_a_child_without_bind_kwargs(model):
    class Odd(ScriptedChatModel):
        def bind_tools(self, tools, **kwargs):
            return super().bind_tools(tools, **kwargs) | (lambda m: m)

    odd = HybridChatModel(small=Odd(model_name="odd"), large=model.large, router=model.router)
    with pytest.raises(TypeError, match="small model's bind_tools"):
        odd.bind_tools([add])


@pytest.mark.parametrize("route", ["small", "large"])
def test_structured_output_on_both_routes(model, route):
    structured = model.with_structured_output(Weather)
    result = structured.invoke("Weather in 'Oslo' is 21 degrees", hybrid_route=route)
    assert result == Weather(city="Oslo", degrees=21)
    assert merge(structured.stream("Weather in 'Oslo' is 21 degrees", hybrid_route=route)) is not None
    raw = model.with_structured_output(Weather, include_raw=True).invoke(
        "Weather in 'Oslo' is 21 degrees", config={"metadata": {"hybrid_route": route}}
    )
    assert raw["parsed"] == Weather(city="Oslo", degrees=21)
    assert raw["raw"].response_metadata["model_name"] == f"fake-{route}"


def test_tool_message_round_trip(model):
    bound = model.bind_tools([add])
    first = bound.invoke("add 3 and 4", hybrid_route="large")
    call = first.tool_calls[0]
    history = [HumanMessage("add 3 and 4"), first, ToolMessage(str(add.invoke(call["args"])), tool_call_id=call["id"])]
    for route in ("small", "large"):  # the answer may come from the other model: LangChain messages are neutral
        answer = bound.invoke(history, hybrid_route=route)
        assert answer.text == "The tool said: 7"
        assert answer.response_metadata["model_name"] == f"fake-{route}"


def test_agent_runs_with_hybrid_model_and_routes_every_step(model, default_router):
    model.pin_runs = False  # routes every step on its own (by default an agent run keeps its first model)
    agent = create_agent(model=model, tools=[add])
    question = "Please add 3 and 4."
    threshold = round(default_router.score(question) - 0.01, 4)
    state = agent.invoke({"messages": [HumanMessage(question)]}, config={"metadata": {"quality_threshold": threshold}})
    ai = [m for m in state["messages"] if isinstance(m, AIMessage)]
    assert ai[0].tool_calls[0]["name"] == "add"
    assert state["messages"][-1].text == "The tool said: 7"
    for message in ai:
        routed = message.response_metadata["hybrid_router"]
        assert routed["threshold_source"] == "metadata:quality_threshold"
        assert routed["threshold"] == threshold
    assert ai[0].response_metadata["model_name"] == "fake-small"


def test_agent_streams_async_with_context_threshold_and_structured_response(model):
    agent = create_agent(model=model, tools=[add], response_format=ToolStrategy(Weather))

    async def run():
        with routing(route="large"):
            return [
                chunk
                async for chunk in agent.astream(
                    {"messages": [HumanMessage("Add 20 and 1, then report the weather in 'Oslo'")]},
                    stream_mode="values",
                )
            ]

    states = asyncio.run(run())
    final = states[-1]
    assert final["structured_response"] == Weather(city="Oslo", degrees=20)
    ai = [m for m in final["messages"] if isinstance(m, AIMessage)]
    assert ai and all(m.response_metadata["model_name"] == "fake-large" for m in ai)
    assert all(m.response_metadata["hybrid_router"]["threshold_source"] == "context:route" for m in ai)


def test_bound_tools_still_read_configurable_options(model):
    bound = model.bind_tools([add])
    message = bound.invoke("add 1 and 2", config={"configurable": {"hybrid_route": "large"}})
    assert message.response_metadata["model_name"] == "fake-large"
    assert message.response_metadata["hybrid_router"]["threshold_source"] == "configurable:route"
    assert "input_schema" in model.large.calls[-1]["kwargs"]["tools"][0]

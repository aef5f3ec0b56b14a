"""Tool calling through HybridLLM: child chosen before formatting, parsing by the child that answered, agents.

Children are llama-index-core's ``MockFunctionCallingLLM`` (it calls every tool it is given, then answers
"Tool calls complete." once it sees the results); the router is the real shipped one.
"""

from __future__ import annotations

import asyncio
from typing import Any, List

import pytest
from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, LLMMetadata
from llama_index.core.llms import MockFunctionCallingLLM, MockLLM
from llama_index.core.tools import FunctionTool

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM

TOOL_ENTRY_POINTS = ["chat_with_tools", "achat_with_tools", "stream_chat_with_tools", "astream_chat_with_tools"]


def add(a: int = 1, b: int = 2) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int = 3, b: int = 4) -> int:
    """Multiply two integers."""
    return a * b


TOOLS = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)]


class SpyToolLLM(MockFunctionCallingLLM):
    """MockFunctionCallingLLM with a name that logs tool formatting, parsing and calls (and can be down)."""

    name: str = "spy"
    down: bool = False
    log: List[str] = []

    def __init__(self, name: str, down: bool = False, **kwargs: Any) -> None:
        super().__init__(is_chat_model=True, **kwargs)
        self.name, self.down, self.log = name, down, []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_function_calling_model=True, is_chat_model=True)

    def _prepare_chat_with_tools(self, tools, **kwargs: Any) -> dict:
        self.log.append("prepare")
        if self.down:
            raise ConnectionError(f"{self.name} is down")
        return super()._prepare_chat_with_tools(tools, **kwargs)

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = False, **kwargs: Any):
        self.log.append("parse")
        return super().get_tool_calls_from_response(response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)


@pytest.fixture
def spies():
    return SpyToolLLM("tiny"), SpyToolLLM("huge")


@pytest.fixture
def hybrid(spies, default_router):
    return HybridLLM(*spies, router=default_router)


def run_tools(llm, entry: str, user_msg: Any = "Add and multiply, please.", **kwargs: Any) -> ChatResponse:
    """One tool call on ``entry``; the (last) response."""
    if entry.startswith("a"):

        async def go():
            result = await getattr(llm, entry)(TOOLS, user_msg=user_msg, **kwargs)
            if entry.startswith("astream"):
                return [chunk async for chunk in result][-1]
            return result

        return asyncio.run(go())
    result = getattr(llm, entry)(TOOLS, user_msg=user_msg, **kwargs)
    return list(result)[-1] if entry.startswith("stream") else result


@pytest.mark.parametrize("entry", TOOL_ENTRY_POINTS)
@pytest.mark.parametrize("target", ["small", "large"])
def test_the_child_is_chosen_before_tool_formatting_and_parses_its_own_answer(hybrid, spies, entry, target):
    chosen, other = spies if target == "small" else spies[::-1]
    response = run_tools(hybrid, entry, hybrid_route=target)
    assert chosen.log == ["prepare"] and other.log == []
    calls = hybrid.get_tool_calls_from_response(response)
    assert chosen.log == ["prepare", "parse"] and other.log == []
    assert [(c.tool_name, c.tool_kwargs) for c in calls] == [("add", {"a": 1, "b": 2}), ("multiply", {"a": 3, "b": 4})]
    assert response.additional_kwargs["hybrid_router"]["answered_by"] == target


def test_tool_calls_fall_back_when_the_chosen_child_fails(default_router):
    small, large = SpyToolLLM("tiny", down=True), SpyToolLLM("huge")
    llm = HybridLLM(small, large, router=default_router)
    response = run_tools(llm, "astream_chat_with_tools", hybrid_route="small")
    meta = response.additional_kwargs["hybrid_router"]
    assert (meta["route"], meta["answered_by"], meta["fallback"]) == ("small", "large", True)
    assert [c.tool_name for c in llm.get_tool_calls_from_response(response)] == ["add", "multiply"]
    assert small.log == ["prepare"] and large.log == ["prepare", "parse"]


def test_parsing_a_foreign_response(hybrid):
    foreign = ChatResponse(message=ChatMessage(role="assistant", content="hi"))
    with pytest.raises(ValueError, match="not produced by a HybridLLM"):
        hybrid.get_tool_calls_from_response(foreign)
    assert hybrid.get_tool_calls_from_response(foreign, error_on_no_tool_call=False) == []


@pytest.mark.parametrize("entry", TOOL_ENTRY_POINTS)
def test_tools_need_two_function_calling_children(default_router, entry):
    small = SpyToolLLM("tiny")
    llm = HybridLLM(small, MockLLM(), router=default_router)
    with pytest.raises(ValueError, match="not one: large"):
        run_tools(llm, entry)
    assert small.log == []


def test_predict_and_call_and_two_step_preparation(hybrid, spies):
    output = hybrid.predict_and_call([TOOLS[0]], user_msg="Add.", hybrid_route="large")
    assert output.response == "3" and spies[1].log == ["prepare", "parse"] and spies[0].log == []
    prepared = hybrid._prepare_chat_with_tools(TOOLS, user_msg="Add and multiply.", hybrid_route="small")
    assert prepared["hybrid_route"] == "small" and spies[0].log == ["prepare"]
    response = hybrid.chat(**prepared)
    assert response.additional_kwargs["hybrid_router"]["answered_by"] == "small"
    assert len(hybrid.get_tool_calls_from_response(response)) == 2


# ---------------------------------------------------------------- agents
async def run_agent(agent, question: str = "What are 1+2 and 3*4?"):
    with record_routes() as routes:
        output = await agent.run(user_msg=question)
    return output, routes


@pytest.mark.parametrize("streaming", [True, False])
def test_function_agent_does_a_tool_round_trip_on_one_child(hybrid, spies, streaming):
    agent = FunctionAgent(tools=TOOLS, llm=hybrid, streaming=streaming)
    output, routes = asyncio.run(run_agent(agent))
    assert [(c.tool_name, c.tool_output.raw_output) for c in output.tool_calls] == [("add", 3), ("multiply", 12)]
    assert str(output.response.content) == "Tool calls complete."
    assert len(routes) == 2 and routes[0]["answered_by"] == routes[1]["answered_by"]
    assert not routes[0]["threshold_source"].startswith("pinned:")
    assert routes[1]["threshold_source"] == "pinned:" + routes[0]["threshold_source"]
    assert routes[1]["score"] == routes[0]["score"]
    used, unused = spies if routes[0]["answered_by"] == "small" else spies[::-1]
    assert used.log.count("prepare") == 2 and unused.log == []


def test_each_agent_run_is_pinned_on_its_own_and_the_context_reaches_the_workflow(hybrid):
    agent = FunctionAgent(tools=TOOLS, llm=hybrid)

    async def two_runs():
        with routing(route="small"):
            first = await run_agent(agent)
        with routing(route="large"):
            second = await run_agent(agent)
        return first[1], second[1]

    first, second = asyncio.run(two_runs())
    assert [r["answered_by"] for r in first] == ["small", "small"]
    assert [r["answered_by"] for r in second] == ["large", "large"]
    assert [r["threshold_source"] for r in second] == ["context:route", "pinned:context:route"]


def test_pinning_can_be_turned_off(spies, default_router):
    agent = FunctionAgent(tools=TOOLS, llm=HybridLLM(*spies, router=default_router, pin_runs=False))
    _, routes = asyncio.run(run_agent(agent))
    assert [r["threshold_source"] for r in routes] == ["default:quality_threshold"] * 2


def test_a_run_pins_the_model_that_answered_after_a_fallback(default_router):
    small, large = SpyToolLLM("tiny", down=True), SpyToolLLM("huge")
    agent = FunctionAgent(tools=TOOLS, llm=HybridLLM(small, large, router=default_router))

    async def go():
        with routing(route="small"):
            return await run_agent(agent)

    output, routes = asyncio.run(go())
    assert len(output.tool_calls) == 2
    assert [(r["route"], r["answered_by"], r["fallback"]) for r in routes] == [
        ("small", "large", True),
        ("large", "large", False),
    ]
    assert small.log == ["prepare"]  # the second step went straight to the pinned large model


REACT_ACTION = (
    'Thought: I need to use a tool to help me answer the question.\nAction: add\nAction Input: {"a": 1, "b": 2}'
)
REACT_ANSWER = "Thought: I can answer without using any more tools.\nAnswer: 1+2 is 3."


def react_script(messages, **kwargs: Any) -> ChatMessage:
    """A ReAct-speaking model: call ``add`` once, then answer."""
    seen_observation = any((m.content or "").startswith("Observation:") for m in messages[1:])
    return ChatMessage(role="assistant", content=REACT_ANSWER if seen_observation else REACT_ACTION)


@pytest.mark.parametrize("streaming", [True, False])
def test_react_agent_runs_on_hybrid_llm(default_router, streaming):
    small = MockFunctionCallingLLM(response_generator=react_script, is_chat_model=True)
    large = MockFunctionCallingLLM(response_generator=react_script, is_chat_model=True)
    agent = ReActAgent(tools=TOOLS, llm=HybridLLM(small, large, router=default_router), streaming=streaming)
    output, routes = asyncio.run(run_agent(agent, "What is 1+2?"))
    assert [(c.tool_name, c.tool_output.raw_output) for c in output.tool_calls] == [("add", 3)]
    assert "1+2 is 3" in str(output.response.content)
    assert len(routes) == 2 and routes[1]["threshold_source"].startswith("pinned:")
    assert routes[0]["answered_by"] == routes[1]["answered_by"]


@pytest.mark.parametrize("entry", TOOL_ENTRY_POINTS)
def test_a_tool_call_without_any_message_is_rejected_before_any_call(hybrid, spies, entry):
    with pytest.raises(ValueError, match="empty"):
        run_tools(hybrid, entry, user_msg=None, chat_history=[])
    assert spies[0].log == spies[1].log == []


def test_route_pins_keep_the_first_answer_and_forget_the_oldest_runs():
    from hybrid_router import Answered, RouteDecision
    from hybrid_router.core.pinning import RoutePins

    pins = RoutePins(max_runs=2)
    decision = RouteDecision("small", 0.8, 0.5, "context:quality_threshold", 0.5)
    fell_back = pins.pin("run-1", Answered(decision, "large", "small model failed"))
    assert (fell_back.target, fell_back.score, fell_back.threshold_source) == (
        "large",
        0.8,
        "pinned:context:quality_threshold",
    )
    assert pins.pin("run-1", Answered(decision, "small")) is fell_back and pins.get("run-1") is fell_back
    pins.pin("run-2", Answered(decision, "small"))
    pins.pin("run-3", Answered(decision, "small"))
    assert pins.get("run-1") is None and len(pins) == 2
    assert pins.pin(None, Answered(decision, "small")) is None and pins.get(None) is None
    with pytest.raises(ValueError):
        RoutePins(max_runs=0)


def test_route_pins_keep_the_cascade_and_an_escalation_repins_the_run_large():
    from hybrid_router import Answered, RouteDecision
    from hybrid_router.core.pinning import RoutePins

    pins = RoutePins()
    decision = RouteDecision("small", 0.8, 0.5, "default:max_quality_drop", 0.2, "cascade", 0.6)
    small = pins.pin("run-1", Answered(decision, "small", verifier_score=0.9))
    assert (small.target, small.strategy, small.verify_threshold) == ("small", "cascade", 0.6) and small.verifies
    escalated = Answered(small, "large", verifier_score=0.1, escalation_reason="verifier score 0.1 < 0.6")
    large = pins.pin("run-1", escalated)
    assert (large.target, large.threshold_source, large.verifies) == ("large", "pinned:default:max_quality_drop", False)
    assert pins.pin("run-1", Answered(large, "small", "large model failed")) is large  # a fallback does not re-pin

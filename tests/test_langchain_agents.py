"""Agents: ``HybridDecisionModel`` as the classifier of LangChain's ``ModelRouterMiddleware``, and
``HybridChatModel`` keeping one model per agent run (``create_agent``, LangGraph's prebuilt ReAct agent).

The scripted children call tools in different formats (OpenAI-style small, Anthropic-style large) and each rejects
the other's format, so a run only succeeds if every call reached the chosen child with its own binding.
"""

from __future__ import annotations

import asyncio
import warnings

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import ModelChoice, ModelRouterMiddleware
from langchain_core.decisions import Choice, Noul, Score
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from lc_fakes import NO_NETWORK, ScriptedChatModel

from hybrid_router import routing
from langchain_hybrid import HybridChatModel, HybridDecisionModel
from langchain_hybrid.decisions import small_probability

pytestmark = NO_NETWORK

QUESTION = "Please add 3 and 4."
ROUTE = {"route": Choice(instructions="Which model?", criteria={"small": "easy", "large": "hard"})}
GOOD_ENOUGH = {"ok": Noul(instructions="Is the small model good enough?")}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def children() -> tuple[ScriptedChatModel, ScriptedChatModel]:
    return (
        ScriptedChatModel(model_name="fake-small", tool_format="openai"),
        ScriptedChatModel(model_name="fake-large", tool_format="anthropic"),
    )


def ai_messages(state) -> list[AIMessage]:
    return [m for m in state["messages"] if isinstance(m, AIMessage)]


# ---------------------------------------------------------------------- HybridDecisionModel
@pytest.mark.parametrize("offset", [-0.01, 0.01])
def test_choice_follows_the_router_with_agreeing_probabilities(default_router, offset):
    score = default_router.score(QUESTION)
    threshold = round(score + offset, 4)
    classifier = HybridDecisionModel(router=default_router, quality_threshold=threshold)
    response = classifier.invoke({"state": QUESTION, "questions": {**ROUTE, **GOOD_ENOUGH}})
    answer = response.choices["route"]
    expected = "small" if score >= threshold else "large"
    assert answer.choice == expected
    assert answer.probabilities[expected] >= 0.5 and answer.confidence == answer.probabilities[expected]
    assert answer.probabilities["small"] + answer.probabilities["large"] == pytest.approx(1.0)
    assert answer.probabilities["small"] == pytest.approx(small_probability(classifier.decide(QUESTION)))
    assert response.nouls["ok"].noul == pytest.approx(score)
    assert response.model == "hybrid-router"


def test_small_probability_is_monotone_and_half_at_the_threshold(default_router):
    from hybrid_router import RouteDecision

    def p(score: float, threshold: float) -> float:
        return small_probability(RouteDecision("small" if score >= threshold else "large", score, threshold, "x"))

    assert p(0.6, 0.6) == 0.5 and p(1.0, 0.6) == 1.0 and p(0.0, 0.6) == 0.0
    assert p(0.3, 0.6) == pytest.approx(0.25) and p(0.8, 0.6) == pytest.approx(0.75)
    assert p(0.2, 0.0) == pytest.approx(0.6) and p(1.0, 1.0) == 1.0 and p(0.99, 1.0) < 0.5
    assert small_probability(RouteDecision("large", None, None, "kwarg:route", "large")) == 0.0


def test_options_come_from_metadata_configurable_context_and_fields(default_router):
    score = default_router.score(QUESTION)
    low, high = round(score - 0.01, 4), round(score + 0.01, 4)
    classifier = HybridDecisionModel(router=default_router, quality_threshold=high)
    request = {"state": QUESTION, "questions": ROUTE}
    assert classifier.invoke(request).choices["route"].choice == "large"
    assert classifier.decide(QUESTION).threshold_source == "default:quality_threshold"
    assert (
        classifier.invoke(request, config={"metadata": {"quality_threshold": low}}).choices["route"].choice == "small"
    )
    assert classifier.invoke(request, {"configurable": {"quality_threshold": low}}).choices["route"].choice == "small"
    with routing(quality_threshold=low):
        assert classifier.invoke(request).choices["route"].choice == "small"
        forced = classifier.invoke(request, config={"metadata": {"hybrid_route": "large"}}).choices["route"]
    assert forced.choice == "large" and forced.probabilities == {"small": 0.0, "large": 1.0}
    # a cascade strategy in scope is the chat model's business: the classifier still just chooses
    with routing(strategy="cascade", quality_threshold=low):
        assert classifier.invoke(request).choices["route"].choice == "small"
    answer = asyncio.run(classifier.ainvoke(request, config={"metadata": {"quality_threshold": low}}))
    assert answer.choices["route"].choice == "small"


def test_state_forms_and_custom_labels(default_router):
    classifier = HybridDecisionModel(router=default_router, small_choice="fast", large_choice="powerful")
    question = {"q": Choice(instructions="?", criteria={"fast": "cheap", "powerful": "strong"})}
    score = default_router.score(QUESTION)
    for state in (QUESTION, HumanMessage(QUESTION), [HumanMessage(QUESTION)], {"messages": [HumanMessage(QUESTION)]}):
        response = classifier.invoke({"state": state, "questions": {**question, **GOOD_ENOUGH}})
        assert response.choices["q"].choice in ("fast", "powerful")
        assert response.nouls["ok"].noul == pytest.approx(score)


def test_unanswerable_questions_raise(default_router):
    classifier = HybridDecisionModel(router=default_router)
    other = {"q": Choice(instructions="?", criteria={"fast": "a", "powerful": "b"})}
    with pytest.raises(ValueError, match="small_choice="):
        classifier.invoke({"state": QUESTION, "questions": other})
    with pytest.raises(ValueError, match="Choice and Noul"):
        classifier.invoke({"state": QUESTION, "questions": {"s": Score(instructions="?", criteria=["a", "b"])}})
    with pytest.raises(ValueError):
        HybridDecisionModel(router=default_router, quality_threshold=1.5)
    with pytest.raises(ValueError, match="set only one"):
        HybridDecisionModel(router=default_router, quality_threshold=0.5, large_share=0.3)
    with pytest.raises(ValueError, match="must differ"):
        HybridDecisionModel(router=default_router, small_choice="x", large_choice="x")


# ---------------------------------------------------------------------- ModelRouterMiddleware
def router_agent(default_router, small, large, **classifier_fields):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ModelRouterMiddleware is beta
        middleware = ModelRouterMiddleware(
            choices={
                "small": ModelChoice(model=small, criteria="Simple, well-scoped tasks."),
                "large": ModelChoice(model=large, criteria="Hard tasks."),
            },
            instructions="Choose the cheapest model that answers well.",
            classifier=HybridDecisionModel(router=default_router, **classifier_fields),
        )
    return create_agent(model=small, tools=[add], middleware=[middleware])


@pytest.mark.parametrize("offset", [-0.01, 0.01])
def test_model_router_middleware_uses_the_hybrid_choice_for_every_call(default_router, offset):
    small, large = children()
    score = default_router.score(QUESTION)
    agent = router_agent(default_router, small, large, quality_threshold=round(score + offset, 4))
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    chosen = "small" if offset < 0 else "large"
    assert state["model_route"].choice == chosen
    assert state["model_route"].probabilities[chosen] >= 0.5
    ai = ai_messages(state)
    assert ai[0].tool_calls[0]["name"] == "add" and state["messages"][-1].text == "The tool said: 7"
    assert {m.response_metadata["model_name"] for m in ai} == {f"fake-{chosen}"}
    used, unused = (small, large) if chosen == "small" else (large, small)
    assert len(used.calls) == 2 and not unused.calls


def test_model_router_middleware_reads_the_runs_metadata_async(default_router):
    small, large = children()
    agent = router_agent(default_router, small, large, quality_threshold=1.0)  # the field alone: always large
    low = round(default_router.score(QUESTION) - 0.01, 4)

    async def run():
        return await agent.ainvoke(
            {"messages": [HumanMessage(QUESTION)]}, config={"metadata": {"quality_threshold": low}}
        )

    state = asyncio.run(run())
    assert state["model_route"].choice == "small"
    assert {m.response_metadata["model_name"] for m in ai_messages(state)} == {"fake-small"}


# ---------------------------------------------------------------------- HybridChatModel: one model per run
def per_step_scores(model: HybridChatModel, threshold: float) -> list[tuple[str, float]]:
    model.pin_runs = False
    state = create_agent(model=model, tools=[add]).invoke(
        {"messages": [HumanMessage(QUESTION)]}, config={"metadata": {"quality_threshold": threshold}}
    )
    model.pin_runs = True
    return [
        (m.response_metadata["hybrid_router"]["route"], m.response_metadata["hybrid_router"]["score"])
        for m in ai_messages(state)
    ]


@pytest.fixture
def switching(default_router):
    """A model and a threshold at which routing each step on its own switches models within the run."""
    model = HybridChatModel(small=children()[0], large=children()[1], router=default_router)
    (_, first), (_, second) = per_step_scores(model, 0.5)
    assert first != second  # the tool call and its result change what the router reads
    threshold = round((first + second) / 2, 6)
    routes = [route for route, _ in per_step_scores(model, threshold)]
    assert routes[0] != routes[1]  # without pinning the run switches models midway
    return model, threshold, routes[0]


def test_create_agent_keeps_the_first_model_for_the_whole_run(switching):
    model, threshold, first = switching
    state = create_agent(model=model, tools=[add]).invoke(
        {"messages": [HumanMessage(QUESTION)]}, config={"metadata": {"quality_threshold": threshold}}
    )
    routed = [m.response_metadata["hybrid_router"] for m in ai_messages(state)]
    assert [r["answered_by"] for r in routed] == [first, first]
    assert routed[0]["threshold_source"] == "metadata:quality_threshold"
    assert routed[1]["threshold_source"] == "pinned:metadata:quality_threshold"
    assert routed[1]["score"] == routed[0]["score"] and routed[1]["threshold"] == threshold
    assert state["messages"][-1].text == "The tool said: 7"


def test_a_thread_pins_each_run_not_the_conversation(switching):
    model, threshold, first = switching
    agent = create_agent(model=model, tools=[add], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}, "metadata": {"quality_threshold": threshold}}

    async def run():
        one = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, config)
        two = await agent.ainvoke({"messages": [HumanMessage("Now add 5 and 6.")]}, config)
        return one, two

    one, two = asyncio.run(run())
    first_run = [m.response_metadata["hybrid_router"] for m in ai_messages(one)]
    second_run = [m.response_metadata["hybrid_router"] for m in ai_messages(two)][len(first_run) :]
    assert [r["answered_by"] for r in first_run] == [first, first]
    assert not second_run[0]["threshold_source"].startswith("pinned:")  # a new turn is routed afresh
    assert second_run[1]["threshold_source"].startswith("pinned:")
    assert second_run[1]["answered_by"] == second_run[0]["answered_by"]


def test_langgraph_prebuilt_react_agent_streams_one_model_per_run(switching):
    model, threshold, first = switching
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # create_react_agent is deprecated in favour of create_agent
        from langgraph.prebuilt import create_react_agent

        agent = create_react_agent(model, [add])
    chunks = list(
        agent.stream(
            {"messages": [HumanMessage(QUESTION)]},
            config={"metadata": {"quality_threshold": threshold}},
            stream_mode="values",
        )
    )
    routed = [m.response_metadata["hybrid_router"] for m in ai_messages(chunks[-1])]
    assert [r["answered_by"] for r in routed] == [first, first]
    assert routed[1]["threshold_source"].startswith("pinned:")


def test_a_call_kwarg_or_forced_route_still_decides_its_own_call(default_router):
    small, large = children()
    model = HybridChatModel(small=small, large=large, router=default_router, quality_threshold=0.0)
    seen = []

    def node(state: MessagesState):
        messages = state["messages"]
        seen.append(model.invoke(messages))  # pins the run (threshold 0: small)
        seen.append(model.invoke(messages, hybrid_route="large"))  # a kwarg decides its own call
        seen.append(model.invoke(messages, config={"metadata": {"quality_threshold": 1.0}}))  # pinned
        seen.append(model.invoke(messages, config={"metadata": {"hybrid_route": "large"}}))  # forced: own call
        return {"messages": [seen[-1]]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", node)
    graph.add_edge(START, "model")
    graph.compile().invoke({"messages": [HumanMessage(QUESTION)]})
    routed = [m.response_metadata["hybrid_router"] for m in seen]
    assert [r["answered_by"] for r in routed] == ["small", "large", "small", "large"]
    assert [r["threshold_source"] for r in routed] == [
        "default:quality_threshold",
        "kwarg:route",
        "pinned:default:quality_threshold",
        "metadata:route",
    ]
    # outside an agent run (no LangGraph run, no message id) nothing is pinned
    plain = [
        model.invoke([HumanMessage(QUESTION, id="h1")], config={"metadata": {"quality_threshold": t}})
        for t in (0.0, 1.0)
    ]
    assert [m.response_metadata["hybrid_router"]["answered_by"] for m in plain] == ["small", "large"]


def test_the_pinned_child_gets_the_tool_results(switching):
    model, threshold, first = switching
    state = create_agent(model=model, tools=[add]).invoke(
        {"messages": [HumanMessage(QUESTION)]}, config={"metadata": {"quality_threshold": threshold}}
    )
    child = model.small if first == "small" else model.large
    tool_results = [m for m in child.calls[-1]["messages"] if isinstance(m, ToolMessage)]
    assert tool_results and tool_results[0].content == "7"
    assert state["messages"][-1].response_metadata["model_name"] == f"fake-{first}"

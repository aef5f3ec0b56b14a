"""A tool-calling agent (``langchain.agents.create_agent``) whose model is a HybridChatModel.

    python examples/langchain_agent.py

Every model call of the agent is routed (all calls of one agent run stay on the model its first call chose), with
the threshold from the run's config metadata (or a ``hybrid_router.routing()`` block); each AIMessage in the agent
state records where it went. Tools are bound on both models, each in its own format.

Plainly: the shipped SmolLM2-135M cannot call tools (it has no tool-calling chat template and 135M parameters), so
in part 1, offline, the agent answers in text without a tool call and its arithmetic may be wrong; that part shows
the routing. Part 2 runs the same agent over two models that can call tools (OpenAI ``gpt-4o-mini`` / ``gpt-4o``
with ``OPENAI_API_KEY``; offline, two scripted tool callers that are clearly not language models) to show the tool
path: route, tool call, tool result, answer, on one model per run.
"""

from __future__ import annotations

import time

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_models import example_models, tool_calling_models

from hybrid_router import routing
from langchain_hybrid import HybridChatModel


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


RUNS = [
    ("What is 2 + 3? Use the add tool.", {"metadata": {"quality_threshold": 0.2}}),  # lenient: the router picks small
    ("What is 12 times 7? Use the multiply tool.", {"metadata": {"hybrid_route": "large"}}),  # forced large
]


def show(agent, question: str, config: dict) -> None:
    """Run the agent once and print every model call (where it went, its tool calls) and tool result."""
    state = agent.invoke({"messages": [("user", question)]}, config=config)
    print(f"\nQ: {question}   [config {config}]")
    for message in state["messages"][1:]:
        if isinstance(message, AIMessage):
            route = message.response_metadata["hybrid_router"]
            calls = [f"{c['name']}({c['args']})" for c in message.tool_calls]
            print(
                f"   model call -> {route['answered_by']:5s} {route['model']} ({route['threshold_source']})"
                f"{'  tool calls: ' + ', '.join(calls) if calls else '  no tool call'}"
            )
        elif isinstance(message, ToolMessage):
            print(f"   tool {message.name} -> {message.content}")
    print(f"A: {state['messages'][-1].text.strip()}")


def main() -> None:
    started = time.perf_counter()
    print("1. The example models (offline: SmolLM2-135M twice, which cannot call tools: expect text answers)")
    with example_models(max_tokens=48) as (small, large):
        agent = create_agent(
            model=HybridChatModel(small=small, large=large),
            tools=[add, multiply],
            system_prompt="You are a calculator assistant. Answer briefly.",
        )
        for question, config in RUNS:
            show(agent, question, config)

        with routing(route="small"):  # a context block works for agents too (also async, also streaming)
            steps = list(agent.stream({"messages": [("user", "Add 4 and 5.")]}, stream_mode="updates"))
        print(
            f"\nStreamed run inside routing(route='small'): {len(steps)} step(s), last answer by "
            f"{steps[-1]['model']['messages'][-1].response_metadata['hybrid_router']['model']}"
        )

    with tool_calling_models() as (small, large, what):
        print(f"\n2. The tool path, with models that can call tools: {what}")
        agent = create_agent(model=HybridChatModel(small=small, large=large), tools=[add, multiply])
        for question, config in RUNS:
            show(agent, question, config)
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

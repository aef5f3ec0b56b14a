"""A tool-calling agent (``langchain.agents.create_agent``) whose model is a HybridChatModel.

    python examples/langchain_agent.py

Every model call of the agent is routed on its own, with the threshold from the run's config metadata (or a
``hybrid_router.routing()`` block); each AIMessage in the agent state records where it went. Tools are bound on
both models, each in its own format. With ``OPENAI_API_KEY`` set the large model (OpenAI) calls the tools; the
shipped SmolLM2-135M has no tool-calling chat template, so offline the agent answers without tools: the point here is
the routing, not the tiny model's maths.
"""

from __future__ import annotations

import time

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_models import example_models

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
    ("What is 2 + 3?", {"metadata": {"quality_threshold": 0.2}}),  # lenient: the router picks the small model
    ("What is 12 times 7? Use the multiply tool.", {"metadata": {"hybrid_route": "large"}}),  # forced large
]


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=48) as (small, large):
        agent = create_agent(
            model=HybridChatModel(small=small, large=large),
            tools=[add, multiply],
            system_prompt="You are a calculator assistant. Answer briefly.",
        )
        for question, config in RUNS:
            state = agent.invoke({"messages": [("user", question)]}, config=config)
            print(f"\nQ: {question}   [config {config}]")
            for message in state["messages"][1:]:
                if isinstance(message, AIMessage):
                    route = message.response_metadata["hybrid_router"]
                    calls = [f"{c['name']}({c['args']})" for c in message.tool_calls]
                    print(
                        f"   model call -> {route['answered_by']:5s} ({route['threshold_source']})"
                        f"{'  tool calls: ' + ', '.join(calls) if calls else ''}"
                    )
                elif isinstance(message, ToolMessage):
                    print(f"   tool {message.name} -> {message.content}")
            print(f"A: {state['messages'][-1].text.strip()}")

        with routing(route="small"):  # a context block works for agents too (also async, also streaming)
            steps = list(agent.stream({"messages": [("user", "Add 4 and 5.")]}, stream_mode="updates"))
        print(
            f"\nStreamed run inside routing(route='small'): {len(steps)} step(s), last answer by "
            f"{steps[-1]['model']['messages'][-1].response_metadata['model_name']}"
        )
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

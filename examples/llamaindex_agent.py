"""An agent on HybridLLM: each agent run is routed once and every call of the run stays on that model.

    python examples/llamaindex_agent.py

The router scores the run's first call (the user's question); later calls of the same run (after tool results)
reuse that model, so a run never switches models midway (``HybridLLM(..., pin_runs=False)`` routes every call on
its own).

Plainly: the shipped SmolLM2-135M cannot call tools (no tool-calling chat template, 135M parameters). Part 1 uses
it with ``ReActAgent``, whose text protocol works with any model; it usually answers without a tool and its
arithmetic may be wrong: that part shows the routing. Part 2 runs ``FunctionAgent`` over two function-calling models
(OpenAI ``gpt-4o-mini`` / ``gpt-4o`` with ``OPENAI_API_KEY``; offline, two scripted tool callers that are clearly not
language models) to show the tool path: route, tool call, tool result, answer, on one model per run.
"""

from __future__ import annotations

import asyncio
import time

from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.tools import FunctionTool
from llamaindex_models import example_models, tool_calling_models

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


RUNS = [
    ("What is 2 + 3? Use the add tool.", {"quality_threshold": 0.2}),  # lenient: the router picks the small model
    ("What is 12 times 7? Use the multiply tool.", {"route": "large"}),  # forced to the large model
]


async def run_agents(llm: HybridLLM) -> None:
    tools = [FunctionTool.from_defaults(add), FunctionTool.from_defaults(multiply)]
    agent_class = FunctionAgent if llm.metadata.is_function_calling_model else ReActAgent
    agent = agent_class(tools=tools, llm=llm, streaming=False)
    print(f"Agent: {agent_class.__name__}")
    for question, options in RUNS:
        with routing(**options), record_routes() as routes:
            output = await agent.run(user_msg=question, max_iterations=3)
        calls = [f"{c.tool_name}({c.tool_kwargs}) = {c.tool_output.raw_output}" for c in output.tool_calls]
        print(f"\nQ: {question}   [routing {options}]")
        for i, route in enumerate(routes, 1):
            print(f"   call {i}: {route['answered_by']:5s} {route['model']}  source={route['threshold_source']}")
        print(f"   tools: {calls or 'none'}\nA: {str(output.response.content).strip()}")


def main() -> None:
    started = time.perf_counter()
    print("1. The example models (offline: SmolLM2-135M twice, which cannot call tools: expect text answers)")
    with example_models(max_tokens=48) as (small, large):
        asyncio.run(run_agents(HybridLLM(small, large)))
    with tool_calling_models() as (small, large, what):
        print(f"\n2. The tool path, with models that can call tools: {what}")
        asyncio.run(run_agents(HybridLLM(small, large)))
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

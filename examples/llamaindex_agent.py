"""An agent on HybridLLM: each agent run is routed once and every call of the run stays on that model.

    python examples/llamaindex_agent.py

The router scores the run's first call (the user's question); later calls of the same run (after tool results)
reuse that model, so a run never switches models midway (``HybridLLM(..., pin_runs=False)`` routes every call on
its own). ``FunctionAgent`` needs two function-calling models (e.g. two OpenAI models); with the shipped
defaults (SmolLM2-135M, which has no tool-calling template) this example uses ``ReActAgent``, whose text protocol
works with any model. The tiny model often answers without a tool: the point here is the routing, not its maths.
"""

from __future__ import annotations

import asyncio
import time

from llama_index.core.agent.workflow import FunctionAgent, ReActAgent
from llama_index.core.tools import FunctionTool
from llamaindex_models import example_models

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
    ("What is 2 + 3?", {"quality_threshold": 0.2}),  # lenient: the router picks the small model
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
            print(f"   call {i}: {route['answered_by']:5s}  source={route['threshold_source']}")
        print(f"   tools: {calls or 'none'}\nA: {str(output.response.content).strip()}")


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=48) as (small, large):
        asyncio.run(run_agents(HybridLLM(small, large)))
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

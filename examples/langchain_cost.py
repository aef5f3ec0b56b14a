"""Cost tracking: ``get_hybrid_cost_callback`` totals calls, tokens and dollars per model, and the savings versus
sending every call to the large model (same tokens at the large model's prices).

    python examples/langchain_cost.py

Prices are dollars per million input / output tokens, keyed by ``response_metadata["model_name"]``. The local
small model is free here; the large one is priced like gpt-4o so the savings are visible.
"""

from __future__ import annotations

import time

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_models import example_models

from hybrid_router.core.records import record_routes
from langchain_hybrid import HybridChatModel, get_hybrid_cost_callback

QUESTIONS = [
    "What is the capital of Italy?",
    "Say hello in Spanish.",
    "Derive the closed form of the sum of the first n squares.",
    "Name a fruit that is yellow.",
    "Explain why the halting problem is undecidable.",
]


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=16) as (small, large):
        llm = HybridChatModel(small=small, large=large, large_share=0.4)  # calibrated: ~40% of calls go large
        chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | llm | StrOutputParser()
        prices = {small.model_name: (0.0, 0.0), large.model_name: (2.50, 10.00)}

        with get_hybrid_cost_callback(prices) as cost, record_routes() as routes:
            for question in QUESTIONS:
                chain.invoke({"q": question})
            "".join(chain.stream({"q": "Count to three."}))  # streamed calls are counted too
        for question, route in zip(QUESTIONS + ["Count to three."], routes):
            print(
                f"{route['answered_by']:5s} (score {route['score']:.3f}, threshold {route['threshold']:.3f})  "
                f"{question}"
            )
        print()
        print(cost.summary())
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

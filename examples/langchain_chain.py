"""An LCEL chain (prompt | model | parser) where ChatOpenAI was replaced by HybridChatModel.

    python examples/langchain_chain.py

The quality threshold rides in the chain's config metadata (per call, or fixed with ``.with_config``); the parser
keeps only the text, so ``record_routes()`` shows which model answered each call.
"""

from __future__ import annotations

import time

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_models import example_models

from hybrid_router.core.records import record_routes
from langchain_hybrid import HybridChatModel

PROMPT = ChatPromptTemplate.from_messages([("system", "Answer in one short sentence."), ("human", "{question}")])
QUESTIONS = [
    ("What is the capital of France?", 0.3),  # lenient threshold: the small model answers
    ("Prove that the square root of 2 is irrational.", 0.95),  # strict: the large model answers
]


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=24) as (small, large):
        llm = HybridChatModel(small=small, large=large)  # was: ChatOpenAI(model="gpt-4o")
        chain = PROMPT | llm | StrOutputParser()

        for question, threshold in QUESTIONS:
            with record_routes() as routes:
                answer = chain.invoke({"question": question}, config={"metadata": {"quality_threshold": threshold}})
            route = routes[0]
            print(
                f"\nQ: {question}\n   threshold {threshold} | score {route['score']:.3f} -> {route['answered_by']} "
                f"({route['model']})\nA: {answer.strip()}"
            )

        strict = chain.with_config(metadata={"quality_threshold": 0.99})
        print("\nStreaming with .with_config(metadata={'quality_threshold': 0.99}): ", end="", flush=True)
        with record_routes() as routes:
            for token in strict.stream({"question": "Name a primary colour."}):
                print(token, end="", flush=True)
        print(f"\n   -> {routes[0]['answered_by']} (threshold source {routes[0]['threshold_source']})")
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

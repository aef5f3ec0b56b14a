"""A cascade: the small model answers, the answer verifier checks it, the large model answers what it rejects.

    python examples/langchain_cascade.py

Query-only routing must guess before any model runs; a cascade also reads the small model's answer. This example
trains a router with an answer verifier on 300 shipped GSM8K questions with the small model's worked answers
(about a minute on CPU; `hybrid-llm train DATA --out DIR` does the same from the command line), then runs
`HybridChatModel(strategy="cascade")` over the shipped SmolLM2-135M (small) and a large model. The verifier is
learned (from 300 examples here), so it is a probability, not a proof: the stricter the quality target, the more
answers it escalates.
"""

from __future__ import annotations

import tempfile
import time

from langchain_models import example_models

from hybrid_router import HybridRouter, load_routing_data, train_router
from hybrid_router.core.encoder import Encoder
from hybrid_router.core.records import record_routes
from hybrid_router.train.data import shipped_path
from langchain_hybrid import HybridChatModel

QUESTIONS = [
    "What is 15 + 27? End with '#### <number>'.",
    "A shop sells pens at $3 each. Sam buys 4 pens and pays with a $20 bill. How much change does he get? "
    "End with '#### <number>'.",
]


def cascade_router(folder: str) -> HybridRouter:
    data = load_routing_data(shipped_path("routellm_gsm8k_answers")).subset(list(range(300)))
    result = train_router(data, encoder=Encoder(layers=3), depths=None)
    print(f"verifier inputs chosen by cross-validation: {result.router.info['verifier']['chosen']}")
    result.router.save(folder)
    return HybridRouter.load(folder)


def main() -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder, example_models(max_tokens=96) as (small, large):
        router = cascade_router(folder)
        llm = HybridChatModel(small=small, large=large, router=router, strategy="cascade", max_quality_drop=0.01)
        for question in QUESTIONS:
            with record_routes() as routes:
                answer = llm.invoke(question)
            r = routes[0]
            verdict = (
                "sent large at once"
                if r["route"] == "large"
                else f"verifier {r['verifier_score']:.2f} vs {r['verify_threshold']:.2f}"
                + (f" -> escalated ({r['escalation_reason']})" if r["escalated"] else " -> accepted")
            )
            print(f"\nQ: {question}\n   router {r['score']:.2f} | {verdict} | answered by {r['answered_by']}")
            print(f"A: {str(answer.content).strip()[:300]}")
        print("\nStreaming (a cascade buffers the small answer until it is verified): ", end="", flush=True)
        for chunk in llm.stream(QUESTIONS[0]):
            print(chunk.content, end="", flush=True)
    print(f"\n\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

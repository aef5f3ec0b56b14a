"""What routing saves: route a mix of easy and hard questions and total the cost against an all-large baseline.

    python examples/llamaindex_cost.py

``routing(large_share=0.5)`` picks the calibrated threshold that sends about half of the traffic to the large
model. ``track_costs`` registers an instrumentation handler that prices every HybridLLM call with the core
``PriceTable``; LlamaIndex's own ``TokenCountingHandler`` (set through ``Settings.callback_manager``) counts the
same calls once each, so both agree. Prices default to the ``hybrid-llm demo`` ones (a nominal self-hosted small
model, gpt-4o-mini list prices for the large one).
"""

from __future__ import annotations

import time

from llama_index.core import Settings
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.llms import ChatMessage
from llamaindex_models import example_models

from hybrid_router import routing
from hybrid_router.serve.demo import DEFAULT_LARGE_PRICE, DEFAULT_SMALL_PRICE, DEMO_QUERIES
from llamaindex_hybrid import HybridLLM, track_costs

QUERIES = DEMO_QUERIES[::2]  # six queries, easy to hard


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=16) as (small, large):
        counter = TokenCountingHandler()
        Settings.callback_manager = CallbackManager([counter])
        Settings.llm = HybridLLM(small, large)
        llm = Settings.llm  # the Settings getter hands the callback manager to HybridLLM (not to its children)
        prices = {small.metadata.model_name: DEFAULT_SMALL_PRICE, large.metadata.model_name: DEFAULT_LARGE_PRICE}

        # Budget knob: the calibrated threshold that sends about half of the traffic to the large model.
        with routing(large_share=0.5), track_costs(prices) as costs:
            for query in QUERIES:
                response = llm.chat([ChatMessage(role="user", content=query)])
                meta = response.additional_kwargs["hybrid_router"]
                print(
                    f"score {meta['score']:.3f} vs {meta['threshold']:.3f} -> {meta['answered_by']:5s} | {query[:60]}"
                )

    print("\n" + costs.summary())
    print(
        f"TokenCountingHandler: {counter.prompt_llm_token_count} in / {counter.completion_llm_token_count} out "
        f"tokens over {len(counter.llm_token_counts)} calls"
    )
    print(f"Done in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

"""Usage and cost: tokens counted once under the answering model's name; the cost callback totals and savings."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler, get_usage_metadata_callback
from langchain_core.prompts import ChatPromptTemplate
from lc_fakes import NO_NETWORK, ScriptedChatModel

from hybrid_router import CostTracker
from langchain_hybrid import HybridChatModel, HybridCostCallbackHandler, get_hybrid_cost_callback

pytestmark = NO_NETWORK

PRICES = {"fake-small": (1.0, 2.0), "fake-large": (10.0, 20.0)}


@pytest.fixture
def model(default_router) -> HybridChatModel:
    return HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small"),
        large=ScriptedChatModel(model_name="fake-large"),
        router=default_router,
    )


def merge(chunks):
    full = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    return full


async def amerge(chunks):
    return merge([c async for c in chunks])


def test_usage_callback_counts_each_call_once_under_the_answering_model(model):
    with get_usage_metadata_callback() as usage:
        a = model.invoke("hello there", hybrid_route="small")
        b = merge(model.stream("hello there", hybrid_route="large"))
        c = asyncio.run(model.ainvoke("hello there", hybrid_route="large"))
        d = asyncio.run(amerge(model.astream("hello there", hybrid_route="small")))
    assert set(usage.usage_metadata) == {"fake-small", "fake-large"}
    small_out = a.usage_metadata["output_tokens"] + d.usage_metadata["output_tokens"]
    large_out = b.usage_metadata["output_tokens"] + c.usage_metadata["output_tokens"]
    assert usage.usage_metadata["fake-small"]["output_tokens"] == small_out
    assert usage.usage_metadata["fake-large"]["output_tokens"] == large_out
    assert usage.usage_metadata["fake-small"]["input_tokens"] == a.usage_metadata["input_tokens"] * 2


def test_exactly_one_stream_chunk_carries_the_labels(model):
    chunks = list(model.stream("hello there", hybrid_route="large"))
    assert sum("model_name" in c.response_metadata for c in chunks) == 1
    assert sum("hybrid_router" in c.response_metadata for c in chunks) == 1
    assert sum(bool(c.usage_metadata) for c in chunks) == 1
    assert chunks[-1].chunk_position == "last"
    assert merge(chunks).response_metadata["model_name"] == "fake-large"  # not "fake-largefake-large"


class _StartMetadata(BaseCallbackHandler):
    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized, messages, *, metadata=None, **kwargs):  # noqa: ANN001
        self.metadata.append(metadata or {})


def test_traces_name_the_chosen_model(model):
    seen = _StartMetadata()
    model.invoke("hi", hybrid_route="large", config={"callbacks": [seen]})
    list(model.stream("hi", hybrid_route="small", config={"callbacks": [seen]}))
    assert [m["ls_model_name"] for m in seen.metadata] == ["fake-large", "fake-small"]
    assert {m["ls_provider"] for m in seen.metadata} == {"scripted"}
    assert model._get_ls_params()["ls_model_name"] == "hybrid(fake-small|fake-large)"


def test_cost_handler_totals_and_savings_across_invoke_and_stream(model):
    handler = HybridCostCallbackHandler(PRICES)
    config = {"callbacks": [handler]}
    a = model.invoke("hello there", hybrid_route="small", config=config)
    b = merge(model.stream("hello there", hybrid_route="large", config=config))
    c = asyncio.run(amerge(model.astream("hello there", hybrid_route="small", config=config)))
    tracker = handler.tracker
    assert tracker.routes == {"small": 2, "large": 1}
    small = tracker.per_model["fake-small"]
    assert (small.calls, small.output_tokens) == (2, a.usage_metadata["output_tokens"] * 2)

    def cost(price, m):
        return (m.usage_metadata["input_tokens"] * price[0] + m.usage_metadata["output_tokens"] * price[1]) / 1e6

    spent = cost(PRICES["fake-small"], a) + cost(PRICES["fake-large"], b) + cost(PRICES["fake-small"], c)
    all_large = sum(cost(PRICES["fake-large"], m) for m in (a, b, c))
    assert handler.total_cost == pytest.approx(spent)
    assert handler.savings == pytest.approx(all_large - spent)
    assert "saved" in handler.summary()


def test_cost_context_manager_sees_chains_and_fallbacks(default_router):
    model = HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small"),
        large=ScriptedChatModel(model_name="fake-large", error="down"),
        router=default_router,
    )
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    with get_hybrid_cost_callback(PRICES) as cost:
        chain.invoke({"q": "hi"}, config={"metadata": {"hybrid_route": "large"}})
        asyncio.run(chain.abatch([{"q": "a"}, {"q": "b"}], config={"metadata": {"hybrid_route": "small"}}))
    assert cost.tracker.calls == 3
    assert cost.tracker.per_model["fake-small"].fallbacks == 1
    assert cost.tracker.routes == {"small": 3, "large": 0}
    chain.invoke({"q": "outside"}, config={"metadata": {"hybrid_route": "small"}})
    assert cost.tracker.calls == 3


def test_cost_handler_ignores_unrouted_models_and_validates_prices():
    handler = HybridCostCallbackHandler(PRICES)
    ScriptedChatModel(model_name="plain").invoke("hi", config={"callbacks": [handler]})
    assert handler.tracker.calls == 0
    with pytest.raises(ValueError):
        HybridCostCallbackHandler({"m": (-1, 2)})
    with pytest.raises(ValueError):
        HybridCostCallbackHandler(PRICES, tracker=CostTracker())


def test_record_routes_sees_calls_hidden_by_an_output_parser(model):
    from langchain_core.output_parsers import StrOutputParser

    from hybrid_router.core.records import record_routes

    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model | StrOutputParser()
    with record_routes() as routes:
        chain.invoke({"q": "hi"}, config={"metadata": {"hybrid_route": "large"}})
        "".join(chain.stream({"q": "hi"}, config={"metadata": {"hybrid_route": "small"}}))
        chain.batch([{"q": "a"}, {"q": "b"}], config={"metadata": {"hybrid_route": "small"}})
    assert [r["answered_by"] for r in routes[:2]] == ["large", "small"]
    assert len(routes) == 4 and all(r["threshold_source"] == "metadata:route" for r in routes)


def test_a_child_that_cannot_stream_still_streams_one_labelled_chunk(default_router):
    model = HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small", disable_streaming=True),
        large=ScriptedChatModel(model_name="fake-large"),
        router=default_router,
    )
    with get_usage_metadata_callback() as usage:
        chunks = list(model.stream("hello there", hybrid_route="small"))
        achunks = asyncio.run(_collect(model.astream("hello there", hybrid_route="small")))
    for got in (chunks, achunks):
        assert len(got) == 1 and got[0].chunk_position == "last"
        assert got[0].response_metadata["model_name"] == "fake-small" and "fake-small" in got[0].text
    assert usage.usage_metadata["fake-small"]["output_tokens"] == 2 * chunks[0].usage_metadata["output_tokens"]


async def _collect(chunks):
    return [c async for c in chunks]


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("reported", ["gpt-4o-mini-2024-07-18", ""], ids=["dated-id", "no-name"])
def test_model_name_is_what_the_child_reported_and_the_configured_name_is_in_the_block(
    default_router, stream, reported
):
    """Like calling the child directly: an API's dated model id stays; a child that names none gets its name."""
    small = ScriptedChatModel(model_name="fake-small")
    large = ScriptedChatModel(model_name="gpt-4o-mini", reported_model=reported)
    model = HybridChatModel(small=small, large=large, router=default_router)
    if stream:
        chunks = list(model.stream("What is 2 + 2?", hybrid_route="large"))
        assert sum("model_name" in c.response_metadata for c in chunks) == 1  # exactly once: no concatenation
        message = merge(chunks)
    else:
        message = model.invoke("What is 2 + 2?", hybrid_route="large")
    assert message.response_metadata["model_name"] == (reported or "gpt-4o-mini")
    assert message.response_metadata["hybrid_router"]["model"] == "gpt-4o-mini"

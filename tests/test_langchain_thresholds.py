"""Per-call routing options reach the router on every LangChain path, and the most specific place wins.

Places: a call kwarg (also ``.bind``), ``config["metadata"]`` (also of an enclosing chain or ``.with_config``),
``config["configurable"]``, the ``hybrid_router.routing()`` context, the model's field. Paths: invoke, ainvoke,
stream, astream, batch, abatch, stream_events/astream_events (v2 and v3), LCEL chains (invoke, stream, batch, async,
events), a chain called inside another runnable, and legacy ``generate``. The real shipped router scores the query;
thresholds just below / above its score must send the call to the small / large child.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Callable

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from lc_fakes import NO_NETWORK, ScriptedChatModel

from hybrid_router import routing
from langchain_hybrid import HybridChatModel

pytestmark = NO_NETWORK

QUERY = "Explain the difference between a list and a tuple in Python."
PROMPT = ChatPromptTemplate.from_messages([("human", "{q}")])


@pytest.fixture(scope="module")
def score(default_router) -> float:
    value = default_router.score(QUERY)
    assert 0.02 < value < 0.98, "the test query needs room on both sides of its score"
    return value


@pytest.fixture
def model(default_router) -> HybridChatModel:
    return HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small"),
        large=ScriptedChatModel(model_name="fake-large", tool_format="anthropic"),
        router=default_router,
    )


def merge(chunks: Any) -> Any:
    full = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    return full


async def amerge(chunks: Any) -> Any:
    return merge([c async for c in chunks])


async def v2_end_message(runnable: Any, value: Any, config: dict) -> AIMessage:
    outputs = [
        e["data"]["output"]
        async for e in runnable.astream_events(value, config=config, version="v2")
        if e["event"] == "on_chat_model_end"
    ]
    assert len(outputs) == 1
    return outputs[0]


async def v3_output(model: HybridChatModel, config: dict) -> AIMessage:
    stream = await model.astream_events(QUERY, config=config, version="v3")
    return await stream.output


#: Each path runs QUERY through the model with a RunnableConfig and returns the model's (merged) message.
PATHS: dict[str, Callable[[HybridChatModel, dict], AIMessage]] = {
    "invoke": lambda m, c: m.invoke(QUERY, config=c),
    "ainvoke": lambda m, c: asyncio.run(m.ainvoke(QUERY, config=c)),
    "stream": lambda m, c: merge(m.stream(QUERY, config=c)),
    "astream": lambda m, c: asyncio.run(amerge(m.astream(QUERY, config=c))),
    "batch": lambda m, c: m.batch([QUERY, QUERY], config=c)[1],
    "abatch": lambda m, c: asyncio.run(m.abatch([QUERY, QUERY], config=c))[1],
    "stream_events_v3": lambda m, c: m.stream_events(QUERY, config=c, version="v3").output,
    "astream_events_v3": lambda m, c: asyncio.run(v3_output(m, c)),
    "astream_events_v2": lambda m, c: asyncio.run(v2_end_message(m, QUERY, c)),
    "chain_invoke": lambda m, c: (PROMPT | m).invoke({"q": QUERY}, config=c),
    "chain_ainvoke": lambda m, c: asyncio.run((PROMPT | m).ainvoke({"q": QUERY}, config=c)),
    "chain_stream": lambda m, c: merge((PROMPT | m).stream({"q": QUERY}, config=c)),
    "chain_astream": lambda m, c: asyncio.run(amerge((PROMPT | m).astream({"q": QUERY}, config=c))),
    "chain_batch": lambda m, c: (PROMPT | m).batch([{"q": QUERY}] * 2, config=c)[0],
    "chain_abatch": lambda m, c: asyncio.run((PROMPT | m).abatch([{"q": QUERY}] * 2, config=c))[0],
    "chain_astream_events_v2": lambda m, c: asyncio.run(v2_end_message(PROMPT | m, {"q": QUERY}, c)),
    "chain_with_config_invoke": lambda m, c: (PROMPT | m).with_config(**c).invoke({"q": QUERY}),
    "chain_with_config_stream": lambda m, c: merge((PROMPT | m).with_config(**c).stream({"q": QUERY})),
    "nested_in_lambda": lambda m, c: RunnableLambda(lambda x: (PROMPT | m).invoke(x)).invoke({"q": QUERY}, config=c),
    "nested_in_lambda_stream": lambda m, c: merge(
        RunnableLambda(lambda x: merge((PROMPT | m).stream(x))).stream({"q": QUERY}, config=c)
    ),
}


def run_with_layer(path: str, model: HybridChatModel, layer: str, threshold: float) -> AIMessage:
    if layer == "context":
        with routing(quality_threshold=threshold):
            return PATHS[path](model, {})
    return PATHS[path](model, {layer: {"quality_threshold": threshold}})


def check(message: AIMessage, *, threshold: float, source: str, score: float) -> None:
    routed = message.response_metadata["hybrid_router"]
    expected = "small" if score >= threshold else "large"
    assert routed["threshold"] == pytest.approx(threshold)
    assert routed["threshold_source"] == source
    assert routed["route"] == routed["answered_by"] == expected
    assert routed["score"] == pytest.approx(score, abs=1e-4)
    assert message.response_metadata["model_name"] == f"fake-{expected}"
    assert f"fake-{expected}" in message.text


@pytest.mark.parametrize("side", ["small", "large"])
@pytest.mark.parametrize("layer", ["metadata", "configurable", "context"])
@pytest.mark.parametrize("path", sorted(PATHS))
def test_threshold_reaches_router_on_every_path(path, layer, side, model, score):
    threshold = round(score - 0.01, 4) if side == "small" else round(score + 0.01, 4)
    message = run_with_layer(path, model, layer, threshold)
    check(message, threshold=threshold, source=f"{layer}:quality_threshold", score=score)
    answered = model.small if side == "small" else model.large
    other = model.large if side == "small" else model.small
    assert answered.calls and not other.calls


def test_kwarg_on_invoke_stream_batch_and_bind(model, score):
    low, high = round(score - 0.01, 4), round(score + 0.01, 4)
    check(model.invoke(QUERY, quality_threshold=high), threshold=high, source="kwarg:quality_threshold", score=score)
    check(
        merge(model.stream(QUERY, quality_threshold=low)), threshold=low, source="kwarg:quality_threshold", score=score
    )
    check(
        asyncio.run(amerge(model.astream(QUERY, quality_threshold=high))),
        threshold=high,
        source="kwarg:quality_threshold",
        score=score,
    )
    check(model.batch([QUERY], quality_threshold=low)[0], threshold=low, source="kwarg:quality_threshold", score=score)
    # A bound kwarg inside a chain beats the chain's metadata.
    chain = PROMPT | model.bind(quality_threshold=high)
    check(
        chain.invoke({"q": QUERY}, config={"metadata": {"quality_threshold": low}}),
        threshold=high,
        source="kwarg:quality_threshold",
        score=score,
    )


def test_most_specific_place_wins(model, score):
    values = {"kwarg": 0.11, "metadata": 0.22, "configurable": 0.33, "context": 0.44, "default": 0.55}
    model.quality_threshold = values["default"]

    def call(layers: set[str]) -> AIMessage:
        config: dict[str, Any] = {}
        if "metadata" in layers:
            config["metadata"] = {"quality_threshold": values["metadata"]}
        if "configurable" in layers:
            config["configurable"] = {"quality_threshold": values["configurable"]}
        kwargs = {"quality_threshold": values["kwarg"]} if "kwarg" in layers else {}
        if "context" in layers:
            with routing(quality_threshold=values["context"]):
                return model.invoke(QUERY, config=config, **kwargs)
        return model.invoke(QUERY, config=config, **kwargs)

    layers = ["kwarg", "metadata", "configurable", "context", "default"]
    for i, winner in enumerate(layers):
        message = call(set(layers[i:]))
        check(message, threshold=values[winner], source=f"{winner}:quality_threshold", score=score)


def test_outer_chain_metadata_reaches_inner_model(model, score):
    high = round(score + 0.01, 4)
    inner = PROMPT | model | StrOutputParser()
    outer = RunnableLambda(lambda x: {"q": x}) | inner
    assert "fake-large" in outer.invoke(QUERY, config={"metadata": {"quality_threshold": high}})
    assert "fake-large" in "".join(outer.stream(QUERY, config={"metadata": {"quality_threshold": high}}))
    assert "fake-large" in outer.with_config(metadata={"quality_threshold": high}).invoke(QUERY)
    low = round(score - 0.01, 4)
    assert "fake-small" in asyncio.run(outer.with_config(metadata={"quality_threshold": low}).ainvoke(QUERY))


def test_batch_configs_route_each_input_by_its_own_threshold(model, score):
    low, high = round(score - 0.01, 4), round(score + 0.01, 4)
    configs = [{"metadata": {"quality_threshold": t}} for t in (low, high, low, high)]
    results = model.batch([QUERY] * 4, config=configs)
    assert [r.response_metadata["hybrid_router"]["route"] for r in results] == ["small", "large", "small", "large"]
    results = asyncio.run((PROMPT | model).abatch([{"q": QUERY}] * 4, config=configs))
    assert [r.response_metadata["model_name"] for r in results] == ["fake-small", "fake-large"] * 2


def test_calibrated_targets_and_forced_routes(model, default_router, score):
    message = model.invoke(QUERY, config={"metadata": {"large_share": 0.3}})
    routed = message.response_metadata["hybrid_router"]
    expected = default_router.calibration.threshold_for_large_share(0.3)
    assert routed["threshold_source"] == "metadata:large_share"
    assert routed["threshold"] == pytest.approx(expected)
    message = model.invoke(QUERY, config={"configurable": {"max_quality_drop": 0.05}})
    routed = message.response_metadata["hybrid_router"]
    assert routed["threshold_source"] == "configurable:max_quality_drop"
    assert routed["threshold"] == pytest.approx(default_router.calibration.threshold_for_max_quality_drop(0.05))
    forced = merge((PROMPT | model).stream({"q": QUERY}, config={"metadata": {"hybrid_route": "large"}}))
    assert forced.response_metadata["hybrid_router"]["threshold_source"] == "metadata:route"
    assert forced.response_metadata["hybrid_router"]["score"] is None
    assert forced.response_metadata["model_name"] == "fake-large"
    with routing(route="small"):
        assert model.invoke(QUERY, hybrid_route="large").response_metadata["model_name"] == "fake-large"
        assert model.invoke(QUERY).response_metadata["hybrid_router"]["threshold_source"] == "context:route"


def test_model_field_default_and_router_default(model, default_router, score):
    message = model.invoke(QUERY)
    check(message, threshold=default_router.default_threshold, source="default:quality_threshold", score=score)
    tuned = model.model_copy(update={"quality_threshold": round(score + 0.01, 4)})
    check(tuned.invoke(QUERY), threshold=round(score + 0.01, 4), source="default:quality_threshold", score=score)
    forced = model.model_copy(update={"hybrid_route": "large"})
    assert forced.invoke(QUERY).response_metadata["hybrid_router"]["threshold_source"] == "default:route"


def test_legacy_generate_reads_run_metadata(model, score):
    high = round(score + 0.01, 4)
    result = model.generate([[HumanMessage(QUERY)]], metadata={"quality_threshold": high})
    check(result.generations[0][0].message, threshold=high, source="metadata:quality_threshold", score=score)
    result = model.generate([[HumanMessage(QUERY)]], quality_threshold=high)
    check(result.generations[0][0].message, threshold=high, source="kwarg:quality_threshold", score=score)


BAD_OPTIONS = [
    {"quality_threshold": 1.5},
    {"quality_threshold": -0.1},
    {"quality_threshold": math.nan},
    {"quality_threshold": True},
    {"quality_threshold": "high"},
    {"large_share": 2},
    {"max_quality_drop": math.nan},
    {"hybrid_route": "medium"},
    {"quality_threshold": 0.5, "large_share": 0.2},
]


@pytest.mark.parametrize("bad", BAD_OPTIONS, ids=[str(b) for b in BAD_OPTIONS])
@pytest.mark.parametrize("place", ["kwarg", "metadata", "configurable", "chain_metadata_stream", "astream"])
def test_invalid_options_raise_before_any_model_runs(bad, place, model):
    with pytest.raises(ValueError):
        if place == "kwarg":
            model.invoke(QUERY, **bad)
        elif place in ("metadata", "configurable"):
            model.invoke(QUERY, config={place: bad})
        elif place == "chain_metadata_stream":
            list((PROMPT | model).stream({"q": QUERY}, config={"metadata": bad}))
        else:
            asyncio.run(amerge(model.astream(QUERY, config={"configurable": bad})))
    assert not model.small.calls and not model.large.calls


def test_shadowed_invalid_values_still_raise(model):
    with pytest.raises(ValueError, match="quality_threshold"):
        model.invoke(QUERY, quality_threshold=0.5, config={"metadata": {"quality_threshold": 7}})
    with pytest.raises(ValueError):
        with routing(quality_threshold=2.0):
            pass


def test_invalid_model_fields_and_empty_input(model):
    with pytest.raises(ValueError, match="quality_threshold"):
        HybridChatModel(small=model.small, large=model.large, quality_threshold=1.2)
    with pytest.raises(ValueError):
        HybridChatModel(small=model.small, large=model.large, timeout=0)
    with pytest.raises(ValueError):
        HybridChatModel(small=model.small, large=model.large, quality_threshold=0.3, large_share=0.2)
    with pytest.raises(ValueError, match="empty"):
        model.invoke([])
    with pytest.raises(ValueError, match="empty"):
        list(model.stream("   "))
    with pytest.raises(ValueError, match="empty"):
        asyncio.run(model.ainvoke([]))
    assert not model.small.calls and not model.large.calls


def test_user_metadata_named_route_is_not_a_routing_option(model):
    message = model.invoke(QUERY, config={"metadata": {"route": "not-ours", "quality_threshold": 0.0}})
    assert message.response_metadata["hybrid_router"]["threshold_source"] == "metadata:quality_threshold"

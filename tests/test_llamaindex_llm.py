"""HybridLLM plumbing with LlamaIndex's own mock LLMs as children and the real shipped router.

Covers every entry point, option precedence, metadata, input validation, fallback, callbacks (no double counting),
the routing event, the cost handler and ``record_routes``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from llama_index.core import Settings
from llama_index.core.base.llms.types import ChatMessage, ChatResponse, CompletionResponse, LLMMetadata
from llama_index.core.callbacks import CallbackManager, TokenCountingHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.llms import MockFunctionCallingLLM, MockLLM
from llama_index.core.llms.custom import CustomLLM

from hybrid_router import AllModelsFailedError, routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM, HybridRouteEvent, track_costs

QUESTION = "What is the capital of France?"
ENTRY_POINTS = [
    "chat",
    "achat",
    "stream_chat",
    "astream_chat",
    "complete",
    "acomplete",
    "stream_complete",
    "astream_complete",
]
METADATA_KEYS = {
    "route",
    "answered_by",
    "model",
    "small_model",
    "large_model",
    "score",
    "threshold",
    "threshold_source",
    "fallback",
    "fallback_reason",
    "strategy",
    "verify_threshold",
    "verifier_score",
    "escalated",
    "escalation_reason",
    "small_usage",
    "mode",
    "router_input",
}


class NamedMock(MockLLM):
    """MockLLM (echoes, or streams ``max_tokens`` chunks) with a model name and limits."""

    name: str = "mock"
    window: int = 4096
    outputs: int = 256

    def __init__(self, name: str = "mock", window: int = 4096, outputs: int = 256, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name, self.window, self.outputs = name, window, outputs

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, context_window=self.window, num_output=self.outputs)


class NamedToolMock(MockFunctionCallingLLM):
    """MockFunctionCallingLLM with a model name (one LLM event per sync call)."""

    name: str = "tool-mock"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name, is_function_calling_model=True, is_chat_model=True)


class Broken(CustomLLM):
    """Fails (or stalls for ``delay`` seconds, then answers) before any output, on every entry point."""

    delay: float = 0.0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="broken")

    def _answer(self) -> CompletionResponse:
        if self.delay:
            time.sleep(self.delay)
            return CompletionResponse(text="late", delta="late")
        raise ConnectionError("small model is down")

    async def _aanswer(self) -> CompletionResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
            return CompletionResponse(text="late", delta="late")
        raise ConnectionError("small model is down")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._answer()

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        def gen():
            yield self._answer()

        return gen()

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await self._aanswer()

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        async def gen():
            yield await self._aanswer()

        return gen()

    async def achat(self, messages, **kwargs: Any) -> ChatResponse:
        return ChatResponse(message=ChatMessage(role="assistant", content=(await self._aanswer()).text))

    async def astream_chat(self, messages, **kwargs: Any):
        async def gen():
            text = (await self._aanswer()).text
            yield ChatResponse(message=ChatMessage(role="assistant", content=text), delta=text)

        return gen()


def counter_for(llm) -> TokenCountingHandler:
    counter = TokenCountingHandler()
    llm.callback_manager = CallbackManager([counter])
    return counter


def call(llm, entry: str, text: str = QUESTION, **kwargs: Any) -> list:
    """Run one entry point; the responses (one, or every streamed chunk)."""
    messages = [ChatMessage(role="user", content=text)]
    arg = messages if "chat" in entry else text
    if entry.startswith("a"):

        async def run():
            result = await getattr(llm, entry)(arg, **kwargs)
            if entry.startswith("astream"):
                return [chunk async for chunk in result]
            return [result]

        return asyncio.run(run())
    result = getattr(llm, entry)(arg, **kwargs)
    return list(result) if entry.startswith("stream") else [result]


def text_of(response) -> str:
    return response.text if isinstance(response, CompletionResponse) else response.message.content


@pytest.fixture
def pair():
    return NamedMock(name="tiny", max_tokens=3, window=2048, outputs=64), NamedMock(name="huge", max_tokens=5)


@pytest.fixture
def hybrid(pair, default_router):
    return HybridLLM(*pair, router=default_router)


class Collect(BaseEventHandler):
    """Collects instrumentation events of the given types."""

    kinds: tuple = ()
    seen: list = []

    def handle(self, event, **kwargs: Any) -> None:
        if isinstance(event, self.kinds):
            self.seen.append(event)


@pytest.fixture
def events():
    handler = Collect(kinds=(HybridRouteEvent, LLMChatEndEvent, LLMCompletionEndEvent), seen=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler.seen
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


@pytest.fixture
def clean_settings():
    saved = (Settings._llm, Settings._embed_model, Settings._callback_manager)
    yield Settings
    Settings._llm, Settings._embed_model, Settings._callback_manager = saved


# ---------------------------------------------------------------- routing on every entry point
@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("target", ["small", "large"])
def test_every_entry_point_routes_to_the_chosen_child_and_tags_every_response(hybrid, pair, entry, target):
    counters = {"small": counter_for(pair[0]), "large": counter_for(pair[1])}
    direct = call(pair[0] if target == "small" else pair[1], entry)
    for c in counters.values():
        c.reset_counts()

    responses = call(hybrid, entry, hybrid_route=target)

    other = "large" if target == "small" else "small"
    assert len(counters[target].llm_token_counts) >= 1 and counters[other].llm_token_counts == []
    assert [text_of(r) for r in responses] == [text_of(r) for r in direct]
    if entry.startswith(("stream", "astream")):
        assert len(responses) > 1  # really streamed, chunk by chunk
    for r in responses:
        meta = r.additional_kwargs["hybrid_router"]
        assert set(meta) == METADATA_KEYS
        assert meta["route"] == meta["answered_by"] == target and meta["threshold_source"] == "kwarg:route"
        assert meta["model"] == ("tiny" if target == "small" else "huge")
        assert (meta["small_model"], meta["large_model"]) == ("tiny", "huge") and meta["fallback"] is False


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_router_decides_with_a_threshold_kwarg(hybrid, entry):
    low = call(hybrid, entry, quality_threshold=0.0)[-1].additional_kwargs["hybrid_router"]
    high = call(hybrid, entry, quality_threshold=1.0)[-1].additional_kwargs["hybrid_router"]
    assert low["answered_by"] == "small" and high["answered_by"] == "large"
    assert 0.0 <= low["score"] < 1.0 and low["score"] == pytest.approx(high["score"])
    assert (low["threshold"], high["threshold"]) == (0.0, 1.0)
    assert low["threshold_source"] == "kwarg:quality_threshold"


def test_options_precedence_kwarg_then_context_then_model_default_then_router(pair, default_router):
    plain = HybridLLM(*pair, router=default_router)
    with_default = HybridLLM(*pair, router=default_router, quality_threshold=1.0)

    def meta(llm, **kw):
        return llm.complete(QUESTION, **kw).additional_kwargs["hybrid_router"]

    assert meta(plain)["threshold_source"] == "default:quality_threshold"
    assert meta(plain)["threshold"] == default_router.default_threshold
    assert (meta(with_default)["threshold_source"], meta(with_default)["answered_by"]) == (
        "default:quality_threshold",
        "large",
    )
    with routing(quality_threshold=0.0):
        assert (meta(with_default)["threshold_source"], meta(with_default)["answered_by"]) == (
            "context:quality_threshold",
            "small",
        )
        inner = meta(with_default, hybrid_route="large")
        assert (inner["threshold_source"], inner["answered_by"], inner["score"]) == ("kwarg:route", "large", None)
        with routing(route="small"):
            assert meta(with_default, quality_threshold=1.0)["answered_by"] == "large"  # kwarg beats context
            assert meta(with_default)["threshold_source"] == "context:route"


def test_share_and_drop_targets_resolve_through_the_calibration(hybrid, default_router):
    share = hybrid.complete(QUESTION, large_share=1.0).additional_kwargs["hybrid_router"]
    assert share["threshold_source"] == "kwarg:large_share"
    assert share["threshold"] == pytest.approx(default_router.calibration.threshold_for_large_share(1.0))
    drop = hybrid.complete(QUESTION, max_quality_drop=0.0).additional_kwargs["hybrid_router"]
    assert drop["threshold_source"] == "kwarg:max_quality_drop"
    assert drop["threshold"] == pytest.approx(default_router.calibration.threshold_for_max_quality_drop(0.0))


def test_context_holds_in_async_tasks_and_threads_started_inside_it(hybrid):
    async def many():
        messages = [ChatMessage(role="user", content=QUESTION)]
        tasks = [asyncio.create_task(hybrid.achat(messages)) for _ in range(3)]
        threaded = asyncio.to_thread(hybrid.chat, messages)
        return await asyncio.gather(*tasks, threaded)

    with routing(quality_threshold=1.0):
        responses = asyncio.run(many())
    metas = [r.additional_kwargs["hybrid_router"] for r in responses]
    assert all(m["answered_by"] == "large" and m["threshold_source"] == "context:quality_threshold" for m in metas)
    after = hybrid.chat([ChatMessage(role="user", content=QUESTION)]).additional_kwargs["hybrid_router"]
    assert after["threshold_source"] == "default:quality_threshold"


def test_routing_keys_never_reach_the_children(pair, default_router):
    seen = []

    class Spy(NamedMock):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            seen.append(kwargs)
            return super().complete(prompt, formatted=formatted, **kwargs)

    llm = HybridLLM(Spy(name="s"), Spy(name="l"), router=default_router)
    llm.complete(QUESTION, quality_threshold=0.3, temperature=0.1)
    assert seen == [{"temperature": 0.1}]


# ---------------------------------------------------------------- metadata
def test_metadata_is_the_safe_intersection_of_the_children(pair, default_router):
    meta = HybridLLM(*pair, router=default_router).metadata
    assert (meta.context_window, meta.num_output) == (2048, 64)
    assert meta.is_function_calling_model is False and meta.model_name == "hybrid(tiny|huge)"
    tools = HybridLLM(NamedToolMock(name="a"), NamedToolMock(name="b"), router=default_router).metadata
    assert tools.is_function_calling_model is True and tools.is_chat_model is True
    mixed = HybridLLM(NamedToolMock(name="a"), pair[1], router=default_router).metadata
    assert mixed.is_function_calling_model is False and mixed.is_chat_model is True
    unknown = HybridLLM(MockLLM(), pair[1], router=default_router).metadata  # MockLLM reports num_output=-1
    assert unknown.num_output == 256


# ---------------------------------------------------------------- bad input
BAD_CALLS = [
    ({"text": ""}, "empty"),
    ({"text": "   "}, "empty"),
    ({"quality_threshold": 1.5}, "quality_threshold"),
    ({"quality_threshold": "high"}, "quality_threshold"),
    ({"large_share": -0.1}, "large_share"),
    ({"quality_threshold": 0.5, "large_share": 0.5}, "set only one"),
    ({"hybrid_route": "medium"}, "route"),
]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("bad,message", BAD_CALLS)
def test_bad_input_raises_a_clear_value_error_before_any_model_call(hybrid, pair, entry, bad, message):
    counters = [counter_for(child) for child in pair]
    with pytest.raises(ValueError, match=message):
        call(hybrid, entry, **bad)
    assert all(c.llm_token_counts == [] for c in counters)


def test_empty_message_list_and_bad_context_raise_before_any_call(hybrid, pair):
    counters = [counter_for(child) for child in pair]
    with pytest.raises(ValueError, match="empty"):
        hybrid.chat([])
    with pytest.raises(ValueError, match="empty"):
        asyncio.run(hybrid.astream_chat([ChatMessage(role="user", content="")]))
    with pytest.raises(ValueError, match="quality_threshold"):
        with routing(quality_threshold=7):
            pass
    assert all(c.llm_token_counts == [] for c in counters)


@pytest.mark.parametrize(
    "bad",
    [{"quality_threshold": 2}, {"route": "medium"}, {"timeout": 0}, {"quality_threshold": 0.5, "large_share": 0.2}],
)
def test_bad_model_defaults_are_rejected_at_construction(pair, default_router, bad):
    with pytest.raises(ValueError):
        HybridLLM(*pair, router=default_router, **bad)


# ---------------------------------------------------------------- fallback
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_failing_model_falls_back_to_the_other_with_the_same_metadata(pair, default_router, entry):
    llm = HybridLLM(Broken(), pair[1], router=default_router)
    responses = call(llm, entry, hybrid_route="small")
    for r in responses:
        meta = r.additional_kwargs["hybrid_router"]
        assert (meta["route"], meta["answered_by"], meta["model"], meta["fallback"]) == ("small", "large", "huge", True)
        assert "ConnectionError: small model is down" in meta["fallback_reason"]


@pytest.mark.parametrize("entry", ["chat", "astream_chat", "stream_complete", "acomplete"])
def test_a_stalled_model_times_out_and_falls_back(pair, default_router, entry):
    llm = HybridLLM(Broken(delay=3.0), pair[1], router=default_router, timeout=0.3)
    started = time.perf_counter()
    meta = call(llm, entry, hybrid_route="small")[-1].additional_kwargs["hybrid_router"]
    assert time.perf_counter() - started < 2.5
    assert meta["answered_by"] == "large" and "timed out" in meta["fallback_reason"]


def test_without_fallback_the_error_is_raised_and_two_failures_are_reported(pair, default_router):
    with pytest.raises(ConnectionError):
        HybridLLM(Broken(), pair[1], router=default_router, fallback=False).chat(
            [ChatMessage(role="user", content=QUESTION)], hybrid_route="small"
        )
    with pytest.raises(AllModelsFailedError):
        list(HybridLLM(Broken(), Broken(), router=default_router).stream_complete(QUESTION))


# ---------------------------------------------------------------- callbacks, events, costs
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_token_counting_handler_counts_each_call_once(pair, default_router, entry):
    """A handler on the HybridLLM hears one LLM event per call, counted as the child's own outermost event (a
    MockLLM's chat also emits an inner completion event, which the child's own handlers hear)."""
    direct = counter_for(pair[1])
    call(pair[1], entry)
    outer = direct.llm_token_counts[-1]
    expected = (outer.prompt_token_count, outer.completion_token_count, 1)

    counter = TokenCountingHandler()
    llm = HybridLLM(*pair, router=default_router, callback_manager=CallbackManager([counter]))
    call(llm, entry, hybrid_route="large")
    assert (
        counter.prompt_llm_token_count,
        counter.completion_llm_token_count,
        len(counter.llm_token_counts),
    ) == expected
    assert expected[1] > 0


def test_settings_callback_manager_counts_each_call_once_and_leaves_the_children_alone(
    pair, default_router, clean_settings
):
    own = [child.callback_manager for child in pair]
    counter = TokenCountingHandler()
    clean_settings.callback_manager = CallbackManager([counter])
    clean_settings.llm = HybridLLM(*pair, router=default_router)
    llm = clean_settings.llm  # the getter hands Settings.callback_manager to the LLM
    assert llm.callback_manager is clean_settings.callback_manager
    assert [child.callback_manager for child in pair] == own  # not replaced
    llm.complete(QUESTION, hybrid_route="small")
    list(llm.stream_chat([ChatMessage(role="user", content=QUESTION)], hybrid_route="large"))
    assert len(counter.llm_token_counts) == 2
    assert all(event.completion_token_count > 0 for event in counter.llm_token_counts)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_a_handler_on_the_hybrid_and_on_the_child_hears_each_call_once(pair, default_router, entry):
    shared, only_hybrid = TokenCountingHandler(), TokenCountingHandler()
    large = NamedToolMock(name="huge", callback_manager=CallbackManager([shared]))
    llm = HybridLLM(pair[0], large, router=default_router, callback_manager=CallbackManager([shared, only_hybrid]))
    call(llm, entry, hybrid_route="large")
    direct = TokenCountingHandler()
    call(NamedToolMock(name="huge", callback_manager=CallbackManager([direct])), entry)
    assert large.callback_manager.handlers == [shared]  # the child's manager is its own
    assert len(shared.llm_token_counts) == len(direct.llm_token_counts)  # the child's events, not one more
    assert len(only_hybrid.llm_token_counts) == 1  # one per call from the HybridLLM
    assert only_hybrid.llm_token_counts[0].completion_token_count == direct.llm_token_counts[-1].completion_token_count


def test_a_failed_call_closes_its_callback_event(pair, default_router):
    from llama_index.core.callbacks import LlamaDebugHandler

    debug = LlamaDebugHandler()
    llm = HybridLLM(Broken(), Broken(), router=default_router, callback_manager=CallbackManager([debug]))
    with pytest.raises(AllModelsFailedError):
        llm.complete(QUESTION)
    (pair_events,) = debug.get_llm_inputs_outputs()
    assert "exception" in {k.value for k in pair_events[1].payload}


def test_one_route_event_per_call_and_only_the_childs_own_llm_events(hybrid, pair, events):
    pair[0].complete(QUESTION)
    call(pair[1], "astream_complete")
    child_events = [type(e) for e in events]
    events.clear()

    hybrid.complete(QUESTION, quality_threshold=0.0)
    chunks = call(hybrid, "astream_complete", quality_threshold=1.0)
    routes = [e for e in events if isinstance(e, HybridRouteEvent)]
    assert [type(e) for e in events if not isinstance(e, HybridRouteEvent)] == child_events
    assert len(routes) == 2
    first, second = routes
    assert (first.route, first.source, first.threshold, first.fallback) == (
        "small",
        "kwarg:quality_threshold",
        0.0,
        False,
    )
    assert second.route == "large" and second.score == pytest.approx(first.score)
    assert second.metadata == chunks[-1].additional_kwargs["hybrid_router"]
    assert second.response is chunks[-1] and second.prompt == QUESTION


def test_route_event_carries_the_fallback(pair, default_router, events):
    HybridLLM(Broken(), pair[1], router=default_router).chat(
        [ChatMessage(role="user", content=QUESTION)], hybrid_route="small"
    )
    (event,) = [e for e in events if isinstance(e, HybridRouteEvent)]
    assert (event.route, event.answered_by, event.fallback) == ("small", "large", True)
    assert "small model is down" in event.fallback_reason


def test_cost_handler_totals_calls_tokens_dollars_and_savings(default_router):
    small, large = NamedToolMock(name="tiny"), NamedToolMock(name="huge")
    counter = TokenCountingHandler()
    llm = HybridLLM(small, large, router=default_router, callback_manager=CallbackManager([counter]))
    prices = {"tiny": (1.0, 2.0), "huge": (10.0, 30.0)}
    messages = [ChatMessage(role="user", content=QUESTION)]
    with track_costs(prices) as costs:
        llm.chat(messages, hybrid_route="small")
        list(llm.stream_chat(messages, hybrid_route="large"))
        llm.complete("Explain general relativity in one line.", hybrid_route="small")
        call(llm, "astream_complete", hybrid_route="small")
    llm.complete(QUESTION)  # outside the block: not counted
    tracker = costs.tracker
    assert tracker.calls == 4 and tracker.routes == {"small": 3, "large": 1}
    assert sum(t.input_tokens for t in tracker.per_model.values()) == sum(
        e.prompt_token_count for e in counter.llm_token_counts[:4]
    )
    assert sum(t.output_tokens for t in tracker.per_model.values()) == sum(
        e.completion_token_count for e in counter.llm_token_counts[:4]
    )
    tiny = tracker.per_model["tiny"]
    assert tiny.cost == pytest.approx((tiny.input_tokens * 1.0 + tiny.output_tokens * 2.0) / 1e6)
    all_tokens = [(e.prompt_token_count, e.completion_token_count) for e in counter.llm_token_counts[:4]]
    assert tracker.all_large_cost == pytest.approx(sum(i * 10.0 + o * 30.0 for i, o in all_tokens) / 1e6)
    assert tracker.savings == pytest.approx(tracker.all_large_cost - tracker.total_cost) and tracker.savings > 0
    assert "Routed calls: 4 (small 3, large 1)" in costs.summary()


def test_record_routes_collects_calls_from_tasks_started_inside(hybrid):
    async def two():
        return await asyncio.gather(hybrid.acomplete(QUESTION), hybrid.acomplete(QUESTION, hybrid_route="large"))

    with record_routes() as outer:
        hybrid.complete(QUESTION, quality_threshold=0.0)
        with record_routes() as inner:
            asyncio.run(two())
    hybrid.complete(QUESTION)
    assert len(outer) == 3 and outer[0]["threshold_source"] == "kwarg:quality_threshold" and outer[1:] == inner
    assert len(inner) == 2 and {r["threshold_source"] for r in inner} == {"default:quality_threshold", "kwarg:route"}


def test_prepare_chat_with_tools_opens_no_callback_event(default_router):
    """Preparing a tool call makes no call: the chat() that follows is the one LLM event."""
    from llama_index.core.callbacks import LlamaDebugHandler
    from llama_index.core.tools import FunctionTool

    debug = LlamaDebugHandler()
    small, large = NamedToolMock(name="tiny"), NamedToolMock(name="huge")
    llm = HybridLLM(small, large, router=default_router, callback_manager=CallbackManager([debug]))
    tool = FunctionTool.from_defaults(lambda a: a, name="echo", description="Echo a.")
    prepared = llm._prepare_chat_with_tools([tool], user_msg=QUESTION, hybrid_route="small")
    assert debug.get_llm_inputs_outputs() == []
    llm.chat(**prepared)
    assert len(debug.get_llm_inputs_outputs()) == 1

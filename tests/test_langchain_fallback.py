"""Fallback: the other model answers when the chosen one raises or hangs before any output; never mid-stream.

Scripted children fail or hang on request (plumbing); the real test points the large model at a closed port on
127.0.0.1 and lets the shipped small model answer (tests/test_langchain_real.py).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from lc_fakes import NO_NETWORK, ScriptedChatModel

from hybrid_router import AllModelsFailedError, ModelTimeoutError
from langchain_hybrid import HybridChatModel

pytestmark = NO_NETWORK


def hybrid(router, *, small: dict | None = None, large: dict | None = None, **kwargs) -> HybridChatModel:
    return HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small", **(small or {})),
        large=ScriptedChatModel(model_name="fake-large", **(large or {})),
        router=router,
        **kwargs,
    )


def merge(chunks):
    full = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    return full


async def amerge(chunks):
    return merge([c async for c in chunks])


def call(model: HybridChatModel, how: str, **kwargs):
    if how == "invoke":
        return model.invoke("Tell me something.", **kwargs)
    if how == "ainvoke":
        return asyncio.run(model.ainvoke("Tell me something.", **kwargs))
    if how == "stream":
        return merge(model.stream("Tell me something.", **kwargs))
    return asyncio.run(amerge(model.astream("Tell me something.", **kwargs)))


HOWS = ["invoke", "ainvoke", "stream", "astream"]


@pytest.mark.parametrize("how", HOWS)
def test_error_in_chosen_model_falls_back(default_router, how):
    model = hybrid(default_router, large={"error": "quota exceeded"})
    message = call(model, how, hybrid_route="large")
    routed = message.response_metadata["hybrid_router"]
    assert routed["route"] == "large" and routed["answered_by"] == "small"
    assert routed["fallback"] is True
    assert "large model failed: RuntimeError: quota exceeded" in routed["fallback_reason"]
    assert message.response_metadata["model_name"] == "fake-small"
    assert "fake-small" in message.text
    assert len(model.large.calls) == 1 and len(model.small.calls) == 1


@pytest.mark.parametrize("how", HOWS)
def test_timeout_before_first_output_falls_back(default_router, how):
    model = hybrid(default_router, small={"delay": 5.0}, timeout=0.3)
    started = time.perf_counter()
    message = call(model, how, hybrid_route="small")
    assert time.perf_counter() - started < 3.0
    routed = message.response_metadata["hybrid_router"]
    assert routed["answered_by"] == "large" and routed["fallback"] is True
    assert "small model timed out" in routed["fallback_reason"]
    assert message.response_metadata["model_name"] == "fake-large"


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_error_after_streamed_chunks_is_raised_not_hidden(default_router, how):
    model = hybrid(default_router, small={"fail_after_chunks": 2})
    with pytest.raises(RuntimeError, match="broke after 2 chunks"):
        call(model, how, hybrid_route="small")
    assert not model.large.calls


@pytest.mark.parametrize("how", HOWS)
def test_both_models_failing_raises_with_both_errors(default_router, how):
    model = hybrid(default_router, small={"error": "small down"}, large={"error": "large down"})
    with pytest.raises(AllModelsFailedError) as info:
        call(model, how)
    assert set(info.value.errors) == {"small", "large"}


@pytest.mark.parametrize("how", HOWS)
def test_fallback_off_raises_the_chosen_models_error(default_router, how):
    model = hybrid(default_router, large={"error": "down"}, fallback=False)
    with pytest.raises(RuntimeError, match="down"):
        call(model, how, hybrid_route="large")
    assert not model.small.calls


def test_timeout_without_fallback_raises_timeout(default_router):
    model = hybrid(default_router, large={"delay": 5.0}, timeout=0.2, fallback=False)
    with pytest.raises(ModelTimeoutError):
        model.invoke("hi", hybrid_route="large")


def test_fallback_answer_is_counted_under_the_model_that_answered(default_router):
    from langchain_core.callbacks import get_usage_metadata_callback

    model = hybrid(default_router, large={"error": "down"})
    with get_usage_metadata_callback() as usage:
        model.invoke("hi", hybrid_route="large")
    assert set(usage.usage_metadata) == {"fake-small"}


def test_a_bad_call_kwarg_is_raised_naming_the_route_not_hidden_by_fallback(default_router):
    model = hybrid(default_router)
    with pytest.raises(TypeError, match="unexpected call kwargs") as info:
        model.invoke("hi", hybrid_route="small", bogus=1)
    assert any("the small model (fake-small)" in note for note in info.value.__notes__)
    assert not model.large.calls


def test_a_model_failing_n_times_in_a_row_cools_down(default_router):
    model = hybrid(default_router, small={"error": "down"}, cooldown_after=2, cooldown_s=60)
    reasons = [
        model.invoke("hi", hybrid_route="small").response_metadata["hybrid_router"]["fallback_reason"] for _ in range(3)
    ]
    assert "RuntimeError: down" in reasons[1] and reasons[2] == "cooldown"
    assert len(model.small.calls) == 2 and len(model.large.calls) == 3

"""Fallback policy (issue 12, items 3, 15-17): which errors fall back, cooldowns, logging, cancelling, first output.

Plain functions and generators stand in for models: the runner is exercised as the wrappers and the server use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import httpx
import openai
import pytest

from hybrid_router import AllModelsFailedError, FallbackRunner, ModelTimeoutError, RouteDecision
from hybrid_router.core.fallback import COOLDOWN_REASON, FallbackPolicy

SMALL = RouteDecision("small", 0.9, 0.5, "kwarg:quality_threshold", 0.5)
KEY = "sk-proj-abcdefghijklmnop1234567890"
REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


class StatusError(Exception):
    """An upstream error carrying an HTTP status the way the server's BackendError does."""

    def __init__(self, status: int):
        super().__init__(f"upstream said {status}")
        self.status = status


def openai_status(status: int) -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST, json={"error": {"message": "no"}})
    return openai.APIStatusError("upstream error", response=response, body=None)


FALLS_BACK = [
    ModelTimeoutError("slow"),
    ConnectionError("refused"),
    httpx.ConnectError("refused", request=REQUEST),
    httpx.ReadTimeout("slow", request=REQUEST),
    openai.APIConnectionError(request=REQUEST),
    openai.APITimeoutError(request=REQUEST),
    openai_status(500),
    openai_status(503),
    openai_status(429),
    StatusError(502),
    json.JSONDecodeError("Expecting value", "<html>", 0),
    RuntimeError("something else went wrong"),  # unknown errors fall back by default (LiteLLM does the same)
]
RAISES = [
    TypeError("unexpected keyword argument 'tempreature'"),
    AttributeError("'NoneType' object has no attribute 'x'"),
    openai_status(400),
    openai_status(401),
    openai_status(404),
    StatusError(422),
]


def failing(exc: BaseException, calls: list[str] | None = None):
    def call(target: str) -> str:
        if calls is not None:
            calls.append(target)
        if target == "small":
            raise exc
        return "large answer"

    return call


@pytest.mark.parametrize("exc", FALLS_BACK, ids=lambda e: type(e).__name__)
def test_unavailable_or_garbage_upstreams_fall_back(exc):
    result, answered = FallbackRunner().run(SMALL, failing(exc))
    assert result == "large answer" and answered.fallback and answered.answered_by == "large"


@pytest.mark.parametrize("exc", RAISES, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status_code', '')}")
def test_programming_errors_and_request_errors_are_raised_naming_the_route(exc):
    calls: list[str] = []
    runner = FallbackRunner(model_names=("tiny", "huge"))
    with pytest.raises(type(exc)) as info:
        runner.run(SMALL, failing(exc, calls))
    assert calls == ["small"]  # the other model was not asked
    assert any("the small model (tiny)" in note for note in info.value.__notes__)


def test_error_classes_are_configurable():
    strict = FallbackPolicy(fallback_unknown=False)
    with pytest.raises(RuntimeError):
        FallbackRunner(policy=strict).run(SMALL, failing(RuntimeError("?")))
    lenient = FallbackPolicy(raise_on=(), fallback_on=(TypeError,))
    assert FallbackRunner(policy=lenient).run(SMALL, failing(TypeError("bad"))).__getitem__(1).fallback
    by_name = FallbackPolicy(raise_on=("httpx.ConnectError",))
    assert by_name.classify(httpx.ConnectError("x", request=REQUEST)) == "raise"
    assert by_name.classify(httpx.ReadError("x", request=REQUEST)) == "fallback"
    assert FallbackPolicy(fallback_statuses=frozenset({404})).classify(openai_status(404)) == "fallback"


def test_every_fallback_is_logged_as_a_warning_with_route_type_and_redacted_message(caplog):
    exc = openai_status(503)
    exc.args = (f"upstream rejected key {KEY} (Authorization: Bearer abcdefghijkl)",)
    with caplog.at_level(logging.WARNING, logger="hybrid_router.core.fallback"):
        _, answered = FallbackRunner().run(SMALL, failing(exc))
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert "route=small" in text and "APIStatusError" in text and "[REDACTED]" in text
    assert KEY not in text and "abcdefghijkl" not in text
    assert KEY not in answered.fallback_reason and "[REDACTED]" in answered.fallback_reason


def test_both_failing_error_text_is_redacted():
    def both(target: str) -> str:
        raise ConnectionError(f"{target} refused api_key={KEY}")

    with pytest.raises(AllModelsFailedError) as info:
        FallbackRunner().run(SMALL, both)
    assert KEY not in str(info.value) and "[REDACTED]" in str(info.value)


def test_cooldown_skips_a_model_after_n_consecutive_failures_then_tries_it_again():
    calls: list[str] = []
    runner = FallbackRunner(cooldown_after=2, cooldown_s=0.3)
    call = failing(ConnectionError("down"), calls)
    reasons = [runner.run(SMALL, call)[1].fallback_reason for _ in range(3)]
    assert "ConnectionError" in reasons[0] and "ConnectionError" in reasons[1]
    assert reasons[2] == COOLDOWN_REASON
    assert calls == ["small", "large", "small", "large", "large"]  # the third call did not ask small
    time.sleep(0.35)
    calls.clear()
    _, answered = runner.run(SMALL, lambda target: calls.append(target) or target)
    assert calls == ["small"] and not answered.fallback  # after the period small is asked again, and recovers
    _, answered = runner.run(SMALL, failing(ConnectionError("down")))
    assert answered.fallback_reason != COOLDOWN_REASON  # the success reset its count


def test_a_cooling_model_is_still_asked_when_the_other_fails_and_errors_never_cool():
    runner = FallbackRunner(cooldown_after=1, cooldown_s=60)
    runner.run(SMALL, failing(ConnectionError("down")))
    calls: list[str] = []

    def large_down(target: str) -> str:
        calls.append(target)
        if target == "large":
            raise ConnectionError("large down too")
        return "small answer"

    result, answered = runner.run(SMALL, large_down)
    assert calls == ["large", "small"] and result == "small answer" and not answered.fallback
    raising = FallbackRunner(cooldown_after=1, cooldown_s=60)
    with pytest.raises(TypeError):
        raising.run(SMALL, failing(TypeError("bug")))
    assert not raising.cooldowns.cooling("small")


def test_bad_policy_settings_are_rejected():
    for kwargs in ({"idle_timeout": 0}, {"cooldown_after": 0}, {"cooldown_after": 2, "cooldown_s": 0}):
        with pytest.raises(ValueError):
            FallbackRunner(**kwargs)


# ---------------------------------------------------------------- streams: first output, idle time, closing
def is_text(chunk: str) -> bool:
    return chunk != ""


def test_an_empty_role_chunk_is_not_output_so_a_failure_after_it_falls_back():
    def start(target: str):
        yield ""  # the role chunk
        if target == "small":
            raise ConnectionError("dropped")
        yield from ["a", "b"]

    chunks = [c for c, _ in FallbackRunner().stream(SMALL, start, is_output=is_text)]
    assert chunks == ["", "a", "b"]


def test_first_output_timeout_counts_empty_chunks_as_no_output():
    def start(target: str):
        yield ""
        if target == "small":
            time.sleep(3)
        yield target

    started = time.perf_counter()
    pairs = list(FallbackRunner(timeout=0.3).stream(SMALL, start, is_output=is_text))
    assert [c for c, _ in pairs] == ["", "large"] and pairs[0][1].fallback
    assert time.perf_counter() - started < 2.0


def test_idle_timeout_between_chunks_raises_and_closes_the_stream():
    closed = threading.Event()

    def start(target: str):
        try:
            yield "first"
            time.sleep(1.0)
            yield "late"
        finally:
            closed.set()

    got = []
    with pytest.raises(ModelTimeoutError):
        for chunk, _ in FallbackRunner(idle_timeout=0.2).stream(SMALL, start):
            got.append(chunk)
    assert got == ["first"]
    assert closed.wait(2.0)  # closed by its worker once the chunk in flight arrived


def test_a_timed_out_sync_stream_is_closed_and_a_slow_start_is_timed():
    closed = threading.Event()

    def start(target: str):
        if target == "small":
            time.sleep(0.6)  # slow to even return its generator

            def gen():
                try:
                    yield "small"
                finally:
                    closed.set()

            return gen()
        return iter(["large"])

    started = time.perf_counter()
    chunks = [c for c, _ in FallbackRunner(timeout=0.2).stream(SMALL, start)]
    assert chunks == ["large"] and time.perf_counter() - started < 0.5
    assert closed.wait(2.0)


def test_a_stream_the_consumer_abandons_is_closed():
    closed = threading.Event()

    def start(target: str):
        try:
            yield from ["a", "b", "c"]
        finally:
            closed.set()

    for timeout in (None, 1.0):
        closed.clear()
        pairs = FallbackRunner(timeout=timeout).stream(SMALL, start)
        next(pairs)
        pairs.close()
        assert closed.wait(2.0)


async def test_timed_out_async_calls_are_cancelled_and_streams_closed():
    cancelled = asyncio.Event()
    closed = asyncio.Event()

    async def slow(target: str) -> str:
        if target == "small":
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return target

    result, answered = await FallbackRunner(timeout=0.1).arun(SMALL, slow)
    assert result == "large" and answered.fallback and cancelled.is_set()

    async def agen(target: str):
        try:
            yield ""
            if target == "small":
                await asyncio.sleep(5)
            yield target
        finally:
            if target == "small":
                closed.set()

    pairs = [c async for c, _ in FallbackRunner(timeout=0.2).astream(SMALL, agen, is_output=is_text)]
    assert pairs == ["", "large"] and closed.is_set()

    async def idle(target: str):
        yield "first"
        await asyncio.sleep(5)
        yield "late"

    with pytest.raises(ModelTimeoutError):
        async for _ in FallbackRunner(idle_timeout=0.1).astream(SMALL, idle):
            pass

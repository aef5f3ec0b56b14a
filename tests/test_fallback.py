"""FallbackRunner: errors and time-outs before output fall back; errors after output are raised."""

import asyncio
import time

import pytest

from hybrid_router import AllModelsFailedError, FallbackRunner, ModelTimeoutError, RouteDecision

SMALL = RouteDecision("small", 0.9, 0.5, "kwarg:quality_threshold", 0.5)


def answer(target):
    return f"answer from {target}"


def fail_small(target):
    if target == "small":
        raise ConnectionError("small is down")
    return answer(target)


def test_chosen_model_answers():
    result, answered = FallbackRunner(model_names=("s", "L")).run(SMALL, answer)
    assert result == "answer from small" and not answered.fallback
    assert answered.metadata()["model"] == "s"


def test_error_falls_back_with_reason():
    result, answered = FallbackRunner(model_names=("s", "L")).run(SMALL, fail_small)
    meta = answered.metadata()
    assert result == "answer from large" and meta["fallback"] is True and meta["route"] == "small"
    assert meta["answered_by"] == "large" and "ConnectionError: small is down" in meta["fallback_reason"]


def test_no_fallback_reraises_and_both_failing_is_reported():
    with pytest.raises(ConnectionError):
        FallbackRunner(fallback=False).run(SMALL, fail_small)

    def always(target):
        raise RuntimeError(target)

    with pytest.raises(AllModelsFailedError, match="small: RuntimeError.*large: RuntimeError"):
        FallbackRunner().run(SMALL, always)


def test_timeout_falls_back():
    def slow_small(target):
        if target == "small":
            time.sleep(2)
        return answer(target)

    start = time.perf_counter()
    result, answered = FallbackRunner(timeout=0.2).run(SMALL, slow_small)
    assert result == "answer from large" and "timed out" in answered.fallback_reason
    assert time.perf_counter() - start < 1.5


def test_stream_falls_back_before_first_chunk_only():
    def start(target):
        if target == "small":
            raise ConnectionError("down")
        yield from ["a", "b"]

    chunks = list(FallbackRunner().stream(SMALL, start))
    assert [c for c, _ in chunks] == ["a", "b"] and all(a.fallback for _, a in chunks)

    def breaks_midway(target):
        yield "first"
        raise ConnectionError("lost connection")

    with pytest.raises(ConnectionError, match="lost connection"):
        list(FallbackRunner().stream(SMALL, breaks_midway))


def test_stream_timeout_on_first_chunk():
    def start(target):
        if target == "small":
            time.sleep(2)
        yield target

    chunks = list(FallbackRunner(timeout=0.2).stream(SMALL, start))
    assert [c for c, _ in chunks] == ["large"]


async def test_async_run_and_stream():
    async def slow(target):
        if target == "small":
            await asyncio.sleep(5)
        return target

    result, answered = await FallbackRunner(timeout=0.1).arun(SMALL, slow)
    assert result == "large" and isinstance(answered, object) and answered.fallback

    async def agen(target):
        if target == "small":
            raise ConnectionError("down")
            yield  # pragma: no cover
        for c in "xy":
            yield c

    got = [c async for c, _ in FallbackRunner().astream(SMALL, agen)]
    assert got == ["x", "y"]

    async def hang_then(target):
        if target == "small":
            await asyncio.sleep(5)
        yield target

    got = [c async for c, _ in FallbackRunner(timeout=0.1).astream(SMALL, hang_then)]
    assert got == ["large"]


def test_bad_timeout():
    with pytest.raises(ValueError, match="timeout"):
        FallbackRunner(timeout=0)
    assert issubclass(ModelTimeoutError, TimeoutError)

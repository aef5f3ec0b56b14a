"""``hybrid-llm serve`` against upstreams that fail on purpose (issue 12, items 1, 3, 5, 6 and 9).

Real sockets throughout: stub upstreams and the router app on 127.0.0.1, clients that disconnect mid-stream. Every
wait is bounded by a few seconds so a regression fails fast instead of hanging.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from hybrid_router.serve.app import RouterService, create_app
from hybrid_router.serve.backends import OpenAIBackend

from .serve_stubs import StubUpstream, connections_to, disconnect_after_first_chunk, serving, wait_until

SECRET = "sk-test-ABCDEFGHIJKLMNOP123456"


def ask(content: str, *, model: str = "hybrid:small", stream: bool = False, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **extra}


@pytest.fixture
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as upstream:
        yield upstream


def router_app(default_router, stub: StubUpstream, small_timeout: float = 10, **service: Any) -> Any:
    """The app over a content-driven small backend and an always-healthy large one, both at ``stub``."""
    small = OpenAIBackend(stub.url, "small", api_key=SECRET, timeout=small_timeout)
    large = OpenAIBackend(stub.url, "large:ok", timeout=10)
    return create_app(RouterService(default_router, small, large, **service))


def post(base: str, body: dict[str, Any], timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json=body, timeout=timeout)


def settled(stub: StubUpstream, timeout: float = 5) -> bool:
    """No upstream request still running and no socket to the stub left open (no CLOSE-WAIT)."""
    return wait_until(lambda: stub.active == 0 and connections_to(stub.port) == 0, timeout)


# ---------------------------------------------------------------- item 1: every upstream stream is closed


def test_client_disconnects_close_the_upstream_and_never_deadlock_the_pool(default_router, stub):
    with serving(router_app(default_router, stub, concurrency=4)) as base:
        for _ in range(8):  # the issue: at most 4 of these and every small request hung
            first = disconnect_after_first_chunk(base, ask("pause", stream=True))
            assert b"data:" in first
        assert settled(stub), (stub.active, connections_to(stub.port))
        started = time.monotonic()
        answer = post(base, ask("ok"))
        streamed = post(base, ask("ok", stream=True))
        assert answer.status_code == 200 and answer.headers["x-hybrid-route"] == "small"
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
        assert time.monotonic() - started < 5
        assert httpx.get(base + "/health", timeout=5).json() == {"status": "ok"}
    assert settled(stub)


def test_timed_out_streams_are_closed_and_fall_back(default_router, stub):
    with serving(router_app(default_router, stub, timeout=1)) as base:
        for _ in range(6):  # first chunk 2 s late with a 1 s timeout: the large model answers
            response = post(base, ask("late", stream=True))
            assert response.status_code == 200 and response.headers["x-hybrid-route"] == "large"
            assert response.headers["x-hybrid-fallback"] == "true"
        for _ in range(3):
            response = post(base, ask("late"))
            assert response.status_code == 200 and response.headers["x-hybrid-route"] == "large"
        assert post(base, ask("ok", stream=True)).headers["x-hybrid-route"] == "small"
        assert settled(stub), (stub.active, connections_to(stub.port))


def test_normal_and_failed_streams_leave_no_socket_open(default_router, stub):
    with serving(router_app(default_router, stub)) as base:
        for content in ("ok", "nodone", "err500", "onlydone", "foo"):
            for stream in (False, True):
                post(base, ask(content, stream=stream))
        assert settled(stub), (stub.active, connections_to(stub.port))


# ---------------------------------------------------------------- item 5: upstream answers are validated


@pytest.mark.parametrize("content", ["foo", "list", "onlydone", "err500"])
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_or_empty_answers_fall_back_to_the_healthy_model(default_router, stub, content, stream):
    with serving(router_app(default_router, stub)) as base:
        response = post(base, ask(content, stream=stream))
    assert response.status_code == 200, response.text
    assert response.headers["x-hybrid-route"] == "large" and response.headers["x-hybrid-fallback"] == "true"
    if stream:
        first = json.loads(response.text.split("\n\n")[0].removeprefix("data: "))
        assert first["hybrid_router"]["fallback_reason"].startswith("small model")
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"] == "stub answer"


@pytest.mark.parametrize("content", ["foo", "list", "onlydone"])
def test_malformed_answers_without_fallback_are_502(default_router, stub, content):
    with serving(router_app(default_router, stub, fallback=False)) as base:
        for stream in (False, True):
            response = post(base, ask(content, stream=stream))
            assert response.status_code == 502, response.text
            assert response.json()["error"]["code"] == "upstream_error"


def test_a_stream_cut_without_done_is_an_error_to_the_client(default_router, stub):
    with serving(router_app(default_router, stub)) as base:
        response = post(base, ask("nodone", stream=True))
    events = [e.removeprefix("data: ") for e in response.text.strip().split("\n\n")]
    assert response.status_code == 200 and events[0].startswith("{")
    assert events[-1] != "[DONE]", "a truncated upstream stream was passed on as a clean end"
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_error" and "without [DONE]" in error["message"]


def test_a_finished_stream_without_done_is_a_clean_end(default_router, stub):
    with serving(router_app(default_router, stub)) as base:
        response = post(base, ask("nodone_finished", stream=True))
    assert response.headers["x-hybrid-route"] == "small" and response.headers["x-hybrid-fallback"] == "false"
    assert response.text.rstrip().endswith("data: [DONE]") and '"error"' not in response.text


# ---------------------------------------------------------------- item 3 (server side): no key in any output


@pytest.mark.parametrize("fallback", [True, False])
def test_an_echoed_api_key_is_redacted_from_bodies_and_logs(default_router, stub, caplog, fallback):
    caplog.set_level(logging.INFO, logger="hybrid_router")
    with serving(router_app(default_router, stub, fallback=fallback)) as base:
        responses = [post(base, ask("echo401", stream=stream)) for stream in (False, True)]
    assert stub.requests[0]["authorization"] == f"Bearer {SECRET}"  # the stub really echoed it
    for response in responses:
        assert response.status_code in (200, 502)
        assert SECRET not in response.text and SECRET not in str(response.headers)
        assert "401" in response.text
    assert SECRET not in caplog.text


# ---------------------------------------------------------------- item 6: --max-tokens reaches URL backends


def test_default_max_tokens_is_sent_to_url_backends(default_router, stub):
    small = OpenAIBackend(stub.url, "small:ok", max_tokens=7)
    large = OpenAIBackend(stub.url, "large:ok", max_tokens=7)
    with serving(create_app(RouterService(default_router, small, large))) as base:
        post(base, ask("ok"))
        post(base, ask("ok", model="hybrid:large", stream=True))
        post(base, ask("ok", max_tokens=3))
        post(base, ask("ok", max_completion_tokens=4))
    sent = [(r["body"].get("max_tokens"), r["body"].get("max_completion_tokens")) for r in stub.requests]
    assert sent == [(7, None), (7, None), (3, None), (None, 4)]


# ---------------------------------------------------------------- item 9: a hung backend does not slow the other


def test_a_hung_small_upstream_does_not_slow_large_requests(default_router, stub, caplog):
    caplog.set_level(logging.WARNING, logger="hybrid_router")
    with serving(router_app(default_router, stub, small_timeout=3, concurrency=4, fallback=False)) as base:
        hung = [threading.Thread(target=lambda: post(base, ask("hang"), timeout=15), daemon=True) for _ in range(8)]
        for thread in hung:
            thread.start()
        assert wait_until(lambda: stub.active >= 4, 5)
        times = []
        for _ in range(10):
            started = time.monotonic()
            response = post(base, ask("ok", model="hybrid:large"), timeout=5)
            times.append(time.monotonic() - started)
            assert response.status_code == 200 and response.headers["x-hybrid-route"] == "large"
        assert sorted(times)[5] < 0.5, times
        assert stub.active == 4  # the small backend's limit: the other 4 wait for a slot, not upstream sockets
        for thread in hung:
            thread.join(15)  # httpx times the hung calls out after 3 s: 502s, each logged
    assert "502: upstream model failed" in caplog.text
    assert settled(stub)


# ---------------------------------------------------------------- the fallback runner's limits, through the server


def test_an_idle_stream_is_cut_with_an_error_event_and_closed(default_router, stub):
    with serving(router_app(default_router, stub, idle_timeout=0.2)) as base:
        started = time.monotonic()
        response = post(base, ask("pause", stream=True))
        assert time.monotonic() - started < 3
        events = response.text.strip().split("\n\n")
        assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"]["content"] == "stub"
        assert "error" in json.loads(events[-1].removeprefix("data: "))
        assert settled(stub), (stub.active, connections_to(stub.port))


def test_a_failing_model_cools_down(default_router, stub):
    with serving(router_app(default_router, stub, cooldown_after=2, cooldown_s=60)) as base:
        reasons = [post(base, ask("err500")).json()["hybrid_router"]["fallback_reason"] for _ in range(3)]
    assert reasons[0].startswith("small model failed") and reasons[2] == "cooldown"
    assert [r["body"]["model"] for r in stub.requests] == ["small", "large:ok", "small", "large:ok", "large:ok"]

"""``hybrid-llm serve`` refuses oversized, deeply nested, badly encoded and unauthenticated requests (issue 12, 7-8).

The router app runs on a real socket with stub upstreams on 127.0.0.1; each refusal must be an OpenAI-style error
body, fast, and must never reach an upstream.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import httpx
import pytest

from hybrid_router.serve.app import RouterService, create_app
from hybrid_router.serve.backends import OpenAIBackend

from .serve_stubs import StubUpstream, serving

KEY = "router-key-0123456789"
HELLO = b'{"model": "hybrid:small", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
def base(default_router, stub) -> Iterator[str]:
    service = RouterService(default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
    with serving(create_app(service, max_body_bytes=4096)) as url:
        yield url


@pytest.fixture(scope="module")
def secured(default_router, stub) -> Iterator[str]:
    service = RouterService(default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
    with serving(create_app(service, api_key=KEY)) as url:
        yield url


def post_raw(base: str, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
        timeout=10,
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


# ---------------------------------------------------------------- item 7: size, nesting, encoding


def test_a_body_over_the_limit_is_413_before_parsing(base, stub):
    before = len(stub.requests)
    big = b'{"model": "hybrid:small", "messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    assert error_of(post_raw(base, big), 413)["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the streamed size is checked
        yield big[:3000]
        yield big[3000:]

    assert error_of(post_raw(base, chunked()), 413)["code"] == "request_too_large"
    assert post_raw(base, HELLO).status_code == 200
    assert len(stub.requests) == before + 1


def test_the_default_limit_refuses_a_10_mb_message_fast(default_router, stub):
    service = RouterService(default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
    body = b'{"model": "hybrid", "messages": [{"role": "user", "content": "' + b"word " * 2_000_000 + b'"}]}'
    with serving(create_app(service)) as url:
        started = time.monotonic()
        assert error_of(post_raw(url, body), 413)["code"] == "request_too_large"
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 50_000 + b"]" * 50_000,
        b'{"model": "hybrid", "messages": [{"role": "user", "content": "hi", "x": ' + b"[" * 200 + b"]" * 200 + b"}]}",
        b'{"model": "hybrid:small", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
        b'{"model": "hybrid:small", "messages": [{"role": "user", "content": "hi", "\\udfff": 1}]}',
    ],
    ids=["50k-brackets", "nested-200", "lone-surrogate", "surrogate-key"],
)
def test_deep_nesting_and_lone_surrogates_are_400(default_router, stub, raw):
    service = RouterService(default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
    with serving(create_app(service)) as url:
        error = error_of(post_raw(url, raw), 400)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"


def test_a_lone_surrogate_routed_by_score_is_400_not_500(base):
    raw = b'{"model": "hybrid", "messages": [{"role": "user", "content": "hi \\ud800 there"}]}'
    assert error_of(post_raw(base, raw), 400)["code"] == "invalid_json"


# ---------------------------------------------------------------- item 8: optional API key


def test_every_route_but_health_needs_the_key(secured):
    assert httpx.get(f"{secured}/health", timeout=5).json() == {"status": "ok"}
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}, {"authorization": f"Basic {KEY}"}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/docs")):
            response = httpx.request(method, secured + path, headers=headers, content=HELLO, timeout=5)
            error = error_of(response, 401)
            assert error["code"] == "invalid_api_key" and KEY not in response.text
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(f"{secured}/v1/models", headers=good, timeout=5).status_code == 200
    assert post_raw(secured, HELLO, good).status_code == 200


def test_the_openai_client_authenticates_with_the_key(secured):
    import openai

    client = openai.OpenAI(base_url=f"{secured}/v1", api_key=KEY, max_retries=0, timeout=10)
    answer = client.chat.completions.create(model="hybrid:large", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "stub answer"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{secured}/v1", api_key="nope", max_retries=0).models.list()

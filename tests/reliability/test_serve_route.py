"""``POST /v1/route``: the routing decision for a chat-completions body, without calling a model (issue 15, part 3).

The router app runs on a real socket with stub upstreams on 127.0.0.1. The answer must be what
:meth:`HybridRouter.decide` says for the same body; bad bodies and missing keys get the chat endpoint's OpenAI-style
errors; and no upstream is ever called.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterator

import httpx
import pytest

from hybrid_router.core.options import RoutingOptions
from hybrid_router.serve.app import RouterService, create_app
from hybrid_router.serve.backends import OpenAIBackend

from .serve_stubs import StubUpstream, serving

KEY = "router-key-route-0123456789"
MESSAGES = [{"role": "user", "content": "Prove that there are infinitely many primes."}]
CONVERSATION = [
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "Now integrate x^2 sin(x) from 0 to pi and explain each step."},
]


@pytest.fixture(scope="module")
def stub() -> Iterator[StubUpstream]:
    with StubUpstream() as upstream:
        yield upstream


def _service(router: Any, stub: StubUpstream) -> RouterService:
    return RouterService(router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))


@pytest.fixture(scope="module")
def base(default_router, stub) -> Iterator[str]:
    with serving(create_app(_service(default_router, stub), max_body_bytes=4096)) as url:
        yield url


@pytest.fixture(scope="module")
def secured(default_router, stub) -> Iterator[str]:
    with serving(create_app(_service(default_router, stub), api_key=KEY)) as url:
        yield url


@pytest.fixture(autouse=True)
def no_upstream_call(stub) -> Iterator[None]:
    yield
    assert stub.requests == [], "/v1/route called an upstream model"


def route(base: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base}/v1/route", content=content, headers={"content-type": "application/json", **(headers or {})}, timeout=30
    )


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


# (extra body fields, options the router is asked with, the layer that set them)
CASES = [
    ({}, RoutingOptions(), "none"),
    ({"model": "hybrid"}, RoutingOptions(), "none"),
    ({"model": "hybrid:0.7"}, RoutingOptions(quality_threshold=0.7), "model"),
    ({"model": "hybrid:0.05"}, RoutingOptions(quality_threshold=0.05), "model"),
    ({"model": "hybrid:0.7", "quality_threshold": 0.2}, RoutingOptions(quality_threshold=0.2), "request"),
    ({"max_quality_drop": 0.1}, RoutingOptions(max_quality_drop=0.1), "request"),
    ({"model": "hybrid", "large_share": 0.3}, RoutingOptions(large_share=0.3), "request"),
    ({"model": "hybrid", "strategy": "route"}, RoutingOptions(strategy="route"), "none"),
    ({"stream": True, "max_tokens": 5, "temperature": 0.2}, RoutingOptions(), "none"),
]


@pytest.mark.parametrize("messages", [MESSAGES, CONVERSATION], ids=["one-turn", "conversation"])
@pytest.mark.parametrize("extra, options, source", CASES, ids=[json.dumps(c[0]) for c in CASES])
def test_route_is_the_routers_decision_for_the_same_body(base, default_router, messages, extra, options, source):
    response = route(base, {"messages": messages, **extra})
    assert response.status_code == 200, response.text
    expected = default_router.decide(messages, replace(options, strategy="route"), source)
    got = response.json()
    assert got.pop("object") == "hybrid.route"
    assert got.pop("score") == pytest.approx(expected.score, abs=1e-6)
    assert got == {k: v for k, v in expected.to_dict().items() if k != "score"}
    assert set(expected.to_dict()) == {
        "target",
        "score",
        "threshold",
        "threshold_source",
        "requested",
        "strategy",
        "verify_threshold",
        "router_input",
    }
    assert response.headers["x-hybrid-decision"] == expected.target
    assert response.headers["x-hybrid-score"] == f"{expected.score:.4f}"
    assert response.headers["content-type"] == "application/json"  # a decision, never an SSE stream


def test_the_threshold_moves_the_decision(base, default_router):
    score = default_router.score(MESSAGES)
    low, high = max(0.0, score - 0.05), min(1.0, score + 0.05)
    assert route(base, {"model": f"hybrid:{low}", "messages": MESSAGES}).json()["target"] == "small"
    assert route(base, {"model": f"hybrid:{high}", "messages": MESSAGES}).json()["target"] == "large"


@pytest.mark.parametrize(
    "extra, target, source",
    [
        ({"model": "hybrid:small"}, "small", "model:route"),
        ({"model": "hybrid:large"}, "large", "model:route"),
        ({"model": "hybrid:0.9", "hybrid_route": "small"}, "small", "request:route"),
        ({"route": "large"}, "large", "request:route"),
    ],
)
def test_forced_routes_have_no_score(base, extra, target, source):
    response = route(base, {"messages": MESSAGES, **extra})
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["target"] == target and got["requested"] == target and got["threshold_source"] == source
    assert got["score"] is None and got["threshold"] is None
    assert response.headers["x-hybrid-decision"] == target and response.headers["x-hybrid-score"] == ""


@pytest.mark.parametrize(
    "body, status, param, code",
    [
        (b"{not json", 400, None, "invalid_json"),
        (b"[1, 2, 3]", 400, None, None),
        ({"model": "hybrid"}, 400, "messages", None),
        ({"messages": []}, 400, "messages", None),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "messages[0]", None),
        ({"messages": MESSAGES, "quality_threshold": 1.5}, 400, "quality_threshold", "invalid_routing_option"),
        ({"messages": MESSAGES, "model": "hybrid:2"}, 400, "model", "invalid_threshold"),
        ({"messages": MESSAGES, "model": "gpt-4o"}, 404, "model", "model_not_found"),
        ({"messages": MESSAGES, "strategy": "yolo"}, 400, "strategy", "invalid_routing_option"),
        ({"messages": MESSAGES, "max_tokens": 0}, 400, "max_tokens", None),
        ({"messages": MESSAGES, "n": 2}, 400, "n", None),
        ({"messages": MESSAGES, "x": "[" * 100 + "]" * 100}, 200, None, None),  # a string, not nesting
        (b'{"messages": ' + b"[" * 100 + b"]" * 100 + b"}", 400, None, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, None, "invalid_json"),
    ],
)
def test_bad_bodies_get_openai_style_errors(base, body, status, param, code):
    response = route(base, body)
    if status == 200:
        assert response.status_code == 200, response.text
        return
    error = error_of(response, status)
    assert error["param"] == param and error["code"] == code
    assert error["type"] == "invalid_request_error"


def test_a_body_over_the_size_limit_is_a_413_before_parsing(base):
    big = {"messages": [{"role": "user", "content": "x" * 5000}]}
    error = error_of(route(base, big), 413)
    assert error["code"] == "request_too_large" and "4096 bytes" in error["message"]
    error = error_of(route(base, b"{" * 5000), 413)  # never parsed: not a 400 for bad JSON
    assert error["code"] == "request_too_large"


def test_the_api_key_applies_to_route(secured):
    body = {"model": "hybrid:large", "messages": MESSAGES}
    error = error_of(route(secured, body), 401)
    assert error["code"] == "invalid_api_key"
    error_of(route(secured, body, {"authorization": "Bearer wrong-key"}), 401)
    answer = route(secured, body, {"authorization": f"Bearer {KEY}"})
    assert answer.status_code == 200 and answer.json()["target"] == "large"
    assert httpx.get(f"{secured}/health", timeout=5).status_code == 200


def test_health_names_the_worker_process(base):
    import os

    health = httpx.get(f"{base}/health", timeout=5)
    assert health.json() == {"status": "ok"} and health.headers["x-hybrid-worker"] == str(os.getpid())


def test_concurrent_route_calls_all_answer(base, default_router):
    import concurrent.futures

    bodies = [{"model": f"hybrid:{t / 20}", "messages": CONVERSATION[: 2 + 2 * (t % 2)]} for t in range(20)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: route(base, b), bodies))
    for body, answer in zip(bodies, answers):
        assert answer.status_code == 200, answer.text
        expected = default_router.decide(
            body["messages"], RoutingOptions(quality_threshold=float(body["model"][7:]), strategy="route"), "model"
        )
        assert answer.json()["target"] == expected.target

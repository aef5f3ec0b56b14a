"""``hybrid-llm serve``: the router as an OpenAI-compatible endpoint, driven by the ``openai`` client itself.

The small model is the shipped SmolLM2 in process; the large model is the session's real ``transformers serve``
process. A second router app stands in as an upstream that can be stopped (fallback), all on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
import time
from typing import Any, Iterator

import httpx
import pytest

from hybrid_router.local.server import free_port
from hybrid_router.serve.app import RequestError, RouterService, create_app, model_options, parse_request
from hybrid_router.serve.backends import LocalBackend, OpenAIBackend

pytestmark = pytest.mark.real_model

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@contextlib.contextmanager
def serving(service: RouterService) -> Iterator[str]:
    """Run the app with uvicorn in a thread on a free loopback port; yields the /v1 base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "router app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def small_backend(small_local_chat):
    return LocalBackend(small_local_chat, max_new_tokens=6)


@pytest.fixture(scope="module")
def router_url(default_router, small_backend, openai_server, large_model_name) -> Iterator[str]:
    large = OpenAIBackend(openai_server, large_model_name, name="large-standin")
    with serving(RouterService(default_router, small_backend, large)) as url:
        yield url
    large.close()


@pytest.fixture(scope="module")
def client(router_url):
    from openai import OpenAI

    return OpenAI(base_url=router_url, api_key="unused", max_retries=0, timeout=120)


# ---------------------------------------------------------------- request parsing (no server)


def test_model_field_selects_the_routing():
    assert not model_options("hybrid").is_set
    assert model_options("hybrid:0.7").quality_threshold == 0.7
    assert model_options("hybrid:large").route == "large"
    with pytest.raises(RequestError) as err:
        model_options("gpt-4o")
    assert err.value.status == 404 and err.value.code == "model_not_found"
    with pytest.raises(RequestError) as err:
        model_options("hybrid:1.5")
    assert err.value.status == 400


def test_body_threshold_overrides_the_model_field_and_is_not_forwarded():
    parsed = parse_request(json.dumps({"model": "hybrid:0.9", "quality_threshold": 0.2, "messages": MESSAGES}))
    assert parsed.options.quality_threshold == 0.2 and parsed.source == "request"
    assert "quality_threshold" not in parsed.body


# ---------------------------------------------------------------- the openai client against the router


def test_sync_small_route_names_the_model_and_header(client):
    raw = client.chat.completions.with_raw_response.create(model="hybrid:small", messages=MESSAGES, max_tokens=4)
    completion = raw.parse()
    assert raw.headers["x-hybrid-route"] == "small" and raw.headers["x-hybrid-fallback"] == "false"
    assert completion.model == "smollm2-135m"
    assert completion.choices[0].message.content
    assert 0 < completion.usage.completion_tokens <= 4
    assert completion.model_extra["hybrid_router"]["threshold_source"] == "model:route"


def test_sync_large_route_goes_through_the_real_upstream(client):
    raw = client.chat.completions.with_raw_response.create(model="hybrid:large", messages=MESSAGES, max_tokens=4)
    completion = raw.parse()
    assert raw.headers["x-hybrid-route"] == "large" and completion.model == "large-standin"
    assert completion.choices[0].message.content and completion.usage.completion_tokens > 0


def test_threshold_in_model_name_and_in_body_route_by_score(client, default_router):
    score = default_router.score(MESSAGES)
    low = client.chat.completions.create(model="hybrid:0.0", messages=MESSAGES, max_tokens=2)
    assert low.model_extra["hybrid_router"]["answered_by"] == "small"
    assert low.model_extra["hybrid_router"]["score"] == pytest.approx(score, abs=1e-4)
    high = client.chat.completions.create(
        model="hybrid", messages=MESSAGES, max_tokens=2, extra_body={"quality_threshold": 1.0}
    )
    meta = high.model_extra["hybrid_router"]
    assert meta["threshold"] == 1.0 and meta["threshold_source"] == "request:quality_threshold"
    assert meta["route"] == ("small" if score >= 1.0 else "large")


def test_stream_small_and_large(client):
    for model, name in (("hybrid:small", "smollm2-135m"), ("hybrid:large", "large-standin")):
        chunks = list(
            client.chat.completions.create(
                model=model, messages=MESSAGES, max_tokens=4, stream=True, stream_options={"include_usage": True}
            )
        )
        text = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert len(text) >= 2, (model, chunks)
        assert {c.model for c in chunks} == {name}
        assert chunks[0].model_extra["hybrid_router"]["answered_by"] == model.split(":")[1]
        assert [c.usage.completion_tokens for c in chunks if c.usage][-1] > 0


async def test_async_client_stream(router_url):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=router_url, api_key="unused", max_retries=0)
    stream = await client.chat.completions.create(model="hybrid:small", messages=MESSAGES, max_tokens=3, stream=True)
    pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert pieces
    await client.close()


def test_tools_pass_through(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    for model in ("hybrid:small", "hybrid:large"):
        completion = client.chat.completions.create(model=model, messages=MESSAGES, tools=tools, max_tokens=3)
        assert completion.choices[0].finish_reason in ("stop", "length", "tool_calls")


# ---------------------------------------------------------------- fallback: the upstream server goes away


def test_fallback_when_the_large_server_is_stopped(default_router, small_backend):
    import openai

    upstream = serving(RouterService(default_router, small_backend, small_backend))
    large = OpenAIBackend(upstream.__enter__(), "hybrid:small", name="upstream-large", timeout=10)
    running = True
    try:
        with (
            serving(RouterService(default_router, small_backend, large)) as url,
            serving(RouterService(default_router, small_backend, large, fallback=False)) as strict_url,
        ):
            client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
            up = client.chat.completions.with_raw_response.create(model="hybrid:large", messages=MESSAGES, max_tokens=2)
            assert up.headers["x-hybrid-route"] == "large" and up.parse().model == "upstream-large"

            upstream.__exit__(None, None, None)
            running = False
            down = client.chat.completions.with_raw_response.create(
                model="hybrid:large", messages=MESSAGES, max_tokens=2
            )
            meta = down.parse().model_extra["hybrid_router"]
            assert down.headers["x-hybrid-route"] == "small" and down.headers["x-hybrid-fallback"] == "true"
            assert meta["route"] == "large" and meta["answered_by"] == "small"
            assert "large model failed" in meta["fallback_reason"]

            chunks = list(
                client.chat.completions.create(model="hybrid:large", messages=MESSAGES, max_tokens=3, stream=True)
            )
            assert chunks[0].model_extra["hybrid_router"]["fallback"] is True
            assert {c.model for c in chunks} == {"smollm2-135m"}

            strict = openai.OpenAI(base_url=strict_url, api_key="unused", max_retries=0)
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as err:
                    result = strict.chat.completions.create(
                        model="hybrid:large", messages=MESSAGES, max_tokens=2, stream=stream
                    )
                    list(result) if stream else None
                assert err.value.status_code == 502
                assert "upstream model failed" in err.value.body["message"] and "upstream-large" in str(err.value)
    finally:
        if running:
            upstream.__exit__(None, None, None)
        large.close()


# ---------------------------------------------------------------- bad requests


BAD_REQUESTS = [
    (b"{not json", 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    (b"[1, 2]", 400, None),
    (json.dumps({"model": "gpt-4o", "messages": MESSAGES}).encode(), 404, "model_not_found"),
    (json.dumps({"model": "hybrid:1.5", "messages": MESSAGES}).encode(), 400, "invalid_threshold"),
    (
        json.dumps({"model": "hybrid", "quality_threshold": -0.1, "messages": MESSAGES}).encode(),
        400,
        "invalid_routing_option",
    ),
    (
        json.dumps({"model": "hybrid", "quality_threshold": "high", "messages": MESSAGES}).encode(),
        400,
        "invalid_routing_option",
    ),
    (json.dumps({"model": "hybrid", "messages": []}).encode(), 400, None),
    (json.dumps({"model": "hybrid", "messages": [{"role": "user", "content": "  "}]}).encode(), 400, None),
    (json.dumps({"model": "hybrid", "messages": [{"role": "wizard", "content": "hi"}]}).encode(), 400, None),
    (json.dumps({"model": "hybrid", "messages": MESSAGES, "max_tokens": 0}).encode(), 400, None),
    (json.dumps({"model": "hybrid", "messages": MESSAGES, "stream": "yes"}).encode(), 400, None),
]


@pytest.mark.parametrize("raw, status, code", BAD_REQUESTS)
def test_bad_requests_get_openai_error_bodies(router_url, raw, status, code):
    response = httpx.post(
        f"{router_url}/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    if code:
        assert error["code"] == code


def test_openai_client_raises_typed_errors_and_unknown_paths_are_json(client, router_url):
    import openai

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError, match="quality_threshold"):
        client.chat.completions.create(model="hybrid", messages=MESSAGES, extra_body={"quality_threshold": 7})
    for method, path, status in (("GET", "/chat/completions", 405), ("POST", "/nope", 404)):
        response = httpx.request(method, router_url + path, timeout=10)
        assert response.status_code == status and response.json()["error"]["message"]
    assert [m.id for m in client.models.list()] == ["hybrid", "hybrid:small", "hybrid:large"]


def _junk(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["none", "bool", "int", "float", "str", "list", "dict"] if depth < 2 else ["none", "int", "str"]
    kind = rng.choice(kinds)
    return {
        "none": lambda: None,
        "bool": lambda: rng.random() < 0.5,
        "int": lambda: rng.choice([-1, 0, 1, 2, 10**12]),
        "float": lambda: rng.choice([-0.5, 0.3, 1.5, float("inf")]),
        "str": lambda: rng.choice(
            ["", " ", "hybrid", "hybrid:", "hybrid:nan", "hybrid:0.3", "user", "\u0000", "x" * 300]
        ),
        "list": lambda: [_junk(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        "dict": lambda: {
            rng.choice(["role", "content", "x", "type"]): _junk(rng, depth + 1) for _ in range(rng.randint(0, 3))
        },
    }[kind]()


def test_fuzzed_request_bodies_never_crash_the_server(router_url):
    """80 seeded mutations of a valid body (1 generated token at most); only 200/4xx, always JSON or SSE."""
    rng = random.Random(1234)
    fields = [
        "model",
        "messages",
        "max_tokens",
        "temperature",
        "stop",
        "tools",
        "stream",
        "n",
        "quality_threshold",
        "large_share",
        "hybrid_route",
        "messages.0",
        "messages.0.content",
    ]
    statuses = []
    with httpx.Client(timeout=60) as http:
        for _ in range(80):
            body: dict[str, Any] = {
                "model": "hybrid:small",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 1,
            }
            for name in rng.sample(fields, rng.randint(1, 3)):
                value = _junk(rng)
                if name.startswith("messages."):
                    if (
                        isinstance(body.get("messages"), list)
                        and body["messages"]
                        and isinstance(body["messages"][0], dict)
                    ):
                        if name == "messages.0":
                            body["messages"][0] = value
                        else:
                            body["messages"][0]["content"] = value
                else:
                    body[name] = value
            if isinstance(body.get("max_tokens"), int) and not isinstance(body["max_tokens"], bool):
                body["max_tokens"] = min(body["max_tokens"], 1)  # keep generation bounded
            body.setdefault("max_completion_tokens", 1)
            raw = json.dumps(body, allow_nan=True).encode()
            response = http.post(
                f"{router_url}/chat/completions", content=raw, headers={"content-type": "application/json"}
            )
            statuses.append(response.status_code)
            assert response.status_code in (200, 400, 404), (body, response.text)
            if response.headers["content-type"].startswith("application/json"):
                payload = response.json()
                assert ("error" in payload) == (response.status_code != 200), payload
            else:
                assert response.text.rstrip().endswith("data: [DONE]")
    assert 400 in statuses and 200 in statuses
    assert httpx.get(router_url.removesuffix("/v1") + "/health", timeout=10).json() == {"status": "ok"}


# ---------------------------------------------------------------- the CLI command


def test_serve_command_runs_a_real_server(openai_server, large_model_name, tmp_path):
    """``hybrid-llm serve`` in a subprocess, with both models at the session's upstream (no second model load)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "hybrid_router.cli",
        "serve",
        "--small",
        openai_server,
        "--small-model",
        large_model_name,
        "--large",
        openai_server,
        "--large-model",
        large_model_name,
        "--port",
        str(port),
    ]
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not start"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        response = httpx.post(
            url + "/v1/chat/completions",
            timeout=120,
            json={"model": "hybrid:0.0", "messages": MESSAGES, "max_tokens": 2},
        )
        assert response.status_code == 200 and response.headers["x-hybrid-route"] == "small"
        assert response.json()["model"] == large_model_name  # the small slot is the upstream model here
    finally:
        process.terminate()
        process.wait(20)
        log.close()
    assert "serving on http://127.0.0.1" in (tmp_path / "serve.log").read_text()


def test_serve_command_rejects_a_small_url_without_model_name():
    from hybrid_router.cli import main

    assert main(["serve", "--small", "http://127.0.0.1:9/v1", "--large", "http://127.0.0.1:9/v1"]) == 2

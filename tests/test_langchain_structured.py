"""``HybridChatModel.with_structured_output`` with every method: each child does it its own way.

The scripted small child is OpenAI-style (``json_schema``/``json_mode`` bind ``response_format``), the scripted
large child Anthropic-style (always a forced tool call); each rejects the other's format. A second set runs two real
``ChatOpenAI`` children against a small OpenAI-compatible stub server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from langchain_openai import ChatOpenAI
from lc_fakes import NO_NETWORK, ScriptedChatModel
from pydantic import BaseModel, Field

from langchain_hybrid import HybridChatModel

METHODS = ("function_calling", "json_schema", "json_mode")
PROMPT = "Weather in 'Oslo' is 21 degrees"


class Weather(BaseModel):
    """A weather report."""

    city: str = Field(description="the city")
    degrees: int = Field(description="temperature in Celsius")


WEATHER = Weather(city="Oslo", degrees=21)
JSON_REPLY = '{"city": "Oslo", "degrees": 21}'


@pytest.fixture
def model(default_router) -> HybridChatModel:
    return HybridChatModel(
        small=ScriptedChatModel(model_name="fake-small", tool_format="openai", json_reply=JSON_REPLY),
        large=ScriptedChatModel(model_name="fake-large", tool_format="anthropic", json_reply=JSON_REPLY),
        router=default_router,
    )


def merge(chunks: list[Any]) -> Any:
    return chunks[-1] if chunks else None


def sent(child: ScriptedChatModel) -> dict[str, Any]:
    return child.calls[-1]["kwargs"]


@NO_NETWORK
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", ["small", "large"])
def test_each_method_is_done_by_the_chosen_child_its_own_way(model, method, route):
    structured = model.with_structured_output(Weather, method=method)
    assert structured.invoke(PROMPT, config={"metadata": {"hybrid_route": route}}) == WEATHER
    child, other = (model.small, model.large) if route == "small" else (model.large, model.small)
    kwargs = sent(child)
    assert not other.calls
    assert "ls_structured_output_format" not in kwargs
    if route == "small" and method != "function_calling":  # OpenAI-style: response_format
        expected = "json_object" if method == "json_mode" else "json_schema"
        assert kwargs["response_format"]["type"] == expected and "tools" not in kwargs
    elif route == "small":
        assert kwargs["tools"][0]["type"] == "function" and kwargs["tool_choice"] == "required"
    else:  # Anthropic-style: always a forced tool in its own format
        assert "input_schema" in kwargs["tools"][0] and kwargs["tool_choice"] == {"type": "any"}
    assert merge(list(structured.stream(PROMPT, config={"metadata": {"hybrid_route": route}}))) == WEATHER
    assert asyncio.run(structured.ainvoke(PROMPT, config={"metadata": {"hybrid_route": route}})) == WEATHER


@NO_NETWORK
@pytest.mark.parametrize("method", METHODS)
def test_include_raw_carries_the_routing_record(model, default_router, method):
    threshold = round(default_router.score(PROMPT) - 0.01, 4)  # the router picks small
    out = model.with_structured_output(Weather, method=method, include_raw=True).invoke(
        PROMPT, config={"metadata": {"quality_threshold": threshold}}
    )
    assert out["parsed"] == WEATHER and out["parsing_error"] is None
    routed = out["raw"].response_metadata["hybrid_router"]
    assert routed["route"] == routed["answered_by"] == "small"
    assert routed["threshold"] == threshold and routed["threshold_source"] == "metadata:quality_threshold"
    assert out["raw"].response_metadata["model_name"] == "fake-small"


@NO_NETWORK
def test_include_raw_reports_a_parsing_error(model):
    model.small.json_reply = "not json"
    out = model.with_structured_output(Weather, method="json_mode", include_raw=True).invoke(
        PROMPT,
        config={"metadata": {"hybrid_route": "small"}},  # RunnableMap does not pass call kwargs on
    )
    assert out["parsed"] is None and out["parsing_error"] is not None
    assert out["raw"].response_metadata["hybrid_router"]["answered_by"] == "small"


@NO_NETWORK
def test_a_fallback_is_parsed_by_the_child_that_answered(model):
    model.small.error = "small is down"
    out = model.with_structured_output(Weather, method="json_schema", include_raw=True).invoke(
        PROMPT,
        config={"metadata": {"hybrid_route": "small"}},  # RunnableMap does not pass call kwargs on
    )
    assert out["parsed"] == WEATHER
    routed = out["raw"].response_metadata["hybrid_router"]
    assert routed["route"] == "small" and routed["answered_by"] == "large" and routed["fallback"]
    assert "input_schema" in sent(model.large)["tools"][0]  # the large child's own binding was used


@NO_NETWORK
def test_strict_and_dict_schemas_reach_the_child(model):
    schema = Weather.model_json_schema()
    out = model.with_structured_output(schema, method="json_schema", strict=True).invoke(PROMPT, hybrid_route="small")
    assert out == {"city": "Oslo", "degrees": 21}
    assert sent(model.small)["response_format"]["json_schema"]["strict"] is True


@NO_NETWORK
def test_async_stream_of_structured_output(model):
    structured = model.with_structured_output(Weather, method="json_schema")

    async def run() -> list[Any]:
        return [chunk async for chunk in structured.astream(PROMPT, hybrid_route="small")]

    assert asyncio.run(run())[-1] == WEATHER


# ---------------------------------------------------------------------- ChatOpenAI on a local stub server
class _Completions(BaseHTTPRequestHandler):
    """Answers chat completions: a forced tool call when tools are sent, else the JSON reply."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        model = body["model"]
        if body.get("tools"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": body["tools"][0]["function"]["name"], "arguments": JSON_REPLY},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": JSON_REPLY}, "stop"
        usage = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
        if not body.get("stream"):
            self._send(
                "application/json",
                json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": model,
                        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                        "usage": usage,
                    }
                ).encode(),
            )
            return
        delta = dict(message)
        if "tool_calls" in delta:
            delta["tool_calls"] = [{"index": 0, **delta["tool_calls"][0]}]
        events = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {"choices": [], "usage": usage},
        ]
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": model}
        payload = b"".join(f"data: {json.dumps({**head, **e})}\n\n".encode() for e in events)
        self._send("text/event-stream", payload + b"data: [DONE]\n\n")

    def _send(self, content_type: str, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def stub_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


@pytest.fixture
def openai_pair(stub_server, default_router) -> HybridChatModel:
    def chat(name: str) -> ChatOpenAI:
        return ChatOpenAI(model=name, base_url=stub_server, api_key="not-needed", max_retries=0, timeout=10)

    _Completions.requests.clear()
    return HybridChatModel(small=chat("stub-small"), large=chat("stub-large"), router=default_router)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("route", ["small", "large"])
def test_chat_openai_children_each_method(openai_pair, method, route):
    structured = openai_pair.with_structured_output(Weather, method=method, include_raw=True)
    out = structured.invoke(PROMPT, config={"configurable": {"hybrid_route": route}})
    assert out["parsed"] == WEATHER and out["parsing_error"] is None
    raw = out["raw"]
    assert raw.response_metadata["hybrid_router"]["answered_by"] == route
    assert raw.response_metadata["model_name"] == f"stub-{route}"
    request = _Completions.requests[-1]
    assert request["model"] == f"stub-{route}"
    if method == "function_calling":
        assert request["tools"][0]["function"]["name"] == "Weather"
        assert request["tool_choice"] == {"type": "function", "function": {"name": "Weather"}}
    else:
        expected = "json_object" if method == "json_mode" else "json_schema"
        assert request["response_format"]["type"] == expected and "tools" not in request
    plain = openai_pair.with_structured_output(Weather, method=method)
    assert [c for c in plain.stream(PROMPT, hybrid_route=route)][-1] == WEATHER
    assert _Completions.requests[-1]["stream"] is True
    assert asyncio.run(plain.ainvoke(PROMPT, hybrid_route=route)) == WEATHER


def test_chat_openai_strict_json_schema(openai_pair):
    out = openai_pair.with_structured_output(Weather, method="json_schema", strict=True).invoke(
        PROMPT, hybrid_route="large"
    )
    assert out == WEATHER
    assert _Completions.requests[-1]["response_format"]["json_schema"]["strict"] is True
    with pytest.raises(ValueError, match="strict"):
        openai_pair.with_structured_output(Weather, method="json_mode", strict=True)

"""Wrapper streams against a real slow upstream (issue 12, items 1, 4 and 17): every child stream is closed.

A tiny threaded OpenAI-compatible SSE server on 127.0.0.1 answers slowly on purpose; the children are the real
clients (langchain-openai ``ChatOpenAI``, llama-index ``OpenAILike``). The server counts the streams still being
written: a child stream that the wrapper closes shows up as a client disconnect within a fraction of a second.
The garbage collector is switched off while streaming, so only an explicit close can pass.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from langchain_openai import ChatOpenAI
from lc_fakes import ScriptedChatModel
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.llms import MockLLM
from llama_index.core.llms.custom import CustomLLM
from llama_index.llms.openai_like import OpenAILike

from hybrid_router import RoutingLog
from hybrid_router.core.records import record_routes
from langchain_hybrid import HybridChatModel
from llamaindex_hybrid import HybridLLM

pytestmark = pytest.mark.timeout(60)


class Upstream(ThreadingHTTPServer):
    """Streams ``n_chunks`` words: an empty role chunk at once, the first word after ``first_delay`` seconds, then
    one every ``gap`` seconds. ``active`` counts responses still being written; ``disconnects`` the clients that
    went away before the end."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.first_delay, self.gap, self.n_chunks = 0.0, 0.05, 3
        self.active = self.disconnects = 0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def count(self, active: int = 0, disconnects: int = 0) -> None:
        with self.lock:
            self.active += active
            self.disconnects += disconnects

    def wait_idle(self, timeout: float) -> bool:
        """Whether every response has ended (or its client left) within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.active == 0:
                return True
            time.sleep(0.02)
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Upstream

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if not body.get("stream"):
            self._json(body["model"])
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.server.count(active=1)
        try:
            self._sse(body["model"])
        except OSError:  # the client closed the stream
            self.server.count(disconnects=1)
        finally:
            self.server.count(active=-1)

    def _json(self, model: str) -> None:
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "fast"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, payload: str) -> None:
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _chunk(self, model: str, delta: dict[str, Any]) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        return json.dumps(
            {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}
        )

    def _sse(self, model: str) -> None:
        self._send(self._chunk(model, {"role": "assistant", "content": ""}))
        time.sleep(self.server.first_delay)
        for i in range(self.server.n_chunks):
            if i:
                time.sleep(self.server.gap)
            self._send(self._chunk(model, {"content": f"w{i} "}))
        self._send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@contextmanager
def no_gc() -> Iterator[None]:
    """Only an explicit close may end a child stream in here (no finalizer run by a collection)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def chat_openai(upstream: Upstream) -> ChatOpenAI:
    return ChatOpenAI(base_url=upstream.base_url, api_key="sk-test", model="stub-small", max_retries=0, timeout=10)


def openai_like(upstream: Upstream) -> OpenAILike:
    return OpenAILike(
        api_base=upstream.base_url,
        api_key="sk-test",
        model="stub-small",
        is_chat_model=True,
        max_retries=0,
        timeout=10,
        context_window=4096,
    )


QUESTION = "What is the capital of France?"
MESSAGES = [ChatMessage(role="user", content=QUESTION)]


# ---------------------------------------------------------------- LangChain
def test_langchain_stream_timing_out_twice_does_not_deadlock_the_chatopenai_client(upstream, default_router):
    upstream.first_delay, upstream.n_chunks, upstream.gap = 2.0, 40, 0.1
    small = chat_openai(upstream)
    model = HybridChatModel(small=small, large=ScriptedChatModel(model_name="big"), router=default_router, timeout=1)
    with no_gc():
        for _ in range(2):
            started = time.perf_counter()
            chunks = list(model.stream(QUESTION, hybrid_route="small"))
            assert time.perf_counter() - started < 1.8
            routed = chunks[0].response_metadata["hybrid_router"]
            assert routed["answered_by"] == "large" and "small model timed out" in routed["fallback_reason"]
        # the late small streams are closed once their first word arrives (2 s), not after all 40 (6 s)
        assert upstream.wait_idle(3.0) and upstream.disconnects == 2
    upstream.first_delay, upstream.n_chunks = 0.0, 2
    started = time.perf_counter()
    assert "w1" in "".join(c.text for c in model.stream(QUESTION, hybrid_route="small"))
    assert small.invoke(QUESTION).text == "fast"
    assert time.perf_counter() - started < 3.0


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_langchain_stream_the_consumer_stops_is_closed_upstream(upstream, default_router, timeout):
    upstream.n_chunks, upstream.gap = 40, 0.1
    model = HybridChatModel(
        small=chat_openai(upstream), large=ScriptedChatModel(), router=default_router, timeout=timeout
    )
    with no_gc():
        stream = model.stream(QUESTION, hybrid_route="small")
        assert next(stream).text == ""  # the role chunk, held back until the first word came
        assert next(stream).text == "w0 "
        stream.close()
        assert upstream.wait_idle(1.5) and upstream.disconnects == 1


def test_langchain_astream_the_consumer_stops_and_a_timed_out_one_are_closed_upstream(upstream, default_router):
    upstream.n_chunks, upstream.gap = 40, 0.1
    small = chat_openai(upstream)
    model = HybridChatModel(small=small, large=ScriptedChatModel(), router=default_router, timeout=1)

    async def scenario() -> None:
        stream = model.astream(QUESTION, hybrid_route="small")
        async for chunk in stream:
            if chunk.text:
                break
        await stream.aclose()
        assert await asyncio.to_thread(upstream.wait_idle, 1.5)
        upstream.first_delay = 2.0
        chunks = [c async for c in model.astream(QUESTION, hybrid_route="small")]
        assert chunks[0].response_metadata["hybrid_router"]["answered_by"] == "large"
        assert await asyncio.to_thread(upstream.wait_idle, 1.5)  # cancelled at once, not when its word comes

    with no_gc():
        asyncio.run(scenario())
    assert upstream.disconnects == 2


# ---------------------------------------------------------------- LlamaIndex
def test_llamaindex_stream_timing_out_and_stopped_streams_are_closed_upstream(upstream, default_router):
    upstream.first_delay, upstream.n_chunks, upstream.gap = 2.0, 40, 0.1
    llm = HybridLLM(openai_like(upstream), MockLLM(), router=default_router, timeout=1)
    with no_gc():
        for _ in range(2):
            started = time.perf_counter()
            last = list(llm.stream_chat(MESSAGES, hybrid_route="small"))[-1]
            assert time.perf_counter() - started < 1.8
            assert last.additional_kwargs["hybrid_router"]["answered_by"] == "large"
        assert upstream.wait_idle(3.0) and upstream.disconnects == 2
        upstream.first_delay = 0.0
        stream = llm.stream_chat(MESSAGES, hybrid_route="small")
        assert next(stream).delta == ""
        assert next(stream).delta == "w0 "
        stream.close()
        assert upstream.wait_idle(1.5) and upstream.disconnects == 3


def test_llamaindex_astream_stopped_and_timed_out_streams_are_closed_upstream(upstream, default_router):
    upstream.n_chunks, upstream.gap = 40, 0.1
    llm = HybridLLM(openai_like(upstream), MockLLM(), router=default_router, timeout=1)

    async def scenario() -> None:
        stream = await llm.astream_chat(MESSAGES, hybrid_route="small")
        async for chunk in stream:
            if chunk.delta:
                break
        await stream.aclose()
        assert await asyncio.to_thread(upstream.wait_idle, 1.5)
        upstream.first_delay = 2.0
        chunks = [c async for c in await llm.astream_chat(MESSAGES, hybrid_route="small")]
        assert chunks[-1].additional_kwargs["hybrid_router"]["answered_by"] == "large"
        assert await asyncio.to_thread(upstream.wait_idle, 1.5)

    with no_gc():
        asyncio.run(scenario())
    assert upstream.disconnects == 2


class BreaksAfterTwo(CustomLLM):
    """Streams two words, then loses its connection; or (``slow_start``) sleeps before returning its stream."""

    slow_start: float = 0.0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="flaky")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text="whole answer")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        time.sleep(self.slow_start)

        def gen():
            yield CompletionResponse(text="one", delta="one")
            yield CompletionResponse(text="one two", delta=" two")
            raise ConnectionError(f"connection lost (api_key=sk-proj-{'x' * 24})")

        return gen()


def test_llamaindex_stream_failing_after_two_chunks_is_recorded_as_an_error(tmp_path, default_router):
    log = RoutingLog(tmp_path / "log.db")
    llm = HybridLLM(BreaksAfterTwo(), MockLLM(), router=default_router, routing_log=log)
    seen = []
    with record_routes() as routes, pytest.raises(ConnectionError):
        for chunk in llm.stream_chat(MESSAGES, hybrid_route="small"):
            seen.append(chunk)
    assert [c.delta for c in seen] == ["one", " two"]
    error = seen[-1].additional_kwargs["hybrid_router"]["error"]
    assert error.startswith("ConnectionError: connection lost") and "sk-proj" not in error
    assert routes[-1]["error"] == error
    log.flush()
    with sqlite3.connect(tmp_path / "log.db") as db:
        [(answer, logged_error)] = db.execute("SELECT answer, error FROM calls WHERE kind = 'answer'").fetchall()
    assert answer == "one two" and logged_error == error
    log.close()


def test_llamaindex_sync_stream_times_out_a_child_slow_to_return_its_generator(default_router):
    llm = HybridLLM(BreaksAfterTwo(slow_start=3.0), MockLLM(), router=default_router, timeout=0.3)
    started = time.perf_counter()
    last = list(llm.stream_chat(MESSAGES, hybrid_route="small"))[-1]
    assert time.perf_counter() - started < 1.5
    meta = last.additional_kwargs["hybrid_router"]
    assert meta["answered_by"] == "large" and "small model timed out" in meta["fallback_reason"]

"""Chat backends that speak OpenAI chat-completion dicts: a local model, or any OpenAI-compatible HTTP endpoint.

Used by ``hybrid-llm serve`` and ``hybrid-llm demo``. ``complete(body)`` returns a ``chat.completion`` dict and
``stream(body)`` yields ``chat.completion.chunk`` dicts; ``acomplete`` / ``astream`` are the same for the server's
event loop. ``body`` is an OpenAI request body (its ``model`` is replaced by the backend's own). Failures raise
:class:`BackendError`: :class:`UpstreamTimeoutError` and :class:`UpstreamConnectionError` for transport failures,
:class:`MalformedResponseError` for an answer that is not a chat completion (the caller falls back or answers 502),
:class:`TruncatedStreamError` for a stream that ends without ``[DONE]``. Error texts are redacted (no API keys).

Every upstream HTTP stream is closed when it ends, fails, times out or is abandoned (``async with`` around the
response, so cancelling the consumer closes the socket): an abandoned stream can never hold a pooled connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import json
import time
import uuid
import weakref
from typing import Any, AsyncIterator, Callable, Iterator, Protocol

from ..core.redact import redact
from ..local.chat import ChatOutput, LocalChat

#: Request fields forwarded to a local model; everything else an OpenAI endpoint accepts is ignored locally.
LOCAL_FIELDS = ("messages", "max_tokens", "max_completion_tokens", "temperature", "stop", "tools")

#: The large model when ``$OPENAI_API_KEY`` is set and nothing else is named.
DEFAULT_LARGE_URL = "https://api.openai.com/v1"
DEFAULT_LARGE_MODEL = "gpt-4o-mini"


#: Concurrent calls one backend serves at a time (the server's per-backend limit and HTTP pool size).
DEFAULT_CONCURRENCY = 32


class BackendError(RuntimeError):
    """A backend could not answer; ``status`` is the upstream HTTP status when there was one. The text is redacted."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(redact(message))
        self.status = status


class UpstreamTimeoutError(BackendError, TimeoutError):
    """The upstream did not answer (or send the next chunk) within the HTTP timeout."""


class UpstreamConnectionError(BackendError, ConnectionError):
    """The upstream could not be reached, or dropped the connection."""


class MalformedResponseError(BackendError):
    """The upstream answered 200 with something that is not a chat completion (or an empty stream); status 502."""

    def __init__(self, message: str):
        super().__init__(message, 502)


class TruncatedStreamError(MalformedResponseError):
    """The upstream stream ended (or the connection closed) without ``data: [DONE]``."""


class ChatBackend(Protocol):
    """What the router server needs from a model."""

    name: str

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One ``chat.completion`` dict."""

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts."""

    async def acomplete(self, body: dict[str, Any]) -> dict[str, Any]:
        """Async :meth:`complete`."""

    def astream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Async :meth:`stream`; closing (or cancelling) it stops the upstream call."""


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


_END = object()


class LocalBackend:
    """A :class:`LocalChat` model answering OpenAI request bodies (``max_tokens`` defaults to ``max_new_tokens``).

    The async methods run the model in this backend's own bounded thread pool (``threads`` workers), so a slow
    local model never takes threads from the other backend or the server.
    """

    def __init__(self, chat: LocalChat, *, max_new_tokens: int | None = None, threads: int = 4):
        self.chat = chat
        self.name = chat.name
        self.max_new_tokens = max_new_tokens or chat.max_new_tokens
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=f"hybrid-llm-{self.name}")

    def _options(self, body: dict[str, Any]) -> dict[str, Any]:
        stop = body.get("stop")
        return {
            "max_new_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or self.max_new_tokens,
            "temperature": body.get("temperature"),
            "stop": [stop] if isinstance(stop, str) else stop,
            "tools": body.get("tools") or None,
        }

    @staticmethod
    def _tool_calls(output: ChatOutput) -> list[dict[str, Any]]:
        return [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in output.tool_calls
        ]

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        output = self.chat.generate(body["messages"], **self._options(body))
        message: dict[str, Any] = {"role": "assistant", "content": output.text or None}
        if output.tool_calls:
            message["tool_calls"] = self._tool_calls(output)
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": output.finish_reason}],
            "usage": output.usage(),
        }

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        base = {
            "id": _completion_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self.name,
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        pieces = self.chat.stream(body["messages"], **self._options(body))
        first = next(pieces)  # fail (and fall back) before anything is sent
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for item in itertools.chain([first], pieces):
            if not isinstance(item, ChatOutput):
                yield {**base, "choices": [{"index": 0, "delta": {"content": item}, "finish_reason": None}]}
                continue
            delta = (
                {"tool_calls": [{"index": i, **c} for i, c in enumerate(self._tool_calls(item))]}
                if item.tool_calls
                else {}
            )
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": item.finish_reason}]}
            if include_usage:
                yield {**base, "choices": [], "usage": item.usage()}

    async def acomplete(self, body: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.wrap_future(self._executor.submit(self.complete, body))

    async def astream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        pieces = self.stream(body)
        future: concurrent.futures.Future | None = None
        try:
            while True:
                future = self._executor.submit(next, pieces, _END)
                chunk = await asyncio.wrap_future(future)
                if chunk is _END:
                    return
                yield chunk
        finally:
            # close the generator (stops generation) once no next() runs on it; at once if none does
            if future is None:
                pieces.close()
            else:
                future.add_done_callback(lambda _: pieces.close())

    def close(self) -> None:
        """Stop the worker threads (running generations finish first)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


def _check_choices(value: Any, key: str, *, allow_empty: bool) -> None:
    choices = value.get("choices")
    if not isinstance(choices, list) or not (choices or allow_empty):
        raise MalformedResponseError(f"no choices in the answer: {redact(json.dumps(value)[:200])}")
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get(key), dict):
            raise MalformedResponseError(f"a choice without a {key!r} object: {redact(json.dumps(choice)[:200])}")


def _upstream_error(value: dict[str, Any], where: str) -> BackendError:
    error = value["error"]
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    return BackendError(f"{where} sent an error: {str(error)[:500]}", status)


def check_completion(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a ``chat.completion`` dict (choices with a message); MalformedResponseError otherwise."""
    if not isinstance(value, dict):
        raise MalformedResponseError(f"{where} answered {type(value).__name__}, not a chat completion object")
    if "error" in value:
        raise _upstream_error(value, where)
    try:
        _check_choices(value, "message", allow_empty=False)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"{where}: {exc}") from None
    return value


def check_chunk(value: Any, where: str) -> dict[str, Any]:
    """``value`` if it is a ``chat.completion.chunk`` dict (choices with a delta; none for a usage chunk)."""
    if not isinstance(value, dict):
        raise MalformedResponseError(f"{where} streamed {type(value).__name__}, not a chat completion chunk")
    if "error" in value:
        raise _upstream_error(value, where)
    try:
        _check_choices(value, "delta", allow_empty=True)
    except MalformedResponseError as exc:
        raise MalformedResponseError(f"{where}: {exc}") from None
    return value


class StreamReader:
    """Validates one upstream SSE stream line by line: chunks, ``[DONE]``, and how the stream ended.

    A stream is complete at ``[DONE]`` (at least one chunk must come before it), or when the connection closes
    after a chunk with a ``finish_reason`` (some servers, ``transformers serve`` among them, send no ``[DONE]``).
    Anything else that ends it is a :class:`TruncatedStreamError`.
    """

    def __init__(self, where: str):
        self.where = where
        self.count = 0
        self.finished = False

    def line(self, line: str) -> Any:
        """The chunk on one SSE line: a dict, ``_END`` at ``[DONE]``, None for lines without data."""
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            if not self.count:
                raise MalformedResponseError(f"{self.where} sent an empty stream (no chunk before [DONE])")
            return _END
        try:
            value = json.loads(data)
        except ValueError:
            raise MalformedResponseError(f"{self.where} sent an invalid stream line: {data[:200]!r}") from None
        chunk = check_chunk(value, self.where)
        self.count += 1
        self.finished = self.finished or any(c.get("finish_reason") for c in chunk["choices"])
        return chunk

    def closed(self) -> None:
        """The connection closed without ``[DONE]``: fine after a finish_reason, TruncatedStreamError otherwise."""
        if not self.finished:
            raise TruncatedStreamError(f"{self.where}: the stream ended without [DONE] after {self.count} chunks")

    def failed(self, exc: Exception, transport_error: Callable[[Exception], BackendError]) -> BackendError:
        """The error for a transport failure mid-stream: truncated once chunks were read (unless a timeout)."""
        import httpx

        if self.count and not isinstance(exc, httpx.TimeoutException):
            return TruncatedStreamError(
                f"{self.where}: the stream broke after {self.count} chunks: {type(exc).__name__}: {exc}"
            )
        return transport_error(exc)


class OpenAIBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint; the request body is forwarded as is (with ``model``).

    ``name`` is the name reported for it (defaults to ``model``). ``max_tokens`` is sent when the request sets
    neither ``max_tokens`` nor ``max_completion_tokens``. ``concurrency`` bounds the HTTP connection pool; the
    sync methods use one pool and each event loop gets its own async pool.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        name: str | None = None,
        timeout: float = 120.0,
        max_tokens: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
    ):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.max_tokens = max_tokens
        self._where = f"{self.name} at {self.base_url}"
        self._options: dict[str, Any] = {
            "base_url": self.base_url,
            "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
            "timeout": timeout,
            "limits": httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        }
        self._client = httpx.Client(**self._options)
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def _aclient(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            client = self._aclients[loop] = httpx.AsyncClient(**self._options)
        return client

    def _body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        out = {**body, "model": self.model, "stream": stream}
        if self.max_tokens and body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            out["max_tokens"] = self.max_tokens
        return out

    def _status_error(self, response: Any) -> BackendError:
        return BackendError(
            f"{self._where} answered HTTP {response.status_code}: {response.text[:500]}", response.status_code
        )

    def _transport_error(self, exc: Exception) -> BackendError:
        import httpx

        kind = UpstreamTimeoutError if isinstance(exc, httpx.TimeoutException) else UpstreamConnectionError
        return kind(f"{self._where} failed: {type(exc).__name__}: {exc}")

    def _json(self, response: Any) -> dict[str, Any]:
        try:
            value = response.json()
        except ValueError:
            raise MalformedResponseError(f"{self._where} sent invalid JSON: {response.text[:200]!r}") from None
        return check_completion(value, self._where)

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.post("/chat/completions", json=self._body(body, False))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        return self._json(response)

    async def acomplete(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = await self._aclient().post("/chat/completions", json=self._body(body, False))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise self._status_error(response)
        return self._json(response)

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import httpx

        reader = StreamReader(self._where)
        try:
            with self._client.stream("POST", "/chat/completions", json=self._body(body, True)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response)
                for line in response.iter_lines():
                    chunk = reader.line(line)
                    if chunk is _END:
                        return
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as exc:
            raise reader.failed(exc, self._transport_error) from exc
        reader.closed()

    async def astream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        import httpx

        reader = StreamReader(self._where)
        try:
            async with self._aclient().stream("POST", "/chat/completions", json=self._body(body, True)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response)
                async for line in response.aiter_lines():
                    chunk = reader.line(line)
                    if chunk is _END:
                        return
                    if chunk is not None:
                        yield chunk
        except httpx.HTTPError as exc:
            raise reader.failed(exc, self._transport_error) from exc
        reader.closed()

    def close(self) -> None:
        """Close the sync HTTP connection pool."""
        self._client.close()

    async def aclose(self) -> None:
        """Close this event loop's async HTTP connection pool."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

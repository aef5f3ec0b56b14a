"""Chat backends that speak OpenAI chat-completion dicts: a local model, or any OpenAI-compatible HTTP endpoint.

Used by ``hybrid-llm serve`` and ``hybrid-llm demo``. ``complete(body)`` returns a ``chat.completion`` dict and
``stream(body)`` yields ``chat.completion.chunk`` dicts; ``body`` is an OpenAI request body (its ``model`` is
replaced by the backend's own). Failures raise :class:`BackendError` (the caller falls back or answers 502).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from typing import Any, Iterator, Protocol

from ..local.chat import ChatOutput, LocalChat

#: Request fields forwarded to a local model; everything else an OpenAI endpoint accepts is ignored locally.
LOCAL_FIELDS = ("messages", "max_tokens", "max_completion_tokens", "temperature", "stop", "tools")

#: The large model when ``$OPENAI_API_KEY`` is set and nothing else is named.
DEFAULT_LARGE_URL = "https://api.openai.com/v1"
DEFAULT_LARGE_MODEL = "gpt-4o-mini"


class BackendError(RuntimeError):
    """A backend could not answer; ``status`` is the upstream HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ChatBackend(Protocol):
    """What the router server needs from a model."""

    name: str

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """One ``chat.completion`` dict."""

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """``chat.completion.chunk`` dicts."""


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


class LocalBackend:
    """A :class:`LocalChat` model answering OpenAI request bodies (``max_tokens`` defaults to ``max_new_tokens``)."""

    def __init__(self, chat: LocalChat, *, max_new_tokens: int | None = None):
        self.chat = chat
        self.name = chat.name
        self.max_new_tokens = max_new_tokens or chat.max_new_tokens

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


class OpenAIBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint; the request body is forwarded as is (with ``model``).

    ``name`` is the name reported for it (defaults to ``model``).
    """

    def __init__(
        self, base_url: str, model: str, *, api_key: str | None = None, name: str | None = None, timeout: float = 120.0
    ):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        return {**body, "model": self.model, "stream": stream}

    def _raise_for(self, response: Any) -> None:
        if response.status_code >= 400:
            response.read()
            raise BackendError(
                f"{self.name} at {self.base_url} answered HTTP {response.status_code}: {response.text[:500]}",
                response.status_code,
            )

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.post("/chat/completions", json=self._body(body, False))
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} at {self.base_url} unreachable: {type(exc).__name__}: {exc}") from exc
        self._raise_for(response)
        try:
            return response.json()
        except ValueError as exc:
            raise BackendError(f"{self.name} at {self.base_url} sent invalid JSON: {response.text[:200]!r}") from exc

    def stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import httpx

        try:
            with self._client.stream("POST", "/chat/completions", json=self._body(body, True)) as response:
                self._raise_for(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if "error" in chunk:
                        raise BackendError(f"{self.name} stream error: {chunk['error']}")
                    yield chunk
        except httpx.HTTPError as exc:
            raise BackendError(f"{self.name} at {self.base_url} failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:
            raise BackendError(f"{self.name} at {self.base_url} sent an invalid stream line: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

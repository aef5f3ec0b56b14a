"""The router as an OpenAI-compatible chat-completions server (``hybrid-llm serve``).

``POST /v1/chat/completions`` routes each request with :meth:`HybridRouter.decide` and answers with the chosen
backend through :class:`FallbackRunner` (the other backend answers if the chosen one fails; 502 if both do).
The ``model`` field picks the routing: ``hybrid`` (router default), ``hybrid:0.7`` (quality threshold),
``hybrid:small`` / ``hybrid:large`` (forced). A body field ``quality_threshold`` (or ``max_quality_drop``,
``large_share``, ``hybrid_route``) overrides it and is not forwarded; so is ``strategy`` (``"route"`` or
``"cascade"``: the small model answers and the router's answer verifier accepts its answer or escalates to the large
model; a cascade's small stream is buffered until verified). Responses name the model that answered in
``model``, carry the routing record under ``hybrid_router`` and in ``x-hybrid-*`` headers. Bad requests get
OpenAI-style error bodies (``{"error": {"message", "type", "param", "code"}}``): 413 for a body over the size limit
(checked before parsing), 400 for invalid JSON, nesting deeper than :data:`MAX_DEPTH` or a lone surrogate, 401 for
a missing or wrong API key when the server has one (every route but ``/health``).

``POST /v1/route`` takes the same body (same validation, limits and key) and answers only the routing decision
(target, score, threshold, source, ...) without calling a model, so a gateway can make the call itself.

The app is async end to end: upstream HTTP calls run on the event loop, so a timed-out, failed or abandoned
upstream stream is closed at once (a client that disconnects cancels its upstream call), and each backend has its
own concurrency limit, so a hung backend cannot slow requests routed to the other. Every error text the server
returns or logs is redacted (:func:`hybrid_router.core.redact.redact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..core.answered import Answered
from ..core.cascade_runner import CascadeRunner, Verdict
from ..core.fallback import FallbackRunner
from ..core.options import OPTION_ALIASES, RoutingOptions, resolve_options, validate_strategy
from ..core.redact import redact
from ..core.refresh import current_router
from ..core.router import HybridRouter, RouteDecision
from . import cascade
from .backends import DEFAULT_CONCURRENCY, ChatBackend

logger = logging.getLogger(__name__)

MODEL_PREFIX = "hybrid"
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
MAX_TOKENS_LIMIT = 32768
#: Default request size limit (bytes); ``hybrid-llm serve --max-request-bytes`` changes it.
MAX_BODY_BYTES = 1 << 20
#: Deepest JSON nesting a request may have (a chat request needs about 6).
MAX_DEPTH = 64


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        """The OpenAI-style error body."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: what to forward, how to route it, and whether to stream."""

    body: dict[str, Any]
    options: RoutingOptions
    source: str
    stream: bool


def model_options(model: Any) -> RoutingOptions:
    """Routing options named by the ``model`` field (see module docstring); RequestError for unknown names."""
    if model is None or model == MODEL_PREFIX:
        return RoutingOptions()
    if not isinstance(model, str) or not model.startswith(MODEL_PREFIX + ":"):
        raise RequestError(
            404,
            f"The model {model!r} does not exist: use 'hybrid', 'hybrid:<threshold in [0, 1]>', "
            "'hybrid:small' or 'hybrid:large'",
            "model",
            "model_not_found",
        )
    value = model[len(MODEL_PREFIX) + 1 :]
    if value in ("small", "large"):
        return RoutingOptions(route=value)
    try:
        threshold = float(value)
    except ValueError:
        raise RequestError(
            404,
            f"The model {model!r} does not exist: after 'hybrid:' give a threshold in [0, 1], 'small' or 'large'",
            "model",
            "model_not_found",
        ) from None
    try:
        return RoutingOptions(quality_threshold=threshold)
    except ValueError as exc:
        raise RequestError(400, f"model {model!r}: {exc}", "model", "invalid_threshold") from None


def _check_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS_LIMIT
    ):
        raise RequestError(400, f"{name} must be an integer in [1, {MAX_TOKENS_LIMIT}], got {value!r}", name)


def _check_fields(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty array of message objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(400, f"messages[{i}] must be an object with a role in {sorted(ROLES)}", f"messages[{i}]")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(
                400, f"messages[{i}].content must be a string, an array of parts or null", f"messages[{i}].content"
            )
    for name in ("max_tokens", "max_completion_tokens"):
        _check_int(body, name)
    temperature = body.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
        or not 0 <= temperature <= 2
    ):
        raise RequestError(400, f"temperature must be a number in [0, 2], got {temperature!r}", "temperature")
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop))
    ):
        raise RequestError(400, "stop must be a string or an array of non-empty strings", "stop")
    tools = body.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise RequestError(400, "tools must be an array of tool objects", "tools")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise RequestError(400, "stream must be a boolean", "stream")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise RequestError(400, "only n=1 is supported", "n")


def _check_structure(body: Any) -> None:
    """RequestError 400 for nesting deeper than MAX_DEPTH or a string that is not valid Unicode (lone surrogate)."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise RequestError(400, f"the request is nested deeper than {MAX_DEPTH} levels", None, "invalid_json")
        if isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(
                    400, "the request contains a lone surrogate (invalid Unicode)", None, "invalid_json"
                ) from None


def parse_request(raw: bytes) -> ParsedRequest:
    """Validate a request body; RequestError (4xx) on anything malformed."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"Invalid JSON body: {exc}", None, "invalid_json") from None
    except RecursionError:
        raise RequestError(400, "Invalid JSON body: nested too deeply", None, "invalid_json") from None
    _check_structure(body)
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    _check_fields(body)
    from_model = model_options(body.get("model"))
    routing_fields = {k: body[k] for k in OPTION_ALIASES if k in body}
    try:
        options, source = resolve_options([("request", routing_fields), ("model", from_model)])
    except ValueError as exc:
        raise RequestError(400, str(exc), next(iter(routing_fields), "model"), "invalid_routing_option") from None
    forward = {k: v for k, v in body.items() if k not in OPTION_ALIASES}
    return ParsedRequest(forward, options, source, bool(body.get("stream", False)))


def route_headers(answered: Answered) -> dict[str, str]:
    """``x-hybrid-*`` headers describing who answered."""
    decision = answered.decision
    return {
        "x-hybrid-route": answered.answered_by,
        "x-hybrid-decision": decision.target,
        "x-hybrid-model": str(answered.model_name),
        "x-hybrid-score": "" if decision.score is None else f"{decision.score:.4f}",
        "x-hybrid-fallback": "true" if answered.fallback else "false",
        "x-hybrid-strategy": decision.strategy,
        "x-hybrid-escalated": "true" if answered.escalated else "false",
        "x-hybrid-verifier-score": "" if answered.verifier_score is None else f"{answered.verifier_score:.4f}",
    }


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def is_output(chunk: dict[str, Any]) -> bool:
    """Whether a ``chat.completion.chunk`` carries output: text, a tool call or a refusal (not a bare role chunk)."""
    return any(
        choice["delta"].get("content") or choice["delta"].get("tool_calls") or choice["delta"].get("refusal")
        for choice in chunk.get("choices") or ()
    )


def _metadata(answered: Answered) -> dict[str, Any]:
    meta = answered.metadata()
    if meta["fallback_reason"] is not None:
        meta["fallback_reason"] = redact(meta["fallback_reason"])
    return meta


class RouterService:
    """Routing + fallback over two backends, independent of the web framework (async; the router runs in threads).

    ``concurrency`` bounds the calls in flight per backend: a caller waiting for a slot waits inside the call, so
    the runner's ``timeout`` covers it and the other backend answers. ``timeout``, ``idle_timeout``,
    ``cooldown_after`` and ``cooldown_s`` are the :class:`FallbackRunner`'s. ``strategy`` is the server's default
    (a request's ``strategy`` field overrides it). ``router`` may be a provider such as a
    :class:`~hybrid_router.core.refresh.RouterRefresher` (each request uses one router throughout). With
    ``observe`` the large model answers every request and the decision is only recorded.
    """

    def __init__(
        self,
        router: HybridRouter | Callable[[], HybridRouter],
        small: ChatBackend,
        large: ChatBackend,
        *,
        timeout: float | None = None,
        fallback: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        idle_timeout: float | None = None,
        cooldown_after: int | None = None,
        cooldown_s: float = 30.0,
        strategy: str = "route",
        observe: bool = False,
    ):
        validate_strategy(strategy)
        self.observe = observe
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self._router = router
        self.strategy = strategy
        self.backends = {"small": small, "large": large}
        self.limits = {"small": asyncio.Semaphore(concurrency), "large": asyncio.Semaphore(concurrency)}
        self.runner = FallbackRunner(
            timeout=timeout,
            fallback=fallback,
            model_names=(small.name, large.name),
            idle_timeout=idle_timeout,
            cooldown_after=cooldown_after,
            cooldown_s=cooldown_s,
        )

    def current_router(self) -> HybridRouter:
        """The router now: the one given, or what a provider (a ``RouterRefresher``) holds at this moment."""
        return current_router(self._router)

    def decide(self, request: ParsedRequest, router: HybridRouter | None = None) -> RouteDecision:
        """The route for a request (RequestError 400 when the router cannot score it)."""
        options = request.options
        if options.strategy is None:
            options = replace(options, strategy=self.strategy)
        try:
            return (router or self.current_router()).decide(request.body["messages"], options, request.source)
        except ValueError as exc:
            raise RequestError(400, str(exc), "messages") from None

    async def _complete_on(self, target: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.limits[target]:
            return await self.backends[target].acomplete(body)

    async def _stream_from(self, target: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self.limits[target]:
            chunks = self.backends[target].astream(body)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                with anyio.CancelScope(shield=True):
                    await chunks.aclose()

    async def complete(
        self, request: ParsedRequest, decision: RouteDecision, router: HybridRouter | None = None
    ) -> tuple[dict[str, Any], Answered]:
        """A whole answer with its routing record (``router``: the one that decided; default: the current one)."""
        router = router or self.current_router()

        def verify(completion: dict[str, Any]) -> Verdict:
            return cascade.verdict(router, decision, request.body, *cascade.completion_answer(completion))

        result, answered = await CascadeRunner(self.runner, observe=self.observe).arun(
            decision, lambda t: self._complete_on(t, request.body), verify, cascade.usage_of
        )
        self._log(answered)
        return {**result, "model": answered.model_name, "hybrid_router": _metadata(answered)}, answered

    async def stream(
        self, request: ParsedRequest, decision: RouteDecision, router: HybridRouter | None = None
    ) -> AsyncIterator[tuple[dict[str, Any], Answered]]:
        """Chunks (with the answering model's name) and the routing record; the first chunk carries it too.

        Closing this iterator (or cancelling its consumer) closes every upstream stream it opened.
        """
        first = True
        opened: list[AsyncIterator[dict[str, Any]]] = []

        def start(target: str) -> AsyncIterator[dict[str, Any]]:
            opened.append(self._stream_from(target, request.body))
            return opened[-1]

        router = router or self.current_router()

        def verify(small: list[dict[str, Any]]) -> Verdict:
            return cascade.verdict(router, decision, request.body, *cascade.stream_answer(small))

        chunks = CascadeRunner(self.runner, observe=self.observe).astream(
            decision, start, verify, is_output=is_output, usage=cascade.usage_of
        )
        try:
            async for chunk, answered in chunks:
                chunk = {**chunk, "model": answered.model_name}
                if first:
                    self._log(answered)
                    chunk["hybrid_router"] = _metadata(answered)
                    first = False
                yield chunk, answered
        finally:
            with anyio.CancelScope(shield=True):
                await chunks.aclose()
                for stream in opened:  # the runner may leave a stream it gave up on open
                    with contextlib.suppress(RuntimeError):  # one still running in a timed-out task closes itself
                        await stream.aclose()

    async def aclose(self) -> None:
        """Close the backends' connection pools of the running event loop."""
        for backend in self.backends.values():
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()

    @staticmethod
    def _log(answered: Answered) -> None:
        d = answered.decision
        logger.info(
            "routed to %s (score %s, threshold %s via %s)%s; answered by %s",
            d.target,
            "-" if d.score is None else f"{d.score:.3f}",
            d.threshold,
            d.threshold_source,
            f" FALLBACK: {redact(answered.fallback_reason)}" if answered.fallback else "",
            answered.model_name,
        )


def upstream_error(exc: BaseException) -> RequestError:
    """The 502 answer when no model could answer (redacted, and logged)."""
    message = redact(f"upstream model failed: {exc}")
    logger.warning("502: %s", message)
    return RequestError(502, message, None, "upstream_error", "upstream_error")


class APIKeyMiddleware:
    """ASGI middleware: every path but ``/health`` needs ``Authorization: Bearer <key>`` (compared in constant time)."""

    def __init__(self, app: Callable[..., Awaitable[None]], api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self.expected):
            return await self.app(scope, receive, send)
        error = RequestError(
            401,
            "Missing or incorrect API key: send it as 'Authorization: Bearer <key>'",
            None,
            "invalid_api_key",
        )
        response = JSONResponse(error.body(), status_code=401, headers={"www-authenticate": "Bearer"})
        await response(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body; RequestError 413 as soon as it (or its Content-Length) is over ``limit`` bytes."""
    too_large = RequestError(
        413, f"the request body is larger than the server's limit of {limit} bytes", None, "request_too_large"
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


def create_app(service: RouterService, *, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app serving ``service`` (``/v1/chat/completions``, ``/v1/route``, ``/v1/models``, ``/health``).

    ``api_key``: when set, every route but ``/health`` requires it as a Bearer token (401 otherwise).
    ``max_body_bytes``: larger request bodies get a 413 before they are parsed.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.aclose()

    app = FastAPI(
        title="hybrid-llm router",
        description="OpenAI-compatible chat completions routed between a small and a large model.",
        lifespan=lifespan,
    )
    app.state.service = service
    if api_key:
        app.add_middleware(APIKeyMiddleware, api_key=api_key)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error(
            RequestError(
                exc.status_code,
                str(exc.detail),
                None,
                None,
                "invalid_request_error" if exc.status_code < 500 else "server_error",
            )
        )

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        message = redact(f"internal error: {type(exc).__name__}: {exc}")
        logger.error("500: %s", message, exc_info=exc)
        return error(RequestError(500, message, None, None, "server_error"))

    @app.get("/health")
    async def health() -> JSONResponse:
        # x-hybrid-worker: the answering process (``hybrid-llm serve --workers N`` runs N of them)
        return JSONResponse({"status": "ok"}, headers={"x-hybrid-worker": str(os.getpid())})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        names = [MODEL_PREFIX, f"{MODEL_PREFIX}:small", f"{MODEL_PREFIX}:large"]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "hybrid-llm"} for n in names],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            parsed = parse_request(await read_body(request, max_body_bytes))
            router = service.current_router()  # one router for the whole request, even if a newer one is swapped in
            decision = await run_in_threadpool(service.decide, parsed, router)
        except RequestError as exc:
            return error(exc)
        if not parsed.stream:
            try:
                result, answered = await service.complete(parsed, decision, router)
            except Exception as exc:  # both models (or the only allowed one) failed
                return error(upstream_error(exc))
            return JSONResponse(result, headers=route_headers(answered))
        return await _stream_response(service.stream(parsed, decision, router))

    @app.post("/v1/route")
    async def route(request: Request) -> Any:
        """The routing decision for a chat-completions body, without calling a model (for gateways)."""
        try:
            parsed = parse_request(await read_body(request, max_body_bytes))
            decision = await run_in_threadpool(service.decide, parsed, service.current_router())
        except RequestError as exc:
            return error(exc)
        return JSONResponse(route_body(decision), headers=decision_headers(decision))

    return app


def route_body(decision: RouteDecision) -> dict[str, Any]:
    """The ``POST /v1/route`` answer: ``{"object": "hybrid.route", target, score, threshold, ...}``."""
    return {"object": "hybrid.route", **decision.to_dict()}


def decision_headers(decision: RouteDecision) -> dict[str, str]:
    """``x-hybrid-*`` headers of a ``/v1/route`` answer (for proxies that route on response headers)."""
    return {
        "x-hybrid-decision": decision.target,
        "x-hybrid-score": "" if decision.score is None else f"{decision.score:.4f}",
        "x-hybrid-strategy": decision.strategy,
    }


async def _stream_response(chunks: AsyncIterator[tuple[dict[str, Any], Answered]]) -> Any:
    """An SSE response for ``chunks``, or a 502 when no model sends a first chunk; ``chunks`` is always closed."""
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        return JSONResponse(upstream_error(RuntimeError("the model sent an empty stream")).body(), status_code=502)
    except Exception as exc:
        return JSONResponse(upstream_error(exc).body(), status_code=502)

    async def events() -> AsyncIterator[str]:
        try:
            yield _sse(first[0])
            async for chunk, _ in chunks:
                yield _sse(chunk)
            yield "data: [DONE]\n\n"
        except Exception as exc:  # after chunks were sent the stream cannot switch models: report, no [DONE]
            yield _sse(upstream_error(exc).body())
        finally:  # also on client disconnect (cancellation): closes the upstream stream
            with anyio.CancelScope(shield=True):
                await chunks.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers=route_headers(first[1]))

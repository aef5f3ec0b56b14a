"""``HybridChatModel``: a LangChain chat model that routes every call to a small or a large chat model.

Drop-in for ``ChatOpenAI(...)``::

    llm = HybridChatModel(small=ChatOpenAI(model="gpt-4o-mini"), large=ChatOpenAI(model="gpt-4o"))
    llm.invoke("Prove that there are infinitely many primes", quality_threshold=0.7)

Routing happens in the public entry points (``invoke``, ``ainvoke``, ``stream``, ``astream`` and
``stream_events``/``astream_events`` v3; ``batch``, ``abatch``, chains and v1/v2 events go through them): they read
the call's kwargs and config, score the conversation with the :class:`~hybrid_router.HybridRouter` and pass the
decision down as a private call kwarg. ``_generate``/``_stream`` then run the chosen child through the core
:class:`~hybrid_router.FallbackRunner` and stamp the answer (see :mod:`langchain_hybrid.labels`). Code that calls
``generate()`` directly is routed inside ``_generate`` from the run's metadata.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, AsyncIterator, Callable, Iterator, Literal, Mapping, Sequence, Union

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config
from langchain_core.runnables.config import run_in_executor
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, PositiveInt, PrivateAttr, model_validator

from hybrid_router import Answered, FallbackRunner, HybridRouter, RouteDecision, RoutingOptions
from hybrid_router.core.cascade_runner import CascadeRunner, Verdict
from hybrid_router.core.fallback import FallbackPolicy, RunnerCache, describe
from hybrid_router.core.options import ROUTES
from hybrid_router.core.pinning import RoutePins, StickySessions
from hybrid_router.core.refresh import current_router
from hybrid_router.traffic.routing_log import RoutingLog

from . import cascade, children, structured
from .call_options import RoutingFraction, pop_routing, resolve_call_options, resolve_from_config
from .labels import StreamLabels, label_result
from .pinning import agent_run_key
from .traffic import add_chunks, log_answer

#: Private call kwargs: the decision made at the entry point, and each child's tool binding.
DECISION_KEY = "_hybrid_decision"
#: Private call kwarg: the router object that made the decision (a provider may swap in a newer one mid-call).
ROUTER_KEY = "_hybrid_router"
BINDINGS_KEY = "_hybrid_child_kwargs"
#: Private call kwarg: the agent run the call belongs to (see :mod:`langchain_hybrid.pinning`).
RUN_KEY = "_hybrid_run"
#: Private call kwarg: the session a call belongs to, when sessions are sticky.
SESSION_KEY = "_hybrid_session"


class HybridChatModel(BaseChatModel):
    """Routes each call to ``small`` or ``large`` with a Hybrid LLM router; a Runnable like any chat model.

    Per-call routing options (most specific wins): call kwargs, ``config["metadata"]`` (also inherited from
    enclosing chains), ``config["configurable"]``, the :func:`hybrid_router.routing` context, then the fields
    below. Each place accepts one of ``quality_threshold``, ``max_quality_drop``, ``large_share`` or
    ``hybrid_route`` (``"small"``/``"large"``), and ``hybrid_strategy`` (``"route"``/``"cascade"``).

    Every answer carries ``response_metadata["hybrid_router"]`` (route, score, threshold, threshold_source,
    fallback, the answering child's configured name as ``model``, ...) and ``response_metadata["model_name"]``: the
    name the answering child itself reported (an API's dated model id), else its configured name.
    """

    small: BaseChatModel
    """The cheap model, used when the router's score reaches the quality threshold."""
    large: BaseChatModel
    """The expensive model."""
    router: Union[HybridRouter, Callable[[], HybridRouter]] = Field(
        default_factory=HybridRouter.shared_default, exclude=True
    )
    """The router (default: the shipped one)."""
    quality_threshold: RoutingFraction = None
    """Default quality threshold in [0, 1] (None: the router's default); higher sends more calls to ``large``."""
    max_quality_drop: RoutingFraction = None
    """Default: the cheapest threshold whose calibrated quality drop stays within this."""
    large_share: RoutingFraction = None
    """Default: the threshold that sends about this share of calls to ``large``."""
    hybrid_route: Literal["small", "large"] | None = None
    """Default: always use this model (skip the router)."""
    strategy: Literal["route", "cascade"] = "route"
    """``"route"``: the model the router picks answers. ``"cascade"``: the router sends clearly hard calls to
    ``large`` at once; otherwise ``small`` answers and the router's answer verifier accepts that answer or escalates
    the call to ``large`` (needs a router trained on answers). Per call: ``hybrid_strategy``. A cascade's small
    stream is buffered until verified."""
    timeout: float | None = None
    """Seconds the chosen model may take before its answer (or first streamed output); then the other answers."""
    idle_timeout: float | None = None
    """Seconds a stream may pause between chunks after its first output; then it fails (``ModelTimeoutError``)."""
    fallback: bool = True
    """Whether the other model answers when the chosen one fails or times out (as ``fallback_policy`` allows)."""
    fallback_policy: FallbackPolicy = Field(default_factory=FallbackPolicy, exclude=True)
    """Which errors fall back (timeouts, connection errors, 5xx, 429, malformed answers); others are raised."""
    cooldown_after: int | None = None
    """Skip a model that failed this many calls in a row for ``cooldown_s`` seconds (None: never skip)."""
    cooldown_s: float = 30.0
    """How long a failing model is skipped (``fallback_reason: "cooldown"``)."""
    temperature: float | None = None
    """Sent to whichever model answers as a call keyword (None: each model's own setting)."""
    max_tokens: int | None = None
    """Sent to whichever model answers as a call keyword (None: each model's own setting)."""
    stop: list[str] | None = None
    """Default stop sequences (a call's ``stop`` replaces them)."""
    streaming: bool = False
    """Stream from the chosen model even on ``invoke`` (callbacks then get tokens)."""
    mode: Literal["route", "observe"] = "route"
    """``"observe"``: the router decides and every answer (and the routing log) records that decision, but the
    large model answers every call; with a routing log's ``shadow_rate`` the small model answers a sample in the
    background, so ``hybrid-llm report LOG`` shows what routing would save before you switch it on."""
    routing_log: RoutingLog | None = Field(default=None, exclude=True)
    """Optional routing log: every answered call is appended (off the request path), with shadow answers."""
    pin_runs: bool = True
    """Keep one model for every call of one agent run (``create_agent``, LangGraph's ReAct agent): the model that
    answered the run's first call answers the rest (``threshold_source`` ``"pinned:..."``). With ``strategy="cascade"``
    a run pinned to the small model is still verified on every call, and an escalation re-pins it to the large one.
    A call kwarg option or a forced ``hybrid_route`` still decides its own call. See :mod:`langchain_hybrid.pinning`
    for the run key."""
    sticky_sessions: bool = False
    """Escalate-only multi-turn policy: within a session (LangGraph's ``configurable.thread_id``, or ``thread_id`` /
    ``session_id`` in the config's metadata), once a turn was answered by ``large``, later turns go to ``large``
    too (``threshold_source`` ``"sticky:..."``). A call kwarg option or a forced ``hybrid_route`` still decides its
    own call."""
    router_input: Literal["conversation", "last_user"] | PositiveInt | Callable[[Any], str] = Field(
        default="conversation", exclude=True
    )
    """What the router scores: ``"conversation"`` (the latest user turn, earlier turns, the system prompt),
    ``"last_user"`` (the latest user message alone), ``N`` (a window of the last N turns: the multi-turn history
    policy) or a callable (the message list -> text), e.g. one that takes
    the question out of a RAG prompt. A text longer than the encoder reads keeps its start and its end. The
    routing record's ``router_input`` says which was used."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    _runners: RunnerCache = PrivateAttr(default_factory=RunnerCache)
    _pins: RoutePins = PrivateAttr(default_factory=RoutePins)
    _sticky: StickySessions = PrivateAttr(default_factory=StickySessions)

    @model_validator(mode="after")
    def _check_options(self) -> "HybridChatModel":
        RoutingOptions.from_mapping(self._routing_defaults())
        self._runner()
        return self

    # ------------------------------------------------------------------ identity
    @property
    def _llm_type(self) -> str:
        return "hybrid-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "small": {"_type": self.small._llm_type, **self.small._identifying_params},
            "large": {"_type": self.large._llm_type, **self.large._identifying_params},
            "router": repr(self.router),
            **self._routing_defaults(),
            "timeout": self.timeout,
            "idle_timeout": self.idle_timeout,
            "fallback": self.fallback,
        }

    def _resolve_model_profile(self) -> ModelProfile | None:
        return children.merge_profiles(self.small.profile, self.large.profile)  # type: ignore[return-value]

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        """The chosen child's tracing params once the call is routed; the pair of names before."""
        decided = kwargs.pop(DECISION_KEY, None)
        if decided is not None:
            target = decided["target"]
            return self._child(target)._get_ls_params(stop=self._stop(stop), **self._child_kwargs(target, kwargs))
        params = LangSmithParams(
            ls_provider="hybrid",
            ls_model_name=f"hybrid({self._names()[0]}|{self._names()[1]})",
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if self._stop(stop):
            params["ls_stop"] = self._stop(stop)
        return params

    # ------------------------------------------------------------------ public entry points: route here
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **self._decide_call(input, config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs = await self._adecide_call(input, config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        yield from super().stream(input, config, stop=stop, **self._decide_call(input, config, kwargs))

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        kwargs = await self._adecide_call(input, config, kwargs)
        async for chunk in super().astream(input, config, stop=stop, **kwargs):
            yield chunk

    def stream_events(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        version: Any = "v2",
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """As in :class:`BaseChatModel`; v1/v2 go through :meth:`astream`, v3 is routed here."""
        if version == "v3":
            kwargs = self._decide_call(input, config, kwargs)
        return super().stream_events(input, config, version=version, stop=stop, **kwargs)

    def astream_events(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        version: Any = "v2",
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """As in :class:`BaseChatModel`; v1/v2 go through :meth:`astream`, v3 is routed here."""
        if version != "v3":
            return super().astream_events(input, config, version=version, stop=stop, **kwargs)
        parent = super()

        async def routed() -> Any:
            routed_kwargs = await self._adecide_call(input, config, kwargs)
            return await parent.astream_events(input, config, version="v3", stop=stop, **routed_kwargs)

        return routed()

    # ------------------------------------------------------------------ tools
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind ``tools`` on both children, each in its own format; the chosen child's binding is used per call."""
        structured = kwargs.pop("ls_structured_output_format", None)
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        bindings = {
            target: children.binding_kwargs(
                self._child(target).bind_tools(tools, **kwargs), self._child(target), target
            )
            for target in ROUTES
        }
        extra = {"ls_structured_output_format": structured} if structured else {}
        return self.bind(**{BINDINGS_KEY: bindings}, **extra)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Structured output the way each child does it (``ChatOpenAI``: a forced tool, ``response_format`` JSON
        schema or JSON mode), chosen per call by the router; see :mod:`langchain_hybrid.structured`.

        ``method``, ``strict`` and other kwargs go to both children's ``with_structured_output``. Each answer is
        parsed by the parser of the child that answered (after a fallback too). ``include_raw=True`` returns
        ``{"raw", "parsed", "parsing_error"}``; ``raw`` carries ``response_metadata["hybrid_router"]``.
        """
        if strict is not None:
            kwargs["strict"] = strict
        bindings: dict[str, dict[str, Any]] = {}
        parsers: dict[str, Runnable] = {}
        for target in ROUTES:
            child = self._child(target)
            runnable = child.with_structured_output(schema, method=method, include_raw=False, **kwargs)
            bindings[target], parsers[target] = structured.split(runnable, child, target)
        trace = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        llm = self.bind(**{BINDINGS_KEY: bindings, structured.TRACE_KEY: trace})
        parser = structured.ChildParser(parsers=parsers)
        return structured.with_raw(llm, parser) if include_raw else llm | parser

    # ------------------------------------------------------------------ model calls
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        decision, rest, router = self._prepare(messages, run_manager, kwargs)
        started = time.perf_counter()
        result, answered = CascadeRunner(self._runner(), observe=self.mode == "observe").run(
            decision,
            lambda target: children.generate(
                self._child(target), messages, self._stop(stop), run_manager, self._child_kwargs(target, rest)
            ),
            lambda small: self._verdict(router, decision, messages, cascade.result_message(small), rest),
            lambda small: cascade.usage_of(cascade.result_message(small)),
        )
        return self._logged(
            label_result(result, self._keep_pin(answered, rest)), messages, answered, started, stop, rest
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        decision, rest, router = self._prepare(messages, run_manager, kwargs)
        started = time.perf_counter()
        result, answered = await CascadeRunner(self._runner(), observe=self.mode == "observe").arun(
            decision,
            lambda target: children.agenerate(
                self._child(target), messages, self._stop(stop), run_manager, self._child_kwargs(target, rest)
            ),
            lambda small: self._verdict(router, decision, messages, cascade.result_message(small), rest),
            lambda small: cascade.usage_of(cascade.result_message(small)),
        )
        return self._logged(
            label_result(result, self._keep_pin(answered, rest)), messages, answered, started, stop, rest
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        decision, rest, router = self._prepare(messages, run_manager, kwargs)
        started = time.perf_counter()
        pairs = CascadeRunner(self._runner(), observe=self.mode == "observe").stream(
            decision,
            lambda target: children.stream(
                self._child(target), messages, self._stop(stop), run_manager, self._child_kwargs(target, rest)
            ),
            lambda small: self._verdict(router, decision, messages, cascade.stream_message(small), rest),
            is_output=children.has_output,
            usage=lambda small: cascade.usage_of(cascade.stream_message(small)),
        )
        chunks: list[BaseMessage] = []
        answered: Answered | None = None
        labels = StreamLabels()
        try:
            for chunk, answered in pairs:
                labelled = labels.label(chunk, lambda: self._keep_pin(answered, rest))  # noqa: B023 (called now)
                if self.routing_log is not None:
                    chunks.append(labelled.message)
                yield labelled
            closing = labels.closing_chunk()
            if closing is not None:
                yield closing
        except Exception as exc:
            self._log_stream(messages, chunks, answered, started, stop, rest, exc)
            raise
        finally:
            pairs.close()
        self._log_stream(messages, chunks, answered, started, stop, rest)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        decision, rest, router = self._prepare(messages, run_manager, kwargs)
        started = time.perf_counter()
        pairs = CascadeRunner(self._runner(), observe=self.mode == "observe").astream(
            decision,
            lambda target: children.astream(
                self._child(target), messages, self._stop(stop), run_manager, self._child_kwargs(target, rest)
            ),
            lambda small: self._verdict(router, decision, messages, cascade.stream_message(small), rest),
            is_output=children.has_output,
            usage=lambda small: cascade.usage_of(cascade.stream_message(small)),
        )
        chunks: list[BaseMessage] = []
        answered: Answered | None = None
        labels = StreamLabels()
        try:
            async for chunk, answered in pairs:
                labelled = labels.label(chunk, lambda: self._keep_pin(answered, rest))  # noqa: B023 (called now)
                if self.routing_log is not None:
                    chunks.append(labelled.message)
                yield labelled
            closing = labels.closing_chunk()
            if closing is not None:
                yield closing
        except Exception as exc:
            self._log_stream(messages, chunks, answered, started, stop, rest, exc)
            raise
        finally:
            await pairs.aclose()
        self._log_stream(messages, chunks, answered, started, stop, rest)

    # ------------------------------------------------------------------ helpers
    def _verdict(
        self,
        router: HybridRouter,
        decision: RouteDecision,
        messages: list[BaseMessage],
        answer: BaseMessage,
        rest: dict[str, Any],
    ) -> Verdict:
        wants_json = cascade.expects_json(rest, rest.get(BINDINGS_KEY))
        return cascade.verdict(router, decision, messages, answer, wants_json)

    def _log(
        self,
        messages: list[BaseMessage],
        answer: BaseMessage,
        answered: Any,
        started: float,
        stop: list[str] | None,
        rest: dict[str, Any],
        error: str | None = None,
    ) -> None:
        """Append the call to :attr:`routing_log` (no-op without one); ``error``: the stream failed midway."""
        if self.routing_log is not None:
            log_answer(
                self.routing_log,
                messages,
                answer,
                answered,
                started,
                lambda target: (self._child(target), {"stop": self._stop(stop), **self._child_kwargs(target, rest)}),
                error=error,
            )

    def _log_stream(
        self,
        messages: list[BaseMessage],
        chunks: list[BaseMessage],
        answered: Answered | None,
        started: float,
        stop: list[str] | None,
        rest: dict[str, Any],
        exc: BaseException | None = None,
    ) -> None:
        """Log a stream that produced output: complete, or cut short by ``exc`` (logged as an error)."""
        if chunks and answered is not None:
            error = None if exc is None else describe(exc)
            self._log(messages, add_chunks(chunks), answered, started, stop, rest, error)

    def _logged(
        self,
        result: ChatResult,
        messages: list[BaseMessage],
        answered: Any,
        started: float,
        stop: list[str] | None,
        rest: dict[str, Any],
    ) -> ChatResult:
        self._log(messages, result.generations[0].message, answered, started, stop, rest)
        return result

    def _routing_defaults(self) -> dict[str, Any]:
        return {
            "quality_threshold": self.quality_threshold,
            "max_quality_drop": self.max_quality_drop,
            "large_share": self.large_share,
            "hybrid_route": self.hybrid_route,
            "hybrid_strategy": self.strategy,
        }

    def _run_key(
        self, messages: list[BaseMessage], config: RunnableConfig | None, options: RoutingOptions, source: str
    ) -> Any:
        """The agent run a call belongs to, when its model is pinned: not for a call kwarg or a forced route."""
        if not self.pin_runs or source == "kwarg" or options.route is not None:
            return None
        return agent_run_key(messages, config)

    def _session_key(self, config: RunnableConfig | None, options: RoutingOptions, source: str) -> Any:
        """The session of a call when sessions are sticky: LangGraph's ``thread_id`` (or ``session_id`` in the
        config's metadata); None for a call kwarg or a forced route, which decide their own call."""
        if not self.sticky_sessions or source == "kwarg" or options.route is not None:
            return None
        config = ensure_config(config)
        configurable, metadata = config.get("configurable") or {}, config.get("metadata") or {}
        session = configurable.get("thread_id", metadata.get("thread_id", metadata.get("session_id")))
        return None if session is None else ("session", str(session))

    def _keep_pin(self, answered: Answered, rest: Mapping[str, Any]) -> Answered:
        """Pin the call's run (if any) to the model that answered (in observe mode: the model the router chose); an
        escalated call re-pins it to the large model (:meth:`RoutePins.pin`)."""
        self._sticky.record(rest.get(SESSION_KEY), answered)
        run = rest.get(RUN_KEY)
        if run is not None:
            kept = answered if answered.mode != "observe" else replace(answered, answered_by=answered.decision.target)
            self._pins.pin(run, kept)
        return answered

    def _decide_call(
        self, input: LanguageModelInput, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Resolve the call's options, score the conversation, and return kwargs carrying the decision."""
        if DECISION_KEY in kwargs:
            return kwargs
        kwargs = dict(kwargs)
        options, source = resolve_from_config(pop_routing(kwargs), config, self._routing_defaults())
        messages = self._convert_input(input).to_messages()
        run = self._run_key(messages, config, options, source)
        if run is not None:
            kwargs[RUN_KEY] = run
        session = self._session_key(config, options, source)
        if session is not None:
            kwargs[SESSION_KEY] = session
        router = self.current_router()
        decision = (
            self._pins.get(run)
            or self._sticky.get(session)
            or router.decide(messages, options, source, router_input=self.router_input)
        )
        kwargs[DECISION_KEY] = decision.to_dict()
        kwargs[ROUTER_KEY] = router
        return kwargs

    async def _adecide_call(
        self, input: LanguageModelInput, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """:meth:`_decide_call` off the event loop (scoring runs the encoder)."""
        if DECISION_KEY in kwargs:
            return kwargs
        return await run_in_executor(None, self._decide_call, input, config, kwargs)

    def _prepare(
        self, messages: list[BaseMessage], run_manager: Any, kwargs: dict[str, Any]
    ) -> tuple[RouteDecision, dict[str, Any], HybridRouter]:
        """The call's decision (made here when no entry point made it), the kwargs left for the children, and the
        router that decided (the cascade's verifier must be the same router's)."""
        rest = dict(kwargs)
        decided = rest.pop(DECISION_KEY, None)
        router = rest.pop(ROUTER_KEY, None) or self.current_router()
        call_options = pop_routing(rest)
        if decided is not None:
            return RouteDecision(**decided), rest, router
        metadata = getattr(run_manager, "metadata", None)
        options, source = resolve_call_options(
            call_options, metadata, ensure_config().get("configurable"), self._routing_defaults()
        )
        return router.decide(messages, options, source, router_input=self.router_input), rest, router

    def current_router(self) -> HybridRouter:
        """The router now: ``router`` itself, or what its provider (a ``RouterRefresher``) holds at this moment."""
        return current_router(self.router)

    def _child(self, target: str) -> BaseChatModel:
        return self.small if target == "small" else self.large

    def _names(self) -> tuple[str, str]:
        return children.model_name_of(self.small), children.model_name_of(self.large)

    def _runner(self) -> FallbackRunner:
        """The fallback runner for the current settings; kept between calls, so cooldowns see every call."""
        return self._runners.get(
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
            fallback=self.fallback,
            model_names=self._names(),
            policy=self.fallback_policy,
            cooldown_after=self.cooldown_after,
            cooldown_s=self.cooldown_s,
        )

    def _stop(self, stop: list[str] | None) -> list[str] | None:
        return stop if stop is not None else self.stop

    def _child_kwargs(self, target: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Wrapper defaults < the child's own tool binding < the call's kwargs."""
        rest = dict(kwargs)
        rest.pop(RUN_KEY, None)
        rest.pop(SESSION_KEY, None)
        rest.pop(ROUTER_KEY, None)
        bound = (rest.pop(BINDINGS_KEY, None) or {}).get(target, {})
        defaults = {
            k: v for k, v in (("temperature", self.temperature), ("max_tokens", self.max_tokens)) if v is not None
        }
        return {**defaults, **bound, **rest}

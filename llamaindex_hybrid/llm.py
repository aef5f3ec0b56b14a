"""HybridLLM: a LlamaIndex ``FunctionCallingLLM`` that sends each call to a small or a large LLM.

The router (``hybrid_router``) decides; this module only adapts it to LlamaIndex. Each call resolves its routing
options (call kwarg > ``hybrid_router.routing()`` block > the model's default), lets the router choose, runs the
chosen child through the core ``FallbackRunner`` and tags the response with ``additional_kwargs["hybrid_router"]``.
The children emit their own LLM events and callbacks (token counters count each call once); HybridLLM adds one
:class:`~llamaindex_hybrid.events.HybridRouteEvent` per call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import (
    Annotated,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Literal,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BeforeValidator, Field, PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection
from llama_index.core.tools.types import BaseTool
from pydantic import PositiveInt

from hybrid_router import Answered, FallbackRunner, HybridRouter, RouteDecision, RoutingOptions, current_routing
from hybrid_router.core.cascade_runner import CascadeRunner, Verdict
from hybrid_router.core.conversation import router_text
from hybrid_router.core.fallback import FallbackPolicy, RunnerCache, describe
from hybrid_router.core.options import OPTION_ALIASES, resolve_options, strict_fraction
from hybrid_router.core.pinning import LargeAnswers, RoutePins
from hybrid_router.core.records import add_route_record
from hybrid_router.core.refresh import current_router
from hybrid_router.traffic.routing_log import RoutingLog

from . import cascade
from .callbacks import LLMCallbacks
from .engine_query import ENGINE_QUERY_LABEL, current_engine_query
from .engine_query import install as install_engine_query
from .events import emit_route_event
from .traffic import log_answer

try:  # the workflow runtime sets a run id inside every workflow (and agent) run
    from workflows.plugins.basic import get_current_run_id
except ImportError:  # pragma: no cover - llama-index-workflows is a dependency of llama-index-core

    def get_current_run_id() -> Optional[str]:
        return None


METADATA_KEY = "hybrid_router"
#: ``HybridLLM._plan`` (options, router score, decision) is a span, so traces show the router's time per call.
dispatcher = get_dispatcher(__name__)
#: A threshold, drop or share field: None or a number in [0, 1] (bools rejected before pydantic coerces them).
RoutingFraction = Annotated[Optional[float], BeforeValidator(strict_fraction)]
R = TypeVar("R", ChatResponse, CompletionResponse)


def _smaller(a: int, b: int) -> int:
    """The smaller of two limits, ignoring an unknown (non-positive) one."""
    known = [v for v in (a, b) if v and v > 0]
    return min(known) if known else min(a, b)


def _has_output(response: Union[ChatResponse, CompletionResponse]) -> bool:
    """Whether a streamed chunk is output: new text or a tool call (an empty role chunk is not)."""
    if response.delta:
        return True
    message = getattr(response, "message", None)
    if message is None:
        return response.delta is None and bool(response.text)
    if message.additional_kwargs.get("tool_calls") or any(isinstance(b, ToolCallBlock) for b in message.blocks):
        return True
    return response.delta is None and bool(message.content)


def _tool_args(user_msg: Any, chat_history: Any, verbose: bool, parallel: bool, required: bool) -> Dict[str, Any]:
    """The ``*_with_tools`` arguments, forwarded as they are to the chosen child."""
    return {
        "user_msg": user_msg,
        "chat_history": chat_history,
        "verbose": verbose,
        "allow_parallel_tool_calls": parallel,
        "tool_required": required,
    }


def _tool_messages(
    user_msg: Optional[Union[str, ChatMessage]], chat_history: Optional[List[ChatMessage]]
) -> List[ChatMessage]:
    """The conversation a tool call answers (what the router scores)."""
    messages = list(chat_history or [])
    if isinstance(user_msg, str):
        messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
    elif user_msg is not None:
        messages.append(user_msg)
    return messages


@dataclass(frozen=True)
class _Plan:
    """One call's decision, the kwargs left for the child, the workflow run it belongs to (if pinning), and the
    query it was routed on (what a cascade's verifier reads next to the answer)."""

    decision: RouteDecision
    kwargs: Dict[str, Any]
    run: Optional[str]
    query: Union[str, Sequence[Any]] = ""
    router: Optional[HybridRouter] = None
    callbacks: Optional[LLMCallbacks] = None
    started: float = field(default_factory=time.perf_counter)


class HybridLLM(FunctionCallingLLM):
    """Routes every call between ``small`` and ``large`` (any two LlamaIndex LLMs) with a ``HybridRouter``.

    Use it anywhere an LLM goes (``Settings.llm``, query and chat engines, agents). Per call, the most specific
    setting wins: a call kwarg (``quality_threshold=``, ``max_quality_drop=``, ``large_share=``,
    ``hybrid_route=``, ``hybrid_strategy=``), then an enclosing ``hybrid_router.routing(...)`` block (the way to
    set it for query engines and agents, which call the LLM without kwargs), then this model's own default fields,
    then the router's default threshold. Each response carries ``additional_kwargs["hybrid_router"]`` (route, score,
    threshold, source, fallback...), streamed chunks included; engines and agents keep only the answer text, so
    ``hybrid_router.core.records.record_routes()`` collects the same records for every call made inside it.

    Inside one workflow run (every agent run is one), the first call's answering model is pinned and later
    calls of the run reuse it, so tool-call messages never cross providers (with ``strategy="cascade"`` a run
    pinned to the small model is still verified, and an escalation re-pins it large); a call kwarg still overrides, and
    ``pin_runs=False`` routes every call on its own. If the chosen model raises, or gives no output within
    ``timeout`` seconds, the other one answers (``fallback=False`` disables this).
    """

    small: LLM = Field(description="The cheap model.")
    large: LLM = Field(description="The expensive model.")
    router: Union[HybridRouter, Callable[[], HybridRouter]] = Field(
        exclude=True,
        description="Scores queries (HybridRouter.shared_default() when omitted), or a provider of the current router "
        "such as a hybrid_router.core.refresh.RouterRefresher: each call uses one router throughout.",
    )
    quality_threshold: RoutingFraction = Field(default=None, description="Default threshold: small iff score >= it.")
    max_quality_drop: RoutingFraction = Field(default=None, description="Default: cheapest threshold within this drop.")
    large_share: RoutingFraction = Field(default=None, description="Default: send about this share to the large model.")
    route: Optional[Literal["small", "large"]] = Field(default=None, description="Default: force 'small' or 'large'.")
    strategy: Literal["route", "cascade"] = Field(
        default="route",
        description="'route': the routed model answers. 'cascade': small answers unless the query is clearly hard, "
        "and the router's answer verifier accepts that answer or escalates to large (streams are buffered until "
        "verified; needs a router trained on answers).",
    )
    timeout: Optional[float] = Field(default=None, description="Seconds to first output before falling back.")
    idle_timeout: Optional[float] = Field(
        default=None, description="Seconds a stream may pause between chunks after its first output; then it fails."
    )
    fallback: bool = Field(default=True, description="Let the other model answer when the chosen one fails.")
    fallback_policy: FallbackPolicy = Field(
        default_factory=FallbackPolicy, exclude=True, description="Which errors fall back; the others are raised."
    )
    cooldown_after: Optional[int] = Field(
        default=None, description="Skip a model that failed this many calls in a row (None: never skip)."
    )
    cooldown_s: float = Field(default=30.0, description="How long a failing model is skipped.")
    mode: Literal["route", "observe"] = Field(
        default="route",
        description="'observe': decide and record the decision, but let the large model answer every call (a "
        "routing log's shadow calls can sample the small one in the background).",
    )
    pin_runs: bool = Field(default=True, description="Keep one model for all calls of one workflow/agent run.")
    sticky_sessions: bool = Field(
        default=False,
        description="Escalate-only sessions: a chat whose history holds an answer the large model gave through this "
        "HybridLLM goes large too (a chat engine's memory, an agent's chat history); a call kwarg still decides.",
    )
    routing_log: Optional[RoutingLog] = Field(
        default=None, exclude=True, description="Append every answered call (off the request path), with shadows."
    )
    router_input: Union[Literal["conversation", "last_user"], PositiveInt, Callable[[Any], str]] = Field(
        default="conversation",
        exclude=True,
        description="What the router scores: 'conversation' (latest user turn, earlier turns, system prompt), "
        "'last_user' (the latest user message alone), N (a window of the last N turns) or a callable (messages -> "
        "text). Long texts keep their start and their end.",
    )
    engine_query: bool = Field(
        default=True,
        description="Inside a query engine's query()/aquery(), route on its query string instead of the prompt "
        "(whose retrieved context would hide the question); see llamaindex_hybrid.engine_query.",
    )

    _runners: RunnerCache = PrivateAttr(default_factory=RunnerCache)
    _pins: RoutePins = PrivateAttr()
    _sticky: LargeAnswers = PrivateAttr(default_factory=LargeAnswers)

    def __init__(self, small: LLM, large: LLM, router: Optional[HybridRouter] = None, **kwargs: Any) -> None:
        super().__init__(small=small, large=large, router=router or HybridRouter.shared_default(), **kwargs)
        _ = self._defaults, self._runner  # validate the default options and the runner settings now
        self._pins = RoutePins()
        install_engine_query()

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "HybridLLM"

    @property
    def _defaults(self) -> RoutingOptions:
        """The model's own routing options, read from its fields at each call (assignment and copies take effect)."""
        return RoutingOptions(
            self.quality_threshold, self.max_quality_drop, self.large_share, self.route, self.strategy
        )

    @property
    def _runner(self) -> FallbackRunner:
        """The fallback runner for the current fields; kept while they stay the same, so cooldowns see every call."""
        return self._runners.get(
            timeout=self.timeout,
            idle_timeout=self.idle_timeout,
            fallback=self.fallback,
            model_names=(self.small.metadata.model_name, self.large.metadata.model_name),
            policy=self.fallback_policy,
            cooldown_after=self.cooldown_after,
            cooldown_s=self.cooldown_s,
        )

    @property
    def _cascade(self) -> CascadeRunner:
        return CascadeRunner(self._runner, observe=self.mode == "observe")

    def _verify(self, plan: "_Plan") -> Callable[[Any], Verdict]:
        """The cascade's judge of a small answer to this call."""
        wants_json = cascade.expects_json(plan.kwargs)
        return lambda response: cascade.verdict(plan.router, plan.decision, plan.query, response, wants_json)

    def _verify_stream(self, plan: "_Plan") -> Callable[[List[Any]], Verdict]:
        verify = self._verify(plan)
        return lambda chunks: verify(chunks[-1])

    @property
    def metadata(self) -> LLMMetadata:
        """Limits both children satisfy: the smaller window and output, tools only if both support them."""
        s, l = self.small.metadata, self.large.metadata
        return LLMMetadata(
            context_window=_smaller(s.context_window, l.context_window),
            num_output=_smaller(s.num_output, l.num_output),
            is_chat_model=s.is_chat_model or l.is_chat_model,
            is_function_calling_model=s.is_function_calling_model and l.is_function_calling_model,
            model_name=f"hybrid({s.model_name}|{l.model_name})",
            system_role=s.system_role if s.system_role == l.system_role else MessageRole.SYSTEM,
        )

    # ------------------------------------------------------------------ routing
    def _child(self, target: str) -> LLM:
        return self.small if target == "small" else self.large

    @dispatcher.span
    def _plan(self, query: Union[str, Sequence[Any]], kwargs: Dict[str, Any], *, events: bool = True) -> _Plan:
        """Validate the input and options, and decide (raises ValueError before any model call); ``events``: open
        the call's LLM callback event (see :mod:`llamaindex_hybrid.callbacks`)."""
        given = RoutingOptions.from_mapping(kwargs)
        child_kwargs = {k: v for k, v in kwargs.items() if k not in OPTION_ALIASES}
        layers = [("kwarg", given), ("context", current_routing()), ("default", self._defaults)]
        options, source = resolve_options(layers)
        run = get_current_run_id() if self.pin_runs and not given.is_set else None
        router = self.current_router()
        routed_on: Union[str, Sequence[Any]] = query
        decision = self._pins.get(run) or self._sticky_decision(query, given, options)
        if decision is not None:
            router_text(query)  # still reject empty input
        elif (question := current_engine_query() if self.engine_query else None) is not None:
            router_text(query)
            decision = router.decide(question, options, source, router_input_label=ENGINE_QUERY_LABEL)
            routed_on = question
        else:
            decision = router.decide(query, options, source, router_input=self.router_input)
        children = (self.small, self.large)
        callbacks = LLMCallbacks.start(self.callback_manager, children, query, child_kwargs) if events else None
        return _Plan(decision, child_kwargs, run, routed_on, router, callbacks)

    def _sticky_decision(
        self, query: Union[str, Sequence[Any]], given: RoutingOptions, options: RoutingOptions
    ) -> Optional[RouteDecision]:
        """The large model, when sessions are sticky and the history holds one of its earlier answers."""
        if not self.sticky_sessions or given.is_set or options.route is not None or isinstance(query, str):
            return None
        texts = [m.content for m in query if getattr(m, "role", None) == MessageRole.ASSISTANT]
        return self._sticky.find(t for t in texts if isinstance(t, str))

    def current_router(self) -> HybridRouter:
        """The router now: ``router`` itself, or what its provider (a ``RouterRefresher``) holds at this moment."""
        return current_router(self.router)

    async def _aplan(self, query: Union[str, Sequence[Any]], kwargs: Dict[str, Any]) -> _Plan:
        """:meth:`_plan` off the event loop (scoring runs the encoder); the thread sees this context."""
        return await asyncio.to_thread(self._plan, query, kwargs)

    def _answered(self, plan: _Plan, answered: Answered, record: bool = True) -> Dict[str, Any]:
        """Pin the run to the model that answered (an escalation re-pins it large), report the call to
        ``record_routes``; its metadata.

        A stream is reported when it ends (``record=False`` here), so a failure midway is in its record.
        """
        self._pins.pin(plan.run, answered)
        metadata = answered.metadata()
        if record:
            add_route_record(metadata)
        return metadata

    def _finish(self, plan: _Plan, answered: Answered, response: R, **event_input: Any) -> R:
        response.additional_kwargs[METADATA_KEY] = self._answered(plan, answered)
        self._report(plan, answered, response, **event_input)
        return response

    def _report(
        self, plan: _Plan, answered: Answered, response: Any, error: Optional[str] = None, **event_input: Any
    ) -> None:
        """Emit the routing event and append the call to :attr:`routing_log` (if any); ``error``: failed midway."""
        emit_route_event(answered, response, error=error, **event_input)
        if plan.callbacks is not None:
            plan.callbacks.end(response)
        if self.sticky_sessions and error is None:
            message = getattr(response, "message", None)
            self._sticky.record(getattr(message, "content", None), answered)
        if self.routing_log is not None:
            log_answer(self.routing_log, answered, response, plan.started, self._child, error=error, **event_input)

    @staticmethod
    def _stream_failed(metadata: Optional[Dict[str, Any]], last: Any, exc: BaseException) -> str:
        """Mark a stream that failed after output: ``error`` in its routing record and on its last chunk."""
        error = describe(exc)
        if metadata is not None:
            metadata["error"] = error
            last.additional_kwargs[METADATA_KEY]["error"] = error
        return error

    def _tag_stream(self, plan: _Plan, chunks: Iterator[tuple[R, Answered]], **event_input: Any) -> Iterator[R]:
        answered, last, metadata, error = None, None, None, None
        try:
            for last, answered in chunks:
                metadata = metadata or self._answered(plan, answered, record=False)
                last.additional_kwargs[METADATA_KEY] = dict(metadata)
                yield last
        except Exception as exc:
            error = self._stream_failed(metadata, last, exc)
            if plan.callbacks is not None:
                plan.callbacks.fail(exc)
            raise
        finally:
            chunks.close()  # type: ignore[attr-defined]
            if metadata is not None:
                add_route_record(metadata)
            if answered is not None:
                self._report(plan, answered, last, error, **event_input)

    async def _atag_stream(
        self, plan: _Plan, chunks: AsyncIterator[tuple[R, Answered]], **event_input: Any
    ) -> AsyncIterator[R]:
        answered, last, metadata, error = None, None, None, None
        try:
            async for last, answered in chunks:
                metadata = metadata or self._answered(plan, answered, record=False)
                last.additional_kwargs[METADATA_KEY] = dict(metadata)
                yield last
        except Exception as exc:
            error = self._stream_failed(metadata, last, exc)
            if plan.callbacks is not None:
                plan.callbacks.fail(exc)
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
            if metadata is not None:
                add_route_record(metadata)
            if answered is not None:
                self._report(plan, answered, last, error, **event_input)

    def _astart(self, open_stream: Callable[[LLM], Any]) -> Callable[[str], AsyncIterator[Any]]:
        """Turn ``await child.astream_*(...)`` into the async-iterator factory ``FallbackRunner.astream`` takes.

        Closing the iterator it makes closes the child's stream (``async for`` alone would leave it open).
        """

        async def start(target: str) -> AsyncIterator[Any]:
            stream = await open_stream(self._child(target))
            try:
                async for chunk in stream:
                    yield chunk
            finally:
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()

        return start

    def _stream_pairs(self, plan: _Plan, start: Callable[[str], Any]) -> Iterator[tuple[Any, Answered]]:
        """The cascade runner's stream, where only text or a tool call counts as the first output."""
        usage = lambda chunks: cascade.usage_of(chunks[-1])  # noqa: E731
        verify = self._verify_stream(plan)
        return self._cascade.stream(plan.decision, start, verify, is_output=_has_output, usage=usage)

    def _astream_pairs(
        self, plan: _Plan, start: Callable[[str], AsyncIterator[Any]]
    ) -> AsyncIterator[tuple[Any, Answered]]:
        """Async :meth:`_stream_pairs`."""
        usage = lambda chunks: cascade.usage_of(chunks[-1])  # noqa: E731
        verify = self._verify_stream(plan)
        return self._cascade.astream(plan.decision, start, verify, is_output=_has_output, usage=usage)

    def _run(self, plan: _Plan, call: Callable[[str], R]) -> tuple[R, Answered]:
        try:
            return self._cascade.run(plan.decision, call, self._verify(plan), cascade.usage_of)
        except BaseException as exc:
            if plan.callbacks is not None:
                plan.callbacks.fail(exc)
            raise

    async def _arun(self, plan: _Plan, call: Callable[[str], Any]) -> tuple[Any, Answered]:
        try:
            return await self._cascade.arun(plan.decision, call, self._verify(plan), cascade.usage_of)
        except BaseException as exc:
            if plan.callbacks is not None:
                plan.callbacks.fail(exc)
            raise

    # ------------------------------------------------------------------ chat
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Chat with the model the router picks."""
        messages = list(messages)
        plan = self._plan(messages, kwargs)
        response, answered = self._run(plan, lambda t: self._child(t).chat(messages, **plan.kwargs))
        return self._finish(plan, answered, response, messages=messages)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Async :meth:`chat`."""
        messages = list(messages)
        plan = await self._aplan(messages, kwargs)
        call = lambda t: self._child(t).achat(messages, **plan.kwargs)  # noqa: E731
        response, answered = await self._arun(plan, call)
        return self._finish(plan, answered, response, messages=messages)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream a chat; every chunk carries the routing metadata."""
        messages = list(messages)
        plan = self._plan(messages, kwargs)
        chunks = self._stream_pairs(plan, lambda t: self._child(t).stream_chat(messages, **plan.kwargs))
        return self._tag_stream(plan, chunks, messages=messages)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat`."""
        messages = list(messages)
        plan = await self._aplan(messages, kwargs)
        start = self._astart(lambda child: child.astream_chat(messages, **plan.kwargs))
        return self._atag_stream(plan, self._astream_pairs(plan, start), messages=messages)

    # ------------------------------------------------------------------ completion
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Complete with the model the router picks."""
        plan = self._plan(prompt, kwargs)
        call = lambda t: self._child(t).complete(prompt, formatted=formatted, **plan.kwargs)  # noqa: E731
        response, answered = self._run(plan, call)
        return self._finish(plan, answered, response, prompt=prompt)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Async :meth:`complete`."""
        plan = await self._aplan(prompt, kwargs)
        call = lambda t: self._child(t).acomplete(prompt, formatted=formatted, **plan.kwargs)  # noqa: E731
        response, answered = await self._arun(plan, call)
        return self._finish(plan, answered, response, prompt=prompt)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        """Stream a completion; every chunk carries the routing metadata."""
        plan = self._plan(prompt, kwargs)
        start = lambda t: self._child(t).stream_complete(prompt, formatted=formatted, **plan.kwargs)  # noqa: E731
        return self._tag_stream(plan, self._stream_pairs(plan, start), prompt=prompt)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        """Async :meth:`stream_complete`."""
        plan = await self._aplan(prompt, kwargs)
        start = self._astart(lambda child: child.astream_complete(prompt, formatted=formatted, **plan.kwargs))
        return self._atag_stream(plan, self._astream_pairs(plan, start), prompt=prompt)

    # ------------------------------------------------------------------ tools
    def _tool_plan(
        self, args: Dict[str, Any], kwargs: Dict[str, Any], *, events: bool = True
    ) -> tuple[_Plan, List[ChatMessage]]:
        """Check both children call tools, then plan on the conversation the tool call answers."""
        children = (("small", self.small), ("large", self.large))
        missing = [name for name, child in children if not child.metadata.is_function_calling_model]
        if missing:
            raise ValueError(f"tool calling needs two function-calling models; not one: {', '.join(missing)}")
        messages = _tool_messages(args["user_msg"], args["chat_history"])
        return self._plan(messages, kwargs, events=events), messages

    def chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[List[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Pick the child first, then let it format the tools, call itself and validate the answer."""
        args = _tool_args(user_msg, chat_history, verbose, allow_parallel_tool_calls, tool_required)
        plan, messages = self._tool_plan(args, kwargs)
        call = lambda t: self._child(t).chat_with_tools(tools, **args, **plan.kwargs)  # noqa: E731
        response, answered = self._run(plan, call)
        return self._finish(plan, answered, response, messages=messages)

    async def achat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[List[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Async :meth:`chat_with_tools`."""
        args = _tool_args(user_msg, chat_history, verbose, allow_parallel_tool_calls, tool_required)
        plan, messages = await asyncio.to_thread(self._tool_plan, args, kwargs)
        call = lambda t: self._child(t).achat_with_tools(tools, **args, **plan.kwargs)  # noqa: E731
        response, answered = await self._arun(plan, call)
        return self._finish(plan, answered, response, messages=messages)

    def stream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[List[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseGen:
        """Streaming :meth:`chat_with_tools`; every chunk carries the routing metadata."""
        args = _tool_args(user_msg, chat_history, verbose, allow_parallel_tool_calls, tool_required)
        plan, messages = self._tool_plan(args, kwargs)
        start = lambda t: self._child(t).stream_chat_with_tools(tools, **args, **plan.kwargs)  # noqa: E731
        return self._tag_stream(plan, self._stream_pairs(plan, start), messages=messages)

    async def astream_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[List[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> ChatResponseAsyncGen:
        """Async :meth:`stream_chat_with_tools` (what ``FunctionAgent`` calls)."""
        args = _tool_args(user_msg, chat_history, verbose, allow_parallel_tool_calls, tool_required)
        plan, messages = await asyncio.to_thread(self._tool_plan, args, kwargs)
        start = self._astart(lambda child: child.astream_chat_with_tools(tools, **args, **plan.kwargs))
        return self._atag_stream(plan, self._astream_pairs(plan, start), messages=messages)

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: Optional[Union[str, ChatMessage]] = None,
        chat_history: Optional[List[ChatMessage]] = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> Dict[str, Any]:
        """Pick the child now and let it format the tools; the kwargs returned send ``chat`` to that child.

        Only code that prepares and chats in two steps needs this: the ``*_with_tools`` methods do both at once
        and keep the router's score in the metadata (here the route is fixed, ``threshold_source`` is
        ``"kwarg:route"``).
        """
        args = _tool_args(user_msg, chat_history, verbose, allow_parallel_tool_calls, tool_required)
        plan, _ = self._tool_plan(args, kwargs, events=False)  # the chat() that follows emits the events
        target = plan.decision.target
        prepared = self._child(target)._prepare_chat_with_tools_compat(tools, **args, **plan.kwargs)
        return {**prepared, "hybrid_route": target}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> List[ToolSelection]:
        """Parse with the child that produced ``response`` (named in its ``hybrid_router`` metadata)."""
        answered_by = (response.additional_kwargs.get(METADATA_KEY) or {}).get("answered_by")
        if answered_by is None:
            if error_on_no_tool_call:
                raise ValueError("this response has no hybrid_router metadata: it was not produced by a HybridLLM")
            return []
        child = self._child(answered_by)
        return child.get_tool_calls_from_response(response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)

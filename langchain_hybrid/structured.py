"""Structured output through ``HybridChatModel``: each child does it its own way.

``with_structured_output(schema, method=..., strict=..., include_raw=...)`` asks each child for its own structured
runnable (``ChatOpenAI`` binds ``response_format`` for ``json_schema``/``json_mode`` and a forced tool for
``function_calling``; other providers do what they do) and splits it into the call kwargs the child binds and the
parser that reads its answer. The wrapper binds both children's kwargs (the chosen child's are used per call, as
with ``bind_tools``) and parses each answer with the parser of the child that answered, read off
``response_metadata["hybrid_router"]["answered_by"]``: so routing, fallback, timeouts, the routing log and usage
callbacks work as for any call, and ``include_raw=True`` returns the labelled raw message.
"""

from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any, AsyncIterator, Iterator, Mapping

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.runnables import (
    Runnable,
    RunnableBinding,
    RunnableConfig,
    RunnableMap,
    RunnablePassthrough,
    RunnableSequence,
    RunnableSerializable,
)
from pydantic import ConfigDict

from .labels import METADATA_KEY

#: Tracing metadata a structured-output binding carries; LangChain reads it at the wrapper, a child rejects it.
TRACE_KEY = "ls_structured_output_format"


def split(structured: Runnable, child: BaseChatModel, target: str) -> tuple[dict[str, Any], Runnable]:
    """A child's ``with_structured_output(...)`` runnable as (the kwargs it binds on the child, its parser)."""
    steps = structured.steps if isinstance(structured, RunnableSequence) else []
    first = steps[0] if steps else None
    if not isinstance(first, RunnableBinding) or first.bound is not child or len(steps) < 2:
        raise TypeError(
            f"the {target} model's with_structured_output returned {type(structured).__name__}, not "
            "model.bind(...) | parser; HybridChatModel can only route structured output for such models"
        )
    parser = steps[1] if len(steps) == 2 else RunnableSequence(*steps[1:])
    kwargs = {key: value for key, value in first.kwargs.items() if key != TRACE_KEY}
    return kwargs, parser


def answered_by(message: Any) -> str:
    """Which child answered a labelled message or first stream chunk (``"small"``/``"large"``)."""
    metadata = getattr(message, "response_metadata", None) or {}
    who = (metadata.get(METADATA_KEY) or {}).get("answered_by")
    if who not in ("small", "large"):
        raise ValueError("structured output got a message without HybridChatModel's routing label")
    return who


class ChildParser(RunnableSerializable[BaseMessage, Any]):
    """Parses an answer with the parser of the child that answered it (streams partial output if that parser
    does)."""

    parsers: Mapping[str, Runnable]

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def invoke(self, input: BaseMessage, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return self.parsers[answered_by(input)].invoke(input, config, **kwargs)

    async def ainvoke(self, input: BaseMessage, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        return await self.parsers[answered_by(input)].ainvoke(input, config, **kwargs)

    def transform(
        self, input: Iterator[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        first = next(input, None)
        if first is None:
            return
        yield from self.parsers[answered_by(first)].transform(chain([first], input), config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[BaseMessage], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        iterator = input.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return

        async def rest() -> AsyncIterator[BaseMessage]:
            yield first
            async for item in iterator:
                yield item

        async for output in self.parsers[answered_by(first)].atransform(rest(), config, **kwargs):
            yield output

    def stream(self, input: BaseMessage, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Any]:
        yield from self.transform(iter([input]), config, **kwargs)

    async def astream(
        self, input: BaseMessage, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async def one() -> AsyncIterator[BaseMessage]:
            yield input

        async for output in self.atransform(one(), config, **kwargs):
            yield output


def with_raw(llm: Runnable, parser: Runnable) -> Runnable:
    """``{"raw", "parsed", "parsing_error"}`` as LangChain's own ``include_raw=True`` builds it."""
    parser_assign = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
    parser_none = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parser_assign.with_fallbacks([parser_none], exception_key="parsing_error")

"""Stamp answers with who answered: ``response_metadata["hybrid_router"]``, and a ``model_name`` like the child's.

Each stamped answer is also reported to :func:`hybrid_router.core.records.record_routes` blocks, for callers whose
chain drops the message (output parsers, retrieval chains, agents).

``response_metadata["model_name"]`` is the name the answering child itself reported (an API returns its dated model
id, e.g. ``gpt-4o-mini-2024-07-18``), as if the child had been called directly; when the child reports none, the
child's configured name. The configured name is always in the ``hybrid_router`` block (``model``), which cost
tracking keys on. In a stream, string values of ``response_metadata`` are concatenated when chunks are added
together, so a stream carries ``model_name`` exactly once: where the child first reports it (``ChatOpenAI``: on its
last chunk), else on a closing empty chunk; the ``hybrid_router`` block rides on the first chunk.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from hybrid_router import Answered
from hybrid_router.core.records import add_route_record

MODEL_NAME_KEY = "model_name"
METADATA_KEY = "hybrid_router"
_REPLACED = (MODEL_NAME_KEY, METADATA_KEY)


def _without_labels(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if k not in _REPLACED}


def _routing_metadata(answered: Answered) -> dict[str, Any]:
    metadata = answered.metadata()
    add_route_record(metadata)
    return metadata


def _reported_name(*sources: Mapping[str, Any] | None) -> str | None:
    """The first non-empty ``model_name`` a child put in its metadata (None if none)."""
    for values in sources:
        name = (values or {}).get(MODEL_NAME_KEY)
        if isinstance(name, str) and name:
            return name
    return None


def label_result(result: ChatResult, answered: Answered) -> ChatResult:
    """A copy of a child's result carrying the routing metadata, with the child's own ``model_name``."""
    metadata = _routing_metadata(answered)
    fallback_name = _reported_name(result.llm_output) or answered.model_name
    generations = []
    for g in result.generations:
        name = _reported_name(g.message.response_metadata, g.generation_info) or fallback_name
        labels = {MODEL_NAME_KEY: name, METADATA_KEY: metadata}
        generations.append(
            ChatGeneration(
                message=g.message.model_copy(
                    update={"response_metadata": {**_without_labels(g.message.response_metadata), **labels}}
                ),
                generation_info=_without_labels(g.generation_info) or None,
            )
        )
    llm_output = {**(result.llm_output or {}), MODEL_NAME_KEY: fallback_name}
    return ChatResult(generations=generations, llm_output=llm_output)


class StreamLabels:
    """Labels one stream's chunks: the routing metadata on the first, ``model_name`` exactly once (see module)."""

    def __init__(self) -> None:
        self._labelled_first = False
        self._named = False
        self._answered: Answered | None = None

    def label(self, chunk: ChatGenerationChunk, answered: Callable[[], Answered]) -> ChatGenerationChunk:
        """A copy of a child's chunk; ``answered`` is called once, for the first chunk (it pins the run)."""
        metadata = _without_labels(chunk.message.response_metadata)
        if not self._labelled_first:
            self._labelled_first = True
            self._answered = answered()
            metadata[METADATA_KEY] = _routing_metadata(self._answered)
        name = _reported_name(chunk.message.response_metadata, chunk.generation_info)
        if name is not None and not self._named:
            self._named = True
            metadata[MODEL_NAME_KEY] = name
        return ChatGenerationChunk(
            message=chunk.message.model_copy(update={"response_metadata": metadata}),
            generation_info=_without_labels(chunk.generation_info) or None,
        )

    def closing_chunk(self) -> ChatGenerationChunk | None:
        """An empty chunk naming the configured model, when the stream had output but the child named none."""
        if self._answered is None or self._named:
            return None
        self._named = True
        message = AIMessageChunk(content="", response_metadata={MODEL_NAME_KEY: self._answered.model_name})
        return ChatGenerationChunk(message=message)

"""Stamp answers with who answered: ``response_metadata["model_name"]`` and ``response_metadata["hybrid_router"]``.

Each stamped answer is also reported to :func:`hybrid_router.core.records.record_routes` blocks, for callers whose
chain drops the message (output parsers, retrieval chains, agents).

``model_name`` is the answering child's name, so LangChain's usage callbacks and tracers count the tokens under
the model that produced them. In a stream, string values of ``response_metadata`` are concatenated when chunks
are added together, so the children's own ``model_name`` is removed from every chunk and the wrapper's pair is
put on exactly one chunk (the first).
"""

from __future__ import annotations

from typing import Any, Mapping

from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from hybrid_router import Answered
from hybrid_router.core.records import add_route_record

MODEL_NAME_KEY = "model_name"
METADATA_KEY = "hybrid_router"
_REPLACED = (MODEL_NAME_KEY, METADATA_KEY)


def _without_labels(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if k not in _REPLACED}


def _labels(answered: Answered) -> dict[str, Any]:
    metadata = answered.metadata()
    add_route_record(metadata)
    return {MODEL_NAME_KEY: answered.model_name, METADATA_KEY: metadata}


def label_result(result: ChatResult, answered: Answered) -> ChatResult:
    """A copy of a child's result whose messages (and ``llm_output``) name the model that answered."""
    labels = _labels(answered)
    generations = [
        ChatGeneration(
            message=g.message.model_copy(
                update={"response_metadata": {**_without_labels(g.message.response_metadata), **labels}}
            ),
            generation_info=_without_labels(g.generation_info) or None,
        )
        for g in result.generations
    ]
    llm_output = {**(result.llm_output or {}), MODEL_NAME_KEY: answered.model_name}
    return ChatResult(generations=generations, llm_output=llm_output)


def label_chunk(chunk: ChatGenerationChunk, answered: Answered | None) -> ChatGenerationChunk:
    """A copy of a child's chunk without the child's ``model_name``; with the labels when ``answered`` is given."""
    metadata = _without_labels(chunk.message.response_metadata)
    if answered is not None:
        metadata.update(_labels(answered))
    return ChatGenerationChunk(
        message=chunk.message.model_copy(update={"response_metadata": metadata}),
        generation_info=_without_labels(chunk.generation_info) or None,
    )

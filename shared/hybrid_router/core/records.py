"""Collect the routing record of every call made inside a block, wherever the framework hides the LLM response.

Query engines, chat engines, agents and output parsers keep only the text of an LLM answer, so the
``hybrid_router`` metadata on the response never reaches the caller. The wrappers report every answered call
here; ``with record_routes() as routes:`` collects them (contextvar-based: calls in threads, asyncio tasks and
workflow steps started inside the block are collected too; nested blocks each collect the calls made inside them).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Mapping

_ACTIVE: ContextVar[tuple[list[dict[str, Any]], ...]] = ContextVar("hybrid_router_records", default=())


@contextmanager
def record_routes() -> Iterator[list[dict[str, Any]]]:
    """Yield a list that receives the ``hybrid_router`` metadata dict of each call answered inside the block."""
    records: list[dict[str, Any]] = []
    token = _ACTIVE.set(_ACTIVE.get() + (records,))
    try:
        yield records
    finally:
        _ACTIVE.reset(token)


def add_route_record(metadata: Mapping[str, Any]) -> None:
    """Report one answered call (the wrappers call this); a no-op outside any :func:`record_routes` block."""
    for records in _ACTIVE.get():
        records.append(dict(metadata))

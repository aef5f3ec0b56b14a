"""The query string of the LlamaIndex query engine a call runs in, so ``HybridLLM`` routes RAG on the question.

A query engine formats the retrieved context and the question into one prompt; LlamaIndex's default QA template puts
the context first (``Context information is below. ... Query: {query_str}``), so the router would score a
kilobyte of retrieved text and hardly the question. ``HybridLLM`` therefore routes a call made inside
``engine.query(...)`` / ``aquery(...)`` on that query string itself.

How the query is found, and why this way: every ``BaseQueryEngine.query``/``aquery`` runs in an instrumentation
span (``@dispatcher.span``), whose bound arguments hold the ``str_or_query_bundle`` the caller passed, and LlamaIndex
keeps the active span id in a context variable (``active_span_id``) that follows the call into nested spans,
``asyncio`` tasks and ``asyncio.to_thread``. :class:`EngineQuerySpans`, a span handler on the root dispatcher,
records the parent of every open span and the query of every open query-engine span; at a call,
:func:`current_engine_query` walks up from the active span to the nearest query-engine span. This works for any
prompt template, response mode (compact, refine, tree summarize), custom query engine subclass and nested engines
(a sub-question engine's inner calls route on their sub-question); spans are closed on success and on errors, so a
failed query leaves nothing behind. Recognising the default QA template and cutting out ``Query: ...`` would break
with any custom template or a template change, and would misread a context that contains ``Query:``.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from typing import Any, Dict, Optional

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

#: Open spans remembered at most (a span whose end is never reported must not grow the map without bound).
MAX_OPEN_SPANS = 100_000
#: The argument of ``BaseQueryEngine.query`` / ``aquery`` (and of no other query-engine method) holding the query.
QUERY_ARGUMENT = "str_or_query_bundle"
#: How the routing record names this input (``router_input``).
ENGINE_QUERY_LABEL = "engine_query"


def _query_text(value: Any) -> Optional[str]:
    """The query string of a ``str_or_query_bundle`` argument (a string or a ``QueryBundle``)."""
    text = value if isinstance(value, str) else getattr(value, "query_str", None)
    return text if isinstance(text, str) and text.strip() else None


class EngineQuerySpans(BaseSpanHandler[Any]):
    """Tracks open spans' parents and the query of each open query-engine ``query``/``aquery`` span."""

    _parents: "OrderedDict[str, Optional[str]]" = PrivateAttr(default_factory=OrderedDict)
    _queries: Dict[str, str] = PrivateAttr(default_factory=dict)
    _mutex: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def class_name(cls) -> str:
        """Class name."""
        return "EngineQuerySpans"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Optional[Any] = None,
        parent_id: Optional[str] = None,
        tags: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        query = None
        if isinstance(instance, BaseQueryEngine) and QUERY_ARGUMENT in bound_args.arguments:
            query = _query_text(bound_args.arguments[QUERY_ARGUMENT])
        with self._mutex:
            self._parents[id_] = parent_id
            if query is not None:
                self._queries[id_] = query
            while len(self._parents) > MAX_OPEN_SPANS:
                old, _ = self._parents.popitem(last=False)
                self._queries.pop(old, None)

    def _close(self, id_: str) -> None:
        with self._mutex:
            self._parents.pop(id_, None)
            self._queries.pop(id_, None)

    def span_exit(self, id_: str, *args: Any, **kwargs: Any) -> None:
        self._close(id_)

    def span_drop(self, id_: str, *args: Any, **kwargs: Any) -> None:
        self._close(id_)

    def new_span(self, *args: Any, **kwargs: Any) -> None:  # bookkeeping is in span_enter
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def query_of(self, span_id: Optional[str]) -> Optional[str]:
        """The query of the nearest open query-engine span at or above ``span_id`` (None outside an engine)."""
        with self._mutex:
            for _ in range(len(self._parents) + 1):
                if span_id is None or span_id not in self._parents:
                    return None
                if span_id in self._queries:
                    return self._queries[span_id]
                span_id = self._parents[span_id]
        return None


_HANDLER: Optional[EngineQuerySpans] = None
_INSTALL_LOCK = threading.Lock()


def install() -> EngineQuerySpans:
    """Add the span handler to LlamaIndex's root dispatcher (once per process); ``HybridLLM`` calls this."""
    global _HANDLER
    if _HANDLER is None:
        with _INSTALL_LOCK:
            if _HANDLER is None:
                handler = EngineQuerySpans()
                get_dispatcher().add_span_handler(handler)
                _HANDLER = handler
    return _HANDLER


def current_engine_query() -> Optional[str]:
    """The query string of the query engine this call runs in, or None (outside ``engine.query``)."""
    handler = _HANDLER
    return None if handler is None else handler.query_of(active_span_id.get())

"""LlamaIndex's LLM callback events for the handlers on ``HybridLLM``'s own callback manager.

The children emit their own LLM callbacks (every LlamaIndex LLM does, through its own ``callback_manager``), and
``HybridLLM`` leaves their callback managers alone. A handler attached to the ``HybridLLM`` (its
``callback_manager=``, or ``Settings.callback_manager`` once it is ``Settings.llm``) that the answering child does not
already have gets the same ``CBEventType.LLM`` start and end events here, with the payloads LlamaIndex's own
``llm_chat_callback`` / ``llm_completion_callback`` send; a handler both have hears each call once, from the child.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Union

from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.llms.llm import LLM


class LLMCallbacks:
    """The start / end pair of one routed call, for the handlers only the ``HybridLLM`` has."""

    def __init__(self, manager: CallbackManager, query: Union[str, Sequence[Any]], kwargs: Dict[str, Any]):
        self._manager = manager
        self._query = query
        self._open = True
        chat = not isinstance(query, str)
        payload = {
            EventPayload.MESSAGES if chat else EventPayload.PROMPT: list(query) if chat else [query],
            EventPayload.ADDITIONAL_KWARGS: kwargs,
        }
        self._event_id = manager.on_event_start(CBEventType.LLM, payload=payload)

    @classmethod
    def start(
        cls, own: Optional[CallbackManager], children: Sequence[LLM], query: Union[str, Sequence[Any]], kwargs: Any
    ) -> Optional["LLMCallbacks"]:
        """Open the call's LLM event for ``own``'s handlers that no child has (None when there are none)."""
        if own is None or not own.handlers:
            return None
        theirs = {id(h) for child in children if child.callback_manager for h in child.callback_manager.handlers}
        handlers = [h for h in own.handlers if id(h) not in theirs]
        return cls(CallbackManager(handlers), query, kwargs) if handlers else None

    def end(self, response: Any) -> None:
        """Close the event with the answer (a stream's last chunk); only the first close counts."""
        if self._open:
            self._open = False
            if isinstance(self._query, str):
                payload = {EventPayload.PROMPT: self._query, EventPayload.COMPLETION: response}
            else:
                payload = {EventPayload.MESSAGES: list(self._query), EventPayload.RESPONSE: response}
            self._manager.on_event_end(CBEventType.LLM, payload=payload, event_id=self._event_id)

    def fail(self, exc: BaseException) -> None:
        """Close the event with the exception that ended the call."""
        if self._open:
            self._open = False
            self._manager.on_event_end(CBEventType.LLM, payload={EventPayload.EXCEPTION: exc}, event_id=self._event_id)

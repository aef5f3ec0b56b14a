"""Keep one model for every call of one run (an agent run, a workflow run, a conversation turn).

An agent makes several LLM calls per user request: tool calls, tool results, the final answer. Routing each call
on its own can switch models mid-run, and one provider's tool-call messages may then reach the other. The
wrappers key a :class:`RoutePins` by the framework's run id: the first answered call of a run pins the model
that answered, and later calls of that run reuse it (with fallback still on if that model fails).

A pin keeps the strategy of the decision that made it: a run pinned to the small model with ``strategy="cascade"``
still has every later call (its final answer too) checked by the verifier, and a call the cascade escalates re-pins
the run to the large model, so the rest of the run goes there.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Hashable, Iterable

from .answered import Answered
from .decision import RouteDecision

PINNED_PREFIX = "pinned:"


class RoutePins:
    """Run key -> pinned :class:`RouteDecision`; keeps the ``max_runs`` most recently used runs (thread-safe)."""

    def __init__(self, max_runs: int = 1024, *, prefix: str = PINNED_PREFIX):
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs!r}")
        self.max_runs = max_runs
        self.prefix = prefix
        self._pins: OrderedDict[Hashable, RouteDecision] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable | None) -> RouteDecision | None:
        """The pinned decision of run ``key`` (None when the run has none or ``key`` is None)."""
        if key is None:
            return None
        with self._lock:
            decision = self._pins.get(key)
            if decision is not None:
                self._pins.move_to_end(key)
            return decision

    def pin(self, key: Hashable | None, answered: Answered) -> RouteDecision | None:
        """Pin run ``key`` to the model that answered; returns the run's pin (None when ``key`` is None).

        The first answered call of a run pins it; later calls leave the pin as it is, except an escalation: a call
        whose small answer the cascade rejected (so the large model answered) re-pins the run to the large model.

        The pinned decision targets the model that answered (the fallback, when there was one; in observe mode the
        model the router chose, since the large one answers every call), keeps the decision's score, threshold,
        ``strategy`` and ``verify_threshold`` (so a run pinned to small in a cascade is still verified), and its
        ``threshold_source`` gets a ``"pinned:"`` prefix.
        """
        if key is None:
            return None
        pinned = self._pinned(answered)
        with self._lock:
            current = self._pins.get(key)
            if current is None or (answered.escalated and pinned.target == "large" and current.target != "large"):
                self._pins[key] = current = pinned
            self._pins.move_to_end(key)
            while len(self._pins) > self.max_runs:
                self._pins.popitem(last=False)
            return current

    def _pinned(self, answered: Answered) -> RouteDecision:
        """The decision later calls of the run take: ``answered``'s decision, aimed at the model that answered."""
        first = answered.decision
        source = first.threshold_source
        return replace(
            first,
            target=first.target if answered.mode == "observe" else answered.answered_by,
            threshold_source=source if source.startswith(self.prefix) else self.prefix + source,
        )

    def __len__(self) -> int:
        return len(self._pins)


#: ``threshold_source`` prefix of a session kept on the large model by :class:`StickySessions`.
STICKY_PREFIX = "sticky:"


class StickySessions:
    """Escalate-only stickiness: once a turn of a session was answered by the large model, later turns of that
    session go large too (``threshold_source`` ``"sticky:..."``). Keeps the ``max_sessions`` most recent sessions.

    A conversation whose question was hard enough for the large model is likely to stay hard (follow-ups build on
    the large model's answer), and switching a conversation back to the small model mid-way changes its voice.
    """

    def __init__(self, max_sessions: int = 4096):
        self._large = RoutePins(max_sessions, prefix=STICKY_PREFIX)

    def get(self, session: Hashable | None) -> RouteDecision | None:
        """The large-model decision of a session that already went large (None otherwise)."""
        return self._large.get(session)

    def record(self, session: Hashable | None, answered: Answered) -> None:
        """Remember a session once the large model answered one of its turns (observe mode does not count)."""
        if session is not None and answered.answered_by == "large" and answered.mode != "observe":
            self._large.pin(session, answered)


class LargeAnswers:
    """Escalate-only stickiness keyed by the conversation itself: remembers (digests of) the large model's answers,
    so a later call whose history holds one of them goes large too (``threshold_source`` ``"sticky:..."``).

    For frameworks whose calls carry no session id but whose memory replays the conversation (a LlamaIndex chat
    engine's memory, an agent's chat history, a client of ``hybrid-llm serve``): the session is whatever holds that
    answer. Keeps the ``max_answers`` most recent answers; only digests are stored, never the text.
    """

    def __init__(self, max_answers: int = 4096):
        self._large = RoutePins(max_answers, prefix=STICKY_PREFIX)

    @staticmethod
    def _key(text: str) -> str | None:
        text = text.strip()
        return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None

    def record(self, answer_text: str | None, answered: Answered) -> None:
        """Remember an answer of the large model (observe mode and empty answers do not count)."""
        if answer_text and answered.answered_by == "large" and answered.mode != "observe":
            self._large.pin(self._key(answer_text), answered)

    def find(self, assistant_texts: Iterable[str]) -> RouteDecision | None:
        """The large-model decision of the latest earlier answer found among ``assistant_texts`` (None if none)."""
        for text in reversed(list(assistant_texts)):
            decision = self._large.get(self._key(text)) if text else None
            if decision is not None:
                return decision
        return None

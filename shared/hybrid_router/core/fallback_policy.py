"""Which errors fall back to the other model, and when a failing model is skipped for a while (cooldown).

Modelled on LiteLLM's router: an upstream that is down, slow, overloaded or answers garbage is worth a fallback
(timeouts, connection errors, HTTP 5xx, 408 and 429, malformed answers); a request the upstream rejects (other
4xx) or a bug in the calling code (``TypeError`` from a bad keyword, ...) is not: the other model would fail the
same way, and falling back would hide the bug. Errors are matched by type or by ``"package.Name"`` (looked up in
``sys.modules`` only, so this module imports no client library), and by an HTTP status in a ``status_code`` or
``status`` attribute (openai's ``APIStatusError``, httpx's ``HTTPStatusError`` via its response, the server's
``BackendError``).

After ``cooldown_after`` consecutive fallback-worthy failures a model is skipped for ``cooldown_s`` seconds
(:class:`Cooldowns`), as LiteLLM's cooldowns do, instead of paying its timeout on every call.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Literal, Union

ErrorClass = Union[type, str]
"""An exception type, or its ``"package.Name"`` (matched only once that package is imported)."""

Verdict = Literal["fallback", "raise"]

#: Errors that mean "this model is unavailable or answered garbage": the other model is asked.
DEFAULT_FALLBACK_ON: tuple[ErrorClass, ...] = (
    TimeoutError,  # ModelTimeoutError, asyncio.TimeoutError, socket timeouts
    ConnectionError,
    OSError,
    "httpx.TransportError",  # connect/read/write errors and timeouts
    "httpcore.TimeoutException",
    "httpcore.NetworkError",
    "openai.APIConnectionError",  # APITimeoutError too
    "openai.APIResponseValidationError",  # a 2xx body that does not parse
    "json.JSONDecodeError",
    "pydantic_core.ValidationError",  # a malformed answer rejected by a response model
)
#: Errors that mean "the call itself is wrong": raised at once, naming the route.
DEFAULT_RAISE_ON: tuple[ErrorClass, ...] = (
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
    ImportError,
    RecursionError,
)
#: HTTP statuses worth a fallback besides 5xx: request timeout and rate limit.
DEFAULT_FALLBACK_STATUSES: frozenset[int] = frozenset({408, 429})


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an error carries (``status_code``/``status``, or its ``response``'s), else None."""
    for holder in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status"):
            value = getattr(holder, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _resolve(classes: tuple[ErrorClass, ...]) -> tuple[type, ...]:
    """The types among ``classes`` that exist now (a named one only once its package is imported)."""
    found = []
    for cls in classes:
        if isinstance(cls, type):
            found.append(cls)
            continue
        module, _, name = cls.rpartition(".")
        resolved = getattr(sys.modules.get(module), name, None)
        if isinstance(resolved, type):
            found.append(resolved)
    return tuple(found)


@dataclass(frozen=True)
class FallbackPolicy:
    """Which errors of the chosen model let the other model answer (see the module docstring).

    Order: an HTTP status decides first (5xx and ``fallback_statuses`` fall back, any other 4xx raises), then
    ``raise_on``, then ``fallback_on``; any other error falls back when ``fallback_unknown`` (the default, as
    LiteLLM does) and is raised otherwise. Entries are types or ``"package.Name"`` strings.
    """

    fallback_on: tuple[ErrorClass, ...] = DEFAULT_FALLBACK_ON
    raise_on: tuple[ErrorClass, ...] = DEFAULT_RAISE_ON
    fallback_statuses: frozenset[int] = DEFAULT_FALLBACK_STATUSES
    fallback_unknown: bool = True

    def classify(self, exc: BaseException) -> Verdict:
        """``"fallback"`` if the other model should answer after ``exc``, ``"raise"`` if ``exc`` must surface."""
        status = http_status(exc)
        if status is not None and status >= 400:
            return "fallback" if status >= 500 or status in self.fallback_statuses else "raise"
        if isinstance(exc, _resolve(self.raise_on)):
            return "raise"
        if isinstance(exc, _resolve(self.fallback_on)):
            return "fallback"
        return "fallback" if self.fallback_unknown else "raise"


class Cooldowns:
    """Consecutive failures per model; a model with ``after`` of them in a row is skipped for ``seconds``.

    A success resets the count. When the period ends the model is tried again; one more failure starts a new
    period at once (the count still stands), a success ends it. Thread-safe; one per runner, shared by its calls.
    """

    def __init__(self, after: int, seconds: float):
        if isinstance(after, bool) or not isinstance(after, int) or after < 1:
            raise ValueError(f"cooldown_after must be a positive integer or None, got {after!r}")
        if not seconds > 0:
            raise ValueError(f"cooldown_s must be a positive number of seconds, got {seconds!r}")
        self.after = after
        self.seconds = seconds
        self._failures: dict[str, int] = {}
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def cooling(self, route: str) -> bool:
        """Whether ``route`` is being skipped now."""
        with self._lock:
            return self._until.get(route, 0.0) > time.monotonic()

    def failed(self, route: str) -> None:
        """Count a fallback-worthy failure of ``route``; start its cooldown at ``after`` in a row."""
        with self._lock:
            self._failures[route] = self._failures.get(route, 0) + 1
            if self._failures[route] >= self.after:
                self._until[route] = time.monotonic() + self.seconds

    def succeeded(self, route: str) -> None:
        """``route`` answered: its count and cooldown are cleared."""
        with self._lock:
            self._failures.pop(route, None)
            self._until.pop(route, None)

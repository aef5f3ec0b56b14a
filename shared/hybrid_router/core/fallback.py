"""Run the chosen model, and fall back to the other one if it fails or times out before producing output.

Shared by both framework wrappers and the server. ``call(target)`` runs the model named ``"small"`` or
``"large"``. Which errors fall back is a :class:`~hybrid_router.core.fallback_policy.FallbackPolicy` (timeouts,
connection errors, 5xx, 429, malformed answers: yes; programming errors and other 4xx: raised, naming the route).
Every fallback is logged as a warning (route, error type, redacted message). For streams, only failures before the
first *output* (a chunk the ``is_output`` predicate accepts, e.g. not an empty role chunk) fall back; an error
after output is raised (never hidden). Every stream the runner opens is closed: at its end, on error, on time-out
and when the consumer stops early. The :class:`Answered` record says who answered and why.

Time limits: ``timeout`` bounds the time to the first output (a non-streaming call: to its answer), and
``idle_timeout`` the wait between later chunks. A timed-out async call is cancelled; a timed-out sync stream is
closed as soon as its worker thread gets control back. A sync, non-streaming call cannot be interrupted in Python:
it is abandoned and ends when the model returns (bound it with the client's own timeout).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import logging
import queue
import threading
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Iterable, Iterator, TypeVar

from .answered import COOLDOWN_REASON, Answered
from .decision import RouteDecision
from .fallback_policy import Cooldowns, FallbackPolicy
from .redact import redact

__all__ = ["AllModelsFailedError", "FallbackPolicy", "FallbackRunner", "ModelTimeoutError", "COOLDOWN_REASON"]

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: ``fallback_reason`` when the chosen model was skipped because it is cooling down.


class ModelTimeoutError(TimeoutError):
    """A model produced no output within the configured timeout."""


class AllModelsFailedError(RuntimeError):
    """Both the chosen model and the fallback failed; ``errors`` maps route -> exception."""

    def __init__(self, errors: dict[str, BaseException]):
        self.errors = errors
        detail = "; ".join(f"{route}: {describe(e)}" for route, e in errors.items())
        super().__init__(f"both models failed ({detail})")


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` with secrets redacted: the form every stored, logged or returned error takes."""
    return redact(f"{type(exc).__name__}: {exc}")


def _reason(target: str, exc: BaseException) -> str:
    if isinstance(exc, ModelTimeoutError):
        return f"{target} model timed out: {redact(exc)}"
    return f"{target} model failed: {describe(exc)}"


def _call_in_thread(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn`` in a daemon thread (with this context); ModelTimeoutError if it has not returned in time."""
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def runner() -> None:
        try:
            box["value"] = ctx.run(fn)
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=runner, daemon=True, name="hybrid-llm-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise ModelTimeoutError(f"no output after {timeout:g}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _close_chain(iterator: Any, depth: int = 0) -> None:
    """Close a generator and the generators it is suspended in, innermost first.

    A child's generator often iterates a client stream without a ``with`` block (llama-index's OpenAI streams
    iterate ``openai.Stream``, which sits in a reference cycle): closing only the outer generator leaves the HTTP
    response to the cycle collector, whose finalizer may then run inside the HTTP client's pool lock and deadlock
    it. Closing the innermost generator first runs the client's own ``finally: response.close()`` now.
    """
    for inner in _suspended_in(iterator, depth, inspect.isgenerator):
        _close_chain(inner, depth + 1)
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _suspended_in(iterator: Any, depth: int, kind: Callable[[Any], bool]) -> list[Any]:
    """The generators of ``kind`` a suspended generator holds (its locals and the loops it is in)."""
    if depth >= 16 or getattr(iterator, "gi_frame", getattr(iterator, "ag_frame", None)) is None:
        return []
    return [inner for inner in gc.get_referents(iterator) if kind(inner) and inner is not iterator]


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


class _Source(Generic[T]):
    """A stream pulled in the caller's thread: no time limit; ``close`` closes it."""

    def __init__(self, start: Callable[[], Iterable[T]]):
        self._iterator: Iterator[T] | None = None
        self._start = start

    def next(self, timeout: float | None) -> T:
        """The next item (StopIteration at the end); ``timeout`` is ignored here."""
        if self._iterator is None:
            self._iterator = iter(self._start())
        return next(self._iterator)

    def close(self) -> None:
        """Close the underlying stream (its HTTP response, its generator)."""
        _close_chain(self._iterator)


_NEXT, _STOP = "next", "stop"


class _ThreadedSource(_Source[T]):
    """A stream pulled one item at a time by a worker thread, so each wait can time out.

    The worker opens the stream (``start()`` itself may block: a child that is slow to return its generator) and
    pulls only on request, so nothing is read ahead. ``close()`` asks the worker to close the stream as soon as the
    item in flight (if any) arrives: a timed-out stream is closed, never left to the garbage collector (whose
    finalizer could run inside the HTTP client's pool lock and deadlock it).
    """

    def __init__(self, start: Callable[[], Iterable[T]]):
        super().__init__(start)
        self._requests: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._pending = False
        self._done = False
        ctx = contextvars.copy_context()
        threading.Thread(target=ctx.run, args=(self._work,), daemon=True, name="hybrid-llm-stream").start()

    def _work(self) -> None:
        try:
            while self._requests.get() == _NEXT:
                try:
                    self._results.put((True, super().next(None)))
                except BaseException as exc:  # StopIteration included: handed to the caller
                    self._results.put((False, exc))
                    return
        finally:
            try:
                super().close()
            except Exception as exc:  # the stream failed or was abandoned; closing is best effort
                logger.debug("closing an abandoned stream failed: %s", describe(exc))

    def next(self, timeout: float | None) -> T:
        """The next item; ModelTimeoutError if none arrives within ``timeout`` seconds (None: no limit)."""
        if self._done:
            raise StopIteration
        if not self._pending:
            self._requests.put(_NEXT)
            self._pending = True
        try:
            ok, value = self._results.get(timeout=timeout)
        except queue.Empty:
            raise ModelTimeoutError(f"no output after {timeout:g}s") from None
        self._pending = False
        if not ok:
            self._done = True
            raise value
        return value

    def close(self) -> None:
        """Let the worker close the stream (after the item in flight, if any) and end."""
        self._requests.put(_STOP)


async def _anext(iterator: AsyncIterator[T], timeout: float | None) -> T:
    """The next item; ModelTimeoutError (the pending read is cancelled) if none arrives within ``timeout``."""
    if timeout is None:
        return await iterator.__anext__()
    try:
        return await asyncio.wait_for(iterator.__anext__(), timeout)
    except asyncio.TimeoutError as exc:
        raise ModelTimeoutError(f"no output after {timeout:g}s") from exc


async def _aclose_chain(iterator: Any, depth: int = 0) -> None:
    """Async :func:`_close_chain`: the async generators a stream is suspended in are closed innermost first."""
    for inner in _suspended_in(iterator, depth, inspect.isasyncgen):
        await _aclose_chain(inner, depth + 1)
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _aclose(iterator: Any) -> None:
    try:
        await _aclose_chain(iterator)
    except Exception as exc:  # a failed stream may not close cleanly; its error is already handled
        logger.debug("closing an async stream failed: %s", describe(exc))


def _any_chunk(chunk: Any) -> bool:
    return True


class RunnerCache:
    """One :class:`FallbackRunner` per settings, kept while the settings stay the same, so its cooldowns see every
    call; a wrapper whose fields change (assignment, ``model_copy``) gets a runner for the new settings."""

    def __init__(self) -> None:
        self._settings: tuple | None = None
        self._runner: FallbackRunner | None = None

    def get(self, **settings: Any) -> "FallbackRunner":
        """The runner for these :class:`FallbackRunner` keyword arguments."""
        key = tuple(sorted(settings.items(), key=lambda item: item[0]))
        if self._runner is None or self._settings != key:
            self._runner, self._settings = FallbackRunner(**settings), key
        return self._runner


class FallbackRunner:
    """Runs a decision with fallback, a fallback policy and cooldowns.

    ``timeout`` (seconds, None = no limit) bounds the time to the first output, ``idle_timeout`` the gap between
    later stream chunks (exceeding it raises :class:`ModelTimeoutError`: output was already sent). ``policy``
    decides which errors fall back (default :class:`FallbackPolicy`). With ``cooldown_after=N``, a model that failed
    N times in a row is skipped for ``cooldown_s`` seconds while the other model answers (``fallback_reason`` is
    ``"cooldown"``); it is still asked if the other fails. ``fallback=False`` turns all of this off: the chosen
    model's error is raised.
    """

    def __init__(
        self,
        *,
        timeout: float | None = None,
        fallback: bool = True,
        model_names: tuple[str | None, str | None] = (None, None),
        idle_timeout: float | None = None,
        policy: FallbackPolicy | None = None,
        cooldown_after: int | None = None,
        cooldown_s: float = 30.0,
    ):
        for name, value in (("timeout", timeout), ("idle_timeout", idle_timeout)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds or None, got {value!r}")
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.fallback = fallback
        self.model_names = model_names
        self.policy = policy or FallbackPolicy()
        self.cooldowns = Cooldowns(cooldown_after, cooldown_s) if cooldown_after is not None else None

    # ------------------------------------------------------------------ policy
    def _order(self, decision: RouteDecision) -> tuple[list[str], bool]:
        """The models to try, in order, and whether the chosen one is skipped first (cooling down)."""
        if not self.fallback:
            return [decision.target], False
        cooling = self.cooldowns is not None and self.cooldowns.cooling(decision.target)
        if cooling and not self.cooldowns.cooling(decision.other):
            return [decision.other, decision.target], True
        return [decision.target, decision.other], False

    def _name(self, target: str) -> str:
        name = self.model_names[0 if target == "small" else 1]
        return f"the {target} model" + (f" ({name})" if name else "")

    def _failed(self, target: str, exc: BaseException, last: bool) -> None:
        """Record a failure of ``target``; raise ``exc`` now unless the policy lets another model answer."""
        if not self.fallback:
            exc.add_note(f"hybrid-llm: raised by {self._name(target)} (fallback is off)")
            raise exc
        if self.policy.classify(exc) == "raise":
            exc.add_note(f"hybrid-llm: raised by {self._name(target)}; the fallback policy does not retry this error")
            raise exc
        if self.cooldowns is not None:
            self.cooldowns.failed(target)
        if not last:
            logger.warning("hybrid-llm fallback: route=%s error=%s", target, describe(exc))

    def _succeeded(self, target: str) -> None:
        if self.cooldowns is not None:
            self.cooldowns.succeeded(target)

    def _answered(
        self, decision: RouteDecision, target: str, errors: dict[str, BaseException], skipped: bool
    ) -> Answered:
        self._succeeded(target)
        if target == decision.target:
            reason = None
        elif skipped:
            reason = COOLDOWN_REASON
            logger.warning("hybrid-llm fallback: route=%s error=cooldown", decision.target)
        else:
            reason = _reason(decision.target, errors[decision.target])
        return Answered(decision, target, reason, self.model_names)

    @staticmethod
    def _give_up(errors: dict[str, BaseException]) -> None:
        if len(errors) == 1:
            raise next(iter(errors.values()))
        raise AllModelsFailedError(errors) from list(errors.values())[-1]

    # ------------------------------------------------------------------ one answer
    def run(self, decision: RouteDecision, call: Callable[[str], T]) -> tuple[T, Answered]:
        """``call(target)`` on the chosen model, else on the other; returns (result, Answered)."""
        errors: dict[str, BaseException] = {}
        order, skipped = self._order(decision)
        for index, target in enumerate(order):
            try:
                if self.timeout is None:
                    result = call(target)
                else:
                    result = _call_in_thread(lambda target=target: call(target), self.timeout)
            except Exception as exc:
                errors[target] = exc
                self._failed(target, exc, last=index == len(order) - 1)
                continue
            return result, self._answered(decision, target, errors, skipped)
        self._give_up(errors)
        raise AssertionError("unreachable")

    async def arun(self, decision: RouteDecision, call: Callable[[str], Awaitable[T]]) -> tuple[T, Answered]:
        """Async :meth:`run`; a timed-out call is cancelled."""
        errors: dict[str, BaseException] = {}
        order, skipped = self._order(decision)
        for index, target in enumerate(order):
            try:
                if self.timeout is None:
                    result = await call(target)
                else:
                    try:
                        result = await asyncio.wait_for(call(target), self.timeout)
                    except asyncio.TimeoutError as exc:
                        raise ModelTimeoutError(f"no output after {self.timeout:g}s") from exc
            except Exception as exc:
                errors[target] = exc
                self._failed(target, exc, last=index == len(order) - 1)
                continue
            return result, self._answered(decision, target, errors, skipped)
        self._give_up(errors)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ streams
    def _open(self, start: Callable[[], Iterable[T]]) -> _Source[T]:
        timed = self.timeout is not None or self.idle_timeout is not None
        return _ThreadedSource(start) if timed else _Source(start)

    def _head(self, source: _Source[T], is_output: Callable[[T], bool]) -> list[T]:
        """The chunks up to and including the first output (all of them if the stream ends without output)."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        head: list[T] = []
        while True:
            try:
                chunk = source.next(_remaining(deadline))
            except StopIteration:
                return head
            except ModelTimeoutError:
                raise ModelTimeoutError(f"no output after {self.timeout:g}s") from None
            head.append(chunk)
            if is_output(chunk):
                return head

    def _rest(self, source: _Source[T]) -> Iterator[T]:
        while True:
            try:
                yield source.next(self.idle_timeout)
            except StopIteration:
                return

    def stream(
        self,
        decision: RouteDecision,
        start: Callable[[str], Iterable[T]],
        *,
        is_output: Callable[[T], bool] | None = None,
    ) -> Iterator[tuple[T, Answered]]:
        """Stream from the chosen model; fall back only if it fails before its first output.

        ``is_output(chunk)`` says whether a chunk is output (default: every chunk is); chunks before the first
        output are held back until it arrives, so a failure after an empty role chunk still falls back.
        """
        errors: dict[str, BaseException] = {}
        order, skipped = self._order(decision)
        for index, target in enumerate(order):
            source = self._open(lambda target=target: start(target))
            try:
                head = self._head(source, is_output or _any_chunk)
            except BaseException as exc:  # closed on any exit; only errors fall back
                source.close()
                if not isinstance(exc, Exception):
                    raise
                errors[target] = exc
                self._failed(target, exc, last=index == len(order) - 1)
                continue
            answered = self._answered(decision, target, errors, skipped)
            try:
                for chunk in head:
                    yield chunk, answered
                for chunk in self._rest(source):
                    yield chunk, answered
            finally:
                source.close()
            return
        self._give_up(errors)

    async def _ahead(self, iterator: AsyncIterator[T], is_output: Callable[[T], bool]) -> list[T]:
        """Async :meth:`_head`."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        head: list[T] = []
        while True:
            try:
                chunk = await _anext(iterator, _remaining(deadline))
            except StopAsyncIteration:
                return head
            except ModelTimeoutError as exc:
                raise ModelTimeoutError(f"no output after {self.timeout:g}s") from exc
            head.append(chunk)
            if is_output(chunk):
                return head

    async def astream(
        self,
        decision: RouteDecision,
        start: Callable[[str], AsyncIterator[T]],
        *,
        is_output: Callable[[T], bool] | None = None,
    ) -> AsyncIterator[tuple[T, Answered]]:
        """Async :meth:`stream`; a timed-out read is cancelled and the stream closed."""
        errors: dict[str, BaseException] = {}
        order, skipped = self._order(decision)
        for index, target in enumerate(order):
            iterator = start(target).__aiter__()
            try:
                head = await self._ahead(iterator, is_output or _any_chunk)
            except BaseException as exc:  # closed on any exit; only errors fall back
                await _aclose(iterator)
                if not isinstance(exc, Exception):
                    raise
                errors[target] = exc
                self._failed(target, exc, last=index == len(order) - 1)
                continue
            answered = self._answered(decision, target, errors, skipped)
            try:
                for chunk in head:
                    yield chunk, answered
                while True:
                    try:
                        chunk = await _anext(iterator, self.idle_timeout)
                    except StopAsyncIteration:
                        break
                    yield chunk, answered
            finally:
                await _aclose(iterator)
            return
        self._give_up(errors)

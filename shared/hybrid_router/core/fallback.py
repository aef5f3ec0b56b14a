"""Run the chosen model, and fall back to the other one if it raises or times out before producing output.

Shared by both framework wrappers. ``call(target)`` runs the model named ``"small"`` or ``"large"``. For streams,
only failures before the first chunk fall back; an error after chunks were yielded is raised (never hidden).
The :class:`Answered` record says who answered and why, and :meth:`Answered.metadata` is the dict the wrappers
attach to every response (``response_metadata["hybrid_router"]`` / ``additional_kwargs["hybrid_router"]``).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from .answered import Answered
from .decision import RouteDecision

T = TypeVar("T")


class ModelTimeoutError(TimeoutError):
    """A model produced no output within the configured timeout."""


class AllModelsFailedError(RuntimeError):
    """Both the chosen model and the fallback failed; ``errors`` maps route -> exception."""

    def __init__(self, errors: dict[str, BaseException]):
        self.errors = errors
        detail = "; ".join(f"{route}: {type(e).__name__}: {e}" for route, e in errors.items())
        super().__init__(f"both models failed ({detail})")


def _reason(target: str, exc: BaseException) -> str:
    if isinstance(exc, ModelTimeoutError):
        return f"{target} model timed out: {exc}"
    return f"{target} model failed: {type(exc).__name__}: {exc}"


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


class FallbackRunner:
    """Runs a decision with fallback; ``timeout`` (seconds, None = no limit) bounds the time to first output."""

    def __init__(
        self,
        *,
        timeout: float | None = None,
        fallback: bool = True,
        model_names: tuple[str | None, str | None] = (None, None),
    ):
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.timeout = timeout
        self.fallback = fallback
        self.model_names = model_names

    def _order(self, decision: RouteDecision) -> list[str]:
        return [decision.target, decision.other] if self.fallback else [decision.target]

    def _answered(self, decision: RouteDecision, target: str, errors: dict[str, BaseException]) -> Answered:
        reason = _reason(decision.target, errors[decision.target]) if errors else None
        return Answered(decision, target, reason, self.model_names)

    @staticmethod
    def _give_up(errors: dict[str, BaseException]) -> None:
        if len(errors) == 1:
            raise next(iter(errors.values()))
        raise AllModelsFailedError(errors) from list(errors.values())[-1]

    def run(self, decision: RouteDecision, call: Callable[[str], T]) -> tuple[T, Answered]:
        """``call(target)`` on the chosen model, else on the other; returns (result, Answered)."""
        errors: dict[str, BaseException] = {}
        for target in self._order(decision):
            try:
                if self.timeout is None:
                    result = call(target)
                else:
                    result = _call_in_thread(lambda target=target: call(target), self.timeout)
                return result, self._answered(decision, target, errors)
            except Exception as exc:
                errors[target] = exc
        self._give_up(errors)
        raise AssertionError("unreachable")

    async def arun(self, decision: RouteDecision, call: Callable[[str], Awaitable[T]]) -> tuple[T, Answered]:
        """Async :meth:`run`."""
        errors: dict[str, BaseException] = {}
        for target in self._order(decision):
            try:
                if self.timeout is None:
                    result = await call(target)
                else:
                    try:
                        result = await asyncio.wait_for(call(target), self.timeout)
                    except asyncio.TimeoutError as exc:
                        raise ModelTimeoutError(f"no output after {self.timeout:g}s") from exc
                return result, self._answered(decision, target, errors)
            except Exception as exc:
                errors[target] = exc
        self._give_up(errors)
        raise AssertionError("unreachable")

    def stream(self, decision: RouteDecision, start: Callable[[str], Iterator[T]]) -> Iterator[tuple[T, Answered]]:
        """Stream from the chosen model; fall back only if it fails before its first chunk."""
        errors: dict[str, BaseException] = {}
        for target in self._order(decision):
            iterator = None
            try:
                iterator = iter(start(target))
                if self.timeout is None:
                    first = next(iterator)
                else:
                    first = _call_in_thread(lambda it=iterator: next(it), self.timeout)
            except StopIteration:
                return
            except Exception as exc:
                errors[target] = exc
                close = getattr(iterator, "close", None)
                if close is not None and not isinstance(exc, ModelTimeoutError):
                    close()
                continue
            answered = self._answered(decision, target, errors)
            yield first, answered
            for chunk in iterator:
                yield chunk, answered
            return
        self._give_up(errors)

    async def astream(
        self, decision: RouteDecision, start: Callable[[str], AsyncIterator[T]]
    ) -> AsyncIterator[tuple[T, Answered]]:
        """Async :meth:`stream`."""
        errors: dict[str, BaseException] = {}
        for target in self._order(decision):
            iterator = None
            try:
                iterator = start(target).__aiter__()
                if self.timeout is None:
                    first = await iterator.__anext__()
                else:
                    try:
                        first = await asyncio.wait_for(iterator.__anext__(), self.timeout)
                    except asyncio.TimeoutError as exc:
                        raise ModelTimeoutError(f"no output after {self.timeout:g}s") from exc
            except StopAsyncIteration:
                return
            except Exception as exc:
                errors[target] = exc
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    try:
                        await aclose()
                    except Exception:  # the failed stream may not close cleanly; its error is already recorded
                        pass
                continue
            answered = self._answered(decision, target, errors)
            yield first, answered
            async for chunk in iterator:
                yield chunk, answered
            return
        self._give_up(errors)

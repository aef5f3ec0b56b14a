"""Pick up a newly promoted router in a running process without dropping calls.

:func:`promote_router` writes a router folder atomically: the router is saved into a fresh sibling folder, which
then replaces the old folder by two renames, so a reader never sees a half-written folder under the final name.

:class:`RouterRefresher` holds the current :class:`~hybrid_router.core.router.HybridRouter` of a folder and swaps
in a new one when the folder changes (its ``router.json`` / ``head.safetensors`` identity: inode, size, mtime).
A swap is one reference assignment under a lock, made only after the new router has loaded *and* scored a
warm-up query, so:

- a call that took ``refresher.router`` keeps using that router object to its end (decide, fallback, logging);
- every call sees either the old or the new router, never a mix or a half-loaded one;
- a folder that is missing or corrupt (a non-atomic save caught mid-write) keeps the current router and is
  retried at the next check; ``last_error`` says why.

Reading ``refresher.router`` never blocks on a load: when ``interval`` seconds have passed since the last check,
the check runs in a background thread (or call :meth:`RouterRefresher.check` yourself, e.g. after a promotion,
or :meth:`RouterRefresher.start` a polling thread).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from .router import CONFIG_FILE, HEAD_FILE, HybridRouter

logger = logging.getLogger(__name__)

Signature = tuple[tuple[int, int, int], ...]


def current_router(router: HybridRouter | Callable[[], HybridRouter]) -> HybridRouter:
    """``router`` itself, or what a provider of routers (a :class:`RouterRefresher`, any callable) returns now.

    A caller takes it once per call and uses that router throughout (decide, verify, log)."""
    return router if isinstance(router, HybridRouter) else router()


def folder_signature(folder: str | Path) -> Signature | None:
    """The identity of a router folder's files (inode, size, mtime in ns), or None when a file is missing."""
    out = []
    for name in (CONFIG_FILE, HEAD_FILE):
        try:
            st = os.stat(Path(folder) / name)
        except OSError:
            return None
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def promote_router(router: HybridRouter, folder: str | Path) -> Path:
    """Save ``router`` to ``folder`` atomically (replacing a router already there); returns the folder.

    The router is saved to a sibling folder first; the old folder (if any) is renamed away and the new one renamed
    into place, then the old one is deleted. Between the two renames the folder is briefly missing, which a
    :class:`RouterRefresher` treats as "no change yet".
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    fresh = folder.parent / f".{folder.name}.new-{tag}"
    router.save(fresh)
    old = None
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{tag}"
        os.rename(folder, old)
    try:
        os.rename(fresh, folder)
    except OSError:
        if old is not None:
            os.rename(old, folder)  # put the previous router back
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return folder


class RouterRefresher:
    """The current router of ``folder``, swapped atomically when a new one is promoted there.

    ``loader(folder)`` loads a router (default :meth:`HybridRouter.load`); ``interval`` is the least time between
    two checks triggered by reading :attr:`router`; ``on_swap(old, new)`` is called after each swap. The folder
    must hold a router when the refresher is made (its load errors are raised there, once).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        interval: float = 5.0,
        loader: Callable[[Path], HybridRouter] | None = None,
        on_swap: Callable[[HybridRouter, HybridRouter], None] | None = None,
        warm_up: str | None = "warm up",
    ):
        if not interval >= 0:
            raise ValueError(f"interval must be a non-negative number of seconds, got {interval!r}")
        self.folder = Path(folder)
        self.interval = float(interval)
        self._loader = loader or HybridRouter.load
        self._on_swap = on_swap
        self._warm_up = warm_up
        self._swap_lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._last_check = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.version = 0
        self.last_error: str | None = None
        signature = folder_signature(self.folder)
        self._router = self._load()
        self._signature = signature

    def _load(self) -> HybridRouter:
        router = self._loader(self.folder)
        if self._warm_up is not None:
            router.score_texts([self._warm_up])  # load the encoder before any call sees this router
        return router

    # ------------------------------------------------------------ reading
    @property
    def router(self) -> HybridRouter:
        """The current router (never blocks; may start a background check when ``interval`` has passed)."""
        if self.interval and time.monotonic() - self._last_check >= self.interval and not self._check_lock.locked():
            threading.Thread(target=self._check_quietly, name="hybrid-llm-refresh", daemon=True).start()
        return self._router

    def __call__(self) -> HybridRouter:
        """The current router: a refresher is a router provider (``provider()`` -> router)."""
        return self.router

    # ------------------------------------------------------------ checking
    def check(self) -> bool:
        """Reload the router if its folder changed; True when a new router was swapped in.

        Runs at most one check at a time (a concurrent call waits for it and then returns False). A missing or
        unreadable folder keeps the current router (``last_error`` says why).
        """
        with self._check_lock:
            self._last_check = time.monotonic()
            signature = folder_signature(self.folder)
            if signature is None or signature == self._signature:
                return False
            try:
                new = self._load()
            except Exception as exc:  # a half-written or corrupt folder: keep serving the current router
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("router refresh: %s not loaded, keeping the current router (%s)", self.folder, exc)
                return False
            if folder_signature(self.folder) != signature:  # changed while loading: load again next time
                return False
            with self._swap_lock:
                old, self._router = self._router, new
                self._signature = signature
                self.version += 1
                self.last_error = None
            logger.info("router refresh: loaded a new router from %s (version %d)", self.folder, self.version)
            if self._on_swap is not None:
                self._on_swap(old, new)
            return True

    def _check_quietly(self) -> None:
        try:
            self.check()
        except Exception as exc:  # pragma: no cover - check() already catches load errors
            logger.warning("router refresh failed: %s", exc)

    def start(self, interval: float | None = None) -> "RouterRefresher":
        """Poll the folder every ``interval`` seconds (default: the refresher's) in a daemon thread."""
        if self._thread is not None:
            return self
        period = self.interval if interval is None else float(interval)
        if not period > 0:
            raise ValueError(f"interval must be positive to poll, got {period!r}")

        def poll() -> None:
            while not self._stop.wait(period):
                self._check_quietly()

        self._thread = threading.Thread(target=poll, name="hybrid-llm-refresh-poll", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the polling thread (if started)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "RouterRefresher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

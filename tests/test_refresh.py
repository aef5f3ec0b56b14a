"""RouterRefresher: a promoted router is swapped in atomically while real routers serve concurrent calls."""

from __future__ import annotations

import threading
import time

import pytest

from hybrid_router.core.options import RoutingOptions
from hybrid_router.core.refresh import RouterRefresher, folder_signature, promote_router
from hybrid_router.core.router import HybridRouter

QUERIES = [
    "What is 2 + 2?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many?",
    "Prove that there are infinitely many primes.",
    "Translate 'good morning' into Spanish.",
]


def _variant(router: HybridRouter, threshold: float) -> HybridRouter:
    """The same trained router with another default threshold (a distinguishable 'new version')."""
    router.default_threshold = threshold
    return router


def test_promotion_is_swapped_in_atomically_under_concurrent_calls(tmp_path, cascade_router):
    source = cascade_router.save(tmp_path / "source")
    folder = tmp_path / "live"
    thresholds = [0.11, 0.22, 0.33, 0.44, 0.55, 0.66]
    promote_router(_variant(HybridRouter.load(source), thresholds[0]), folder)
    shared_encoder = cascade_router.encoder  # the loader shares one loaded encoder across versions
    refresher = RouterRefresher(folder, interval=0, loader=lambda f: HybridRouter.load(f, encoder=shared_encoder))
    assert refresher.router.default_threshold == thresholds[0] and refresher.version == 0
    seen: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    calls = [0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            router = refresher()  # one router object for the whole call
            try:
                d = router.decide(QUERIES[(n + i) % len(QUERIES)], RoutingOptions(), "test")
                # the decision is consistent with the router that made it: never a mix of two versions
                assert d.threshold == router.default_threshold
                assert d.target == ("small" if d.score >= d.threshold else "large")
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised by the test
                errors.append(exc)
                return
            with lock:
                seen.append(d.threshold)
                calls[0] += 1
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    try:
        for version, threshold in enumerate(thresholds[1:], start=1):
            before = calls[0]
            promote_router(_variant(HybridRouter.load(source), threshold), folder)
            assert refresher.check()
            assert refresher.version == version and refresher.router.default_threshold == threshold
            deadline = time.monotonic() + 30
            while calls[0] < before + 20 and time.monotonic() < deadline:  # calls keep flowing across swaps
                time.sleep(0.01)
            assert calls[0] >= before + 20
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert set(seen) <= set(thresholds) and len(set(seen)) >= 4
    assert not refresher.check()  # nothing changed since


def test_a_corrupt_folder_keeps_the_current_router_until_a_good_one_arrives(tmp_path, cascade_router):
    folder = promote_router(_variant(HybridRouter.load(cascade_router.save(tmp_path / "src")), 0.42), tmp_path / "r")
    refresher = RouterRefresher(folder, interval=0)
    old = refresher.router
    (folder / "router.json").write_text("{ half written")
    assert not refresher.check()
    assert refresher.router is old and "RouterFileError" in refresher.last_error
    old.default_threshold = 0.42
    promote_router(_variant(HybridRouter.load(tmp_path / "src"), 0.24), folder)
    assert refresher.check() and refresher.router.default_threshold == 0.24 and refresher.last_error is None
    assert refresher.router.score("What is 2 + 2?") == pytest.approx(old.score("What is 2 + 2?"))
    assert not list(tmp_path.glob(".r.*"))  # promotion leaves no temporary folders behind


def test_reading_the_router_checks_in_the_background_and_polling_works(tmp_path, cascade_router):
    src = cascade_router.save(tmp_path / "src")
    folder = promote_router(_variant(HybridRouter.load(src), 0.3), tmp_path / "r")
    swaps = []
    refresher = RouterRefresher(folder, interval=0.05, on_swap=lambda old, new: swaps.append(new.default_threshold))
    promote_router(_variant(HybridRouter.load(src), 0.6), folder)
    deadline = time.monotonic() + 60
    while refresher.router.default_threshold != 0.6 and time.monotonic() < deadline:
        time.sleep(0.05)  # reading never blocks; the check runs in a background thread
    assert refresher.router.default_threshold == 0.6 and swaps == [0.6]
    with RouterRefresher(folder, interval=3600).start(interval=0.05) as polled:
        promote_router(_variant(HybridRouter.load(src), 0.9), folder)
        deadline = time.monotonic() + 60
        while polled.version == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert polled.version == 1 and polled.router.default_threshold == 0.9
    assert folder_signature(tmp_path / "missing") is None
    with pytest.raises(ValueError):
        RouterRefresher(folder, interval=-1)

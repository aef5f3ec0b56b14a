"""``hybrid-llm serve`` with the cascade strategy: real app on a socket, the shipped small model or stub upstreams."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from hybrid_router.serve.app import RouterService, create_app
from hybrid_router.serve.backends import LocalBackend, OpenAIBackend

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from serve_stubs import StubUpstream, serving  # noqa: E402

QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples each. How many apples does he have now?"
ACCEPT_ALL = {"max_quality_drop": 1.0}


def ask(base: str, **body) -> httpx.Response:
    payload = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}], **body}
    return httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=120)


def test_the_shipped_small_model_answers_and_is_verified(cascade_router, small_local_chat):
    with StubUpstream() as stub:
        service = RouterService(
            cascade_router, LocalBackend(small_local_chat, max_new_tokens=16), OpenAIBackend(stub.url, "l:ok")
        )
        with serving(create_app(service)) as base:
            response = ask(base, strategy="cascade", **ACCEPT_ALL)
    assert response.status_code == 200, response.text
    meta = response.json()["hybrid_router"]
    assert meta["strategy"] == "cascade" and meta["answered_by"] == "small" and meta["verifier_score"] is not None
    assert response.headers["x-hybrid-strategy"] == "cascade" and response.headers["x-hybrid-escalated"] == "false"
    assert float(response.headers["x-hybrid-verifier-score"]) == pytest.approx(meta["verifier_score"], abs=1e-4)


def test_invalid_json_escalates_and_both_calls_are_recorded(cascade_router):
    with StubUpstream() as stub:
        service = RouterService(cascade_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
        with serving(create_app(service)) as base:
            response = ask(base, strategy="cascade", response_format={"type": "json_object"}, **ACCEPT_ALL)
            sent = [r["body"] for r in stub.requests]
    body = response.json()
    assert response.status_code == 200 and body["model"] == "l:ok"
    meta = body["hybrid_router"]
    assert meta["escalated"] and meta["escalation_reason"] == "the answer is not valid JSON"
    assert meta["small_usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert [b["model"] for b in sent] == ["s:ok", "l:ok"] and all("strategy" not in b for b in sent)


def test_an_escalated_stream_streams_the_large_model(cascade_router):
    with StubUpstream() as stub:
        service = RouterService(cascade_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
        with serving(create_app(service)) as base:
            response = ask(base, strategy="cascade", stream=True, response_format={"type": "json_object"}, **ACCEPT_ALL)
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    assert response.text.rstrip().endswith("data: [DONE]")
    assert {e["model"] for e in events} == {"l:ok"} and events[0]["hybrid_router"]["escalated"]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "stub 0 1"


def test_the_server_default_strategy_and_a_bad_one(cascade_router, default_router):
    with StubUpstream() as stub:
        service = RouterService(
            cascade_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"), strategy="cascade"
        )
        with serving(create_app(service)) as base:
            assert ask(base, **ACCEPT_ALL).json()["hybrid_router"]["strategy"] == "cascade"
            assert ask(base, strategy="route").json()["hybrid_router"]["strategy"] == "route"
            bad = ask(base, strategy="sometimes")
        plain = RouterService(default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
        with serving(create_app(plain)) as base:
            no_verifier = ask(base, strategy="cascade")
    assert bad.status_code == 400 and "strategy must be 'route' or 'cascade'" in bad.json()["error"]["message"]
    assert no_verifier.status_code == 400 and "no answer verifier" in no_verifier.json()["error"]["message"]
    with pytest.raises(ValueError, match="strategy"):
        RouterService(default_router, OpenAIBackend(stub.url, "s"), OpenAIBackend(stub.url, "l"), strategy="x")


def test_a_refreshed_router_is_picked_up_without_dropping_requests(default_router, cascade_router, tmp_path):
    from hybrid_router.core.refresh import RouterRefresher, promote_router

    folder = tmp_path / "live"
    promote_router(default_router, folder)
    with StubUpstream() as stub, RouterRefresher(folder, interval=0) as refresher:
        service = RouterService(refresher, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"))
        with serving(create_app(service)) as base:
            before = ask(base, strategy="cascade")  # the shipped router has no verifier
            promote_router(cascade_router, folder)
            assert refresher.check()
            after = ask(base, strategy="cascade", **ACCEPT_ALL)
    assert before.status_code == 400 and after.status_code == 200
    assert after.json()["hybrid_router"]["strategy"] == "cascade"

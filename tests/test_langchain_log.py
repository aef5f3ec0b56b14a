"""HybridChatModel with a routing log: every path logs once, shadow pairs, no secrets in the log (real models)."""

import time

import pytest
from langchain_openai import ChatOpenAI

from hybrid_router.traffic.routing_log import RoutingLog, read_calls
from langchain_hybrid import HybridChatModel

pytestmark = pytest.mark.real_model
SECRET = "sk-test-SECRET-key-never-logged-123"


@pytest.fixture
def logged_model(tmp_path, small_chat_model, openai_server, large_model_name, default_router):
    large = ChatOpenAI(
        base_url=openai_server,
        api_key=SECRET,
        model=large_model_name,
        max_tokens=4,
        max_retries=0,
        stream_usage=True,
        default_headers={"X-Secret-Header": SECRET},
    )
    log = RoutingLog(tmp_path / "log.db", shadow_rate=1.0, seed=0)
    model = HybridChatModel(small=small_chat_model, large=large, router=default_router, max_tokens=4, routing_log=log)
    yield model, log, tmp_path / "log.db"
    log.close()


async def test_every_path_logs_once_with_shadow_pairs(logged_model):
    model, log, path = logged_model
    model.invoke("Say hi.", quality_threshold=0.0)
    list(model.stream("Say yes.", hybrid_route="large"))
    await model.ainvoke("Say no.", quality_threshold=1.0)
    log.close()
    rows = list(read_calls(path))
    answers = [r for r in rows if r["kind"] == "answer"]
    shadows = [r for r in rows if r["kind"] == "shadow"]
    assert [(r["answered_by"], r["fallback"]) for r in answers] == [("small", 0), ("large", 0), ("large", 0)]
    assert [r["query"] for r in answers] == ["Say hi.", "Say yes.", "Say no."]
    assert all(r["answer"] is not None and r["output_tokens"] for r in answers)
    assert sorted(s["pair_id"] for s in shadows) == sorted(a["call_id"] for a in answers)
    assert {s["answered_by"] for s in shadows} == {"small", "large"}
    assert all(s["error"] is None and s["answer"] is not None for s in shadows)
    assert SECRET.encode() not in path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or SECRET.encode() not in wal.read_bytes()


def test_shadow_answers_do_not_delay_the_user(tmp_path, default_router):
    from lc_fakes import ScriptedChatModel

    small, slow_large = ScriptedChatModel(model_name="s"), ScriptedChatModel(model_name="l", delay=2.0)
    with RoutingLog(tmp_path / "log.db", shadow_rate=1.0) as log:
        model = HybridChatModel(small=small, large=slow_large, router=default_router, routing_log=log)
        start = time.perf_counter()
        model.invoke("Say hi.", hybrid_route="small")
        user_wait = time.perf_counter() - start
    shadow = [r for r in read_calls(tmp_path / "log.db") if r["kind"] == "shadow"]
    assert len(shadow) == 1 and shadow[0]["answered_by"] == "large" and shadow[0]["latency_s"] >= 2.0
    assert user_wait < 1.5

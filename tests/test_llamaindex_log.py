"""HybridLLM with a routing log: chat, stream and completion calls logged once, shadow pairs, no secrets (real)."""

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike

from hybrid_router.traffic.routing_log import RoutingLog, read_calls
from llamaindex_hybrid import HybridLLM

pytestmark = pytest.mark.real_model
SECRET = "sk-test-SECRET-key-never-logged-456"


async def test_calls_are_logged_with_shadow_pairs_and_no_secrets(
    tmp_path, small_llamaindex_llm, openai_server, large_model_name, default_router
):
    large = OpenAILike(
        model=large_model_name,
        api_base=openai_server,
        api_key=SECRET,
        max_tokens=4,
        is_chat_model=True,
        max_retries=0,
        reuse_client=False,
        default_headers={"X-Secret": SECRET},
    )
    path = tmp_path / "log.db"
    log = RoutingLog(path, shadow_rate=1.0)
    llm = HybridLLM(small=small_llamaindex_llm, large=large, router=default_router, routing_log=log)
    llm.chat([ChatMessage(role="user", content="Say hi.")], quality_threshold=0.0)
    list(llm.stream_chat([ChatMessage(role="user", content="Say yes.")], hybrid_route="large"))
    await llm.acomplete("Say no.", hybrid_route="large")
    log.close()
    rows = list(read_calls(path))
    answers = [r for r in rows if r["kind"] == "answer"]
    shadows = [r for r in rows if r["kind"] == "shadow"]
    assert [(r["query"], r["answered_by"], r["fallback"]) for r in answers] == [
        ("Say hi.", "small", 0),
        ("Say yes.", "large", 0),
        ("Say no.", "large", 0),
    ]
    assert all(r["answer"] and r["input_tokens"] and r["output_tokens"] for r in answers)
    assert sorted(s["pair_id"] for s in shadows) == sorted(a["call_id"] for a in answers)
    assert all(s["error"] is None for s in shadows)
    for f in (path, path.with_name(path.name + "-wal")):
        assert not f.exists() or SECRET.encode() not in f.read_bytes()

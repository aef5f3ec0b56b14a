"""Observe mode: the router decides and the decision is recorded, but the large model answers every call."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from langchain_core.messages import AIMessage
from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
from llama_index.core.llms import CustomLLM

from hybrid_router.serve.app import RouterService, create_app
from hybrid_router.serve.backends import OpenAIBackend
from hybrid_router.traffic.routing_log import RoutingLog, read_calls
from langchain_hybrid import HybridChatModel
from llamaindex_hybrid import HybridLLM

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from serve_stubs import StubUpstream, serving  # noqa: E402
from test_langchain_cascade import Canned  # noqa: E402

QUESTION = "What is the capital of France?"


def test_langchain_observe_never_calls_small_on_the_request_path(default_router, tmp_path):
    small = Canned(model_name="small-m", answer=AIMessage(content="Paris"), calls=[], events=[])
    large = Canned(model_name="large-m", answer=AIMessage(content="Paris."), calls=[], events=[])
    model = HybridChatModel(small=small, large=large, router=default_router, mode="observe", quality_threshold=0.0)
    out = model.invoke(QUESTION)
    streamed = "".join(c.content for c in model.stream(QUESTION))
    assert len(small.calls) == 0 and len(large.calls) == 2
    meta = out.response_metadata["hybrid_router"]
    assert out.content == "Paris." and streamed == "Paris."
    assert meta["mode"] == "observe" and meta["route"] == "small" and meta["answered_by"] == "large"
    assert not meta["fallback"]


def test_langchain_observe_logs_the_decision_and_shadow_answers(default_router, tmp_path):
    small = Canned(model_name="small-m", answer=AIMessage(content="Paris"), calls=[], events=[])
    large = Canned(model_name="large-m", answer=AIMessage(content="Paris."), calls=[], events=[])
    with RoutingLog(tmp_path / "log.db", shadow_rate=1.0) as log:
        model = HybridChatModel(
            small=small, large=large, router=default_router, mode="observe", quality_threshold=0.0, routing_log=log
        )
        model.invoke(QUESTION)
        model.invoke(QUESTION)
        log.flush()
    rows = list(read_calls(tmp_path / "log.db"))
    answers = [r for r in rows if r["kind"] == "answer"]
    assert [(r["route"], r["answered_by"]) for r in answers] == [("small", "large")] * 2
    shadows = [r for r in rows if r["kind"] == "shadow"]
    assert [r["answered_by"] for r in shadows] == ["small", "small"] and len(small.calls) == 2


class Fixed(CustomLLM):
    name: str = "fixed"
    text: str = ""
    calls: int = 0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name)

    def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text=self.text)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs):
        self.calls += 1
        return iter([CompletionResponse(text=self.text, delta=self.text)])


def test_llamaindex_observe(default_router):
    small, large = Fixed(name="s", text="Paris"), Fixed(name="l", text="Paris.")
    llm = HybridLLM(small, large, router=default_router, mode="observe", quality_threshold=0.0)
    out = llm.complete(QUESTION)
    chunks = list(llm.stream_complete(QUESTION))
    meta = out.additional_kwargs["hybrid_router"]
    assert out.text == "Paris." and chunks[-1].text == "Paris." and small.calls == 0 and large.calls == 2
    assert meta["mode"] == "observe" and meta["route"] == "small" and meta["answered_by"] == "large"


def test_serve_observe(default_router):
    with StubUpstream() as stub:
        service = RouterService(
            default_router, OpenAIBackend(stub.url, "s:ok"), OpenAIBackend(stub.url, "l:ok"), observe=True
        )
        with serving(create_app(service)) as base:
            payload = {"model": "hybrid:0.0", "messages": [{"role": "user", "content": QUESTION}]}
            response = httpx.post(f"{base}/v1/chat/completions", json=payload, timeout=60)
            sent = [r["body"]["model"] for r in stub.requests]
    assert response.status_code == 200 and response.json()["model"] == "l:ok" and sent == ["l:ok"]
    assert response.headers["x-hybrid-decision"] == "small" and response.headers["x-hybrid-route"] == "large"
    assert response.json()["hybrid_router"]["mode"] == "observe"


def test_an_observed_run_pins_the_model_the_router_chose():
    from hybrid_router import Answered, RouteDecision
    from hybrid_router.core.pinning import RoutePins

    decision = RouteDecision("small", 0.9, 0.5, "default:quality_threshold")
    pins = RoutePins()
    assert pins.pin("run-1", Answered(decision, "large", mode="observe")).target == "small"
    assert pins.pin("run-2", Answered(decision, "large", "small model failed: X")).target == "large"

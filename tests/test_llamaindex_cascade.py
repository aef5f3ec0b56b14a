"""HybridLLM with strategy="cascade", and fields that take effect when assigned."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.llms import CustomLLM
from llama_index.core.tools import FunctionTool

from llamaindex_hybrid import HybridLLM

QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples each. How many apples does he have now?"
RIGHT = "He buys 3 * 4 = 12 apples. Now he has 12 + 12 = 24 apples.\n#### 24"
ACCEPT_ALL = {"max_quality_drop": 1.0}  # the cheapest frontier point: nothing large, every answer accepted


class Canned(CustomLLM):
    """Completes with fixed text (streamed word by word); records how often it was called."""

    name: str = "canned"
    text: str = ""
    calls: int = 0
    events: list = []

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text=self.text)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        self.calls += 1

        def gen():
            text = ""
            for i, word in enumerate(self.text.split(" ")):
                self.events.append(f"{self.name}:{i}")
                delta = word if not text else " " + word
                text += delta
                yield CompletionResponse(text=text, delta=delta)

        return gen()


def pair(small_text: str, router, **fields) -> tuple[HybridLLM, Canned, Canned]:
    events: list = []
    small = Canned(name="small-m", text=small_text, events=events)
    large = Canned(name="large-m", text="The answer is 24.", events=events)
    return HybridLLM(small, large, router=router, strategy="cascade", **fields), small, large


def meta(response: Any) -> dict:
    return response.additional_kwargs["hybrid_router"]


def test_accepted_and_escalated_answers(cascade_router):
    llm, small, large = pair(RIGHT, cascade_router, **ACCEPT_ALL)
    out = llm.complete(QUESTION)
    assert out.text == RIGHT and large.calls == 0 and meta(out)["verifier_score"] is not None
    out = llm.complete(QUESTION, response_format={"type": "json_object"})  # not JSON: escalated
    assert out.text == "The answer is 24." and meta(out)["escalated"] and large.calls == 1


def test_chat_and_async(cascade_router):
    llm, small, large = pair('{"answer": 24', cascade_router, **ACCEPT_ALL)
    messages = [ChatMessage(role="user", content=QUESTION)]
    out = llm.chat(messages, response_format={"type": "json_object"})
    assert (
        out.message.content == "The answer is 24." and meta(out)["escalation_reason"] == "the answer is not valid JSON"
    )
    out = asyncio.run(llm.acomplete(QUESTION))
    assert meta(out)["strategy"] == "cascade" and not meta(out)["escalated"]


def test_a_stream_is_buffered_until_verified(cascade_router):
    llm, small, large = pair(RIGHT, cascade_router, **ACCEPT_ALL)
    for _chunk in llm.stream_complete(QUESTION):
        small.events.append("out")
    n = len(RIGHT.split(" "))
    assert small.events[:n] == [f"small-m:{i}" for i in range(n)] and set(small.events[n:]) == {"out"}


def test_strategy_from_a_routing_block(cascade_router):
    from hybrid_router import routing

    llm, small, large = pair("not json", cascade_router, **ACCEPT_ALL)
    llm.strategy = "route"
    assert meta(llm.complete(QUESTION))["strategy"] == "route"
    with routing(strategy="cascade", max_quality_drop=1.0):
        out = llm.complete(QUESTION, response_format={"type": "json_object"})
    assert meta(out)["strategy"] == "cascade" and meta(out)["escalated"]


def test_field_assignment_and_copies_take_effect(cascade_router):
    llm, _, _ = pair(RIGHT, cascade_router)
    llm.strategy = "route"
    llm.route = "large"
    assert meta(llm.complete(QUESTION))["answered_by"] == "large"
    copy = llm.model_copy(update={"route": "small"})
    assert meta(copy.complete(QUESTION))["answered_by"] == "small"
    llm.route = None
    llm.quality_threshold = 0.0
    assert meta(llm.complete(QUESTION))["threshold"] == 0.0


@pytest.mark.parametrize("field", ["quality_threshold", "max_quality_drop", "large_share"])
def test_bools_are_not_thresholds(cascade_router, field):
    with pytest.raises(ValueError, match=field):
        pair(RIGHT, cascade_router, **{field: True})


class _ToolServer(BaseHTTPRequestHandler):
    """model 'small' answers with a tool call whose arguments do not parse; 'large' with a good one."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        arguments = '{"a": 12, "b":' if body["model"] == "small" else '{"a": 12, "b": 12}'
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "add", "arguments": arguments}}],
        }
        data = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_openai_like_unparsable_tool_call_is_escalated(cascade_router):
    from llama_index.llms.openai_like import OpenAILike

    server = ThreadingHTTPServer(("127.0.0.1", 0), _ToolServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    kw = dict(api_base=url, api_key="none", is_chat_model=True, is_function_calling_model=True, max_retries=0)
    try:
        llm = HybridLLM(
            OpenAILike(model="small", **kw),
            OpenAILike(model="large", **kw),
            router=cascade_router,
            strategy="cascade",
            **ACCEPT_ALL,
        )
        tool = FunctionTool.from_defaults(fn=lambda a, b: a + b, name="add", description="Add two integers.")
        response = llm.chat_with_tools([tool], user_msg=QUESTION)
    finally:
        server.shutdown()
    assert meta(response)["escalated"] and meta(response)["answered_by"] == "large"
    assert meta(response)["small_usage"] == {"input_tokens": 9, "output_tokens": 4}
    calls = llm.get_tool_calls_from_response(response)
    assert calls[0].tool_kwargs == {"a": 12, "b": 12}


def test_concurrent_track_costs_blocks_count_only_their_own_calls(default_router):
    from llamaindex_hybrid.cost import track_costs

    llm = HybridLLM(Canned(name="s", text="a"), Canned(name="l", text="b"), router=default_router)

    async def block(n: int) -> int:
        with track_costs({"s": (1, 1), "l": (1, 1)}) as cost:
            for _ in range(n):
                await llm.acomplete(QUESTION)
                await asyncio.sleep(0)
        return sum(t.calls for t in cost.tracker.per_model.values())

    async def main() -> list[int]:
        return await asyncio.gather(block(2), block(3))

    assert asyncio.run(main()) == [2, 3]


def test_a_refresher_swaps_routers_between_calls(default_router, cascade_router, tmp_path):
    from hybrid_router.core.refresh import RouterRefresher, promote_router

    folder = tmp_path / "live"
    promote_router(default_router, folder)
    with RouterRefresher(folder, interval=0) as refresher:
        llm = HybridLLM(Canned(name="s", text=RIGHT), Canned(name="l", text="b"), router=refresher, strategy="cascade")
        with pytest.raises(ValueError, match="no answer verifier"):
            llm.complete(QUESTION)
        promote_router(cascade_router, folder)
        assert refresher.check()
        out = llm.complete(QUESTION, max_quality_drop=1.0)
    assert meta(out)["strategy"] == "cascade" and meta(out)["verifier_score"] is not None


def test_routing_is_a_span_in_llamaindex_traces(default_router):
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler

    handler = SimpleSpanHandler()
    root = get_dispatcher()
    root.add_span_handler(handler)
    try:
        HybridLLM(Canned(name="s", text="a"), Canned(name="l", text="b"), router=default_router).complete(QUESTION)
    finally:
        root.span_handlers = [h for h in root.span_handlers if h is not handler]
    plans = [s for s in handler.completed_spans if s.id_.startswith("HybridLLM._plan")]
    assert len(plans) == 1 and plans[0].duration > 0


# ---------------------------------------------------------------------- workflow-run pinning keeps the cascade
PIN_DROP = {"max_quality_drop": 0.2}  # certified with some calls small for cascade_router: its query routes small


class Script(Canned):
    """Completes with its ``texts`` in turn (one per call)."""

    texts: list = []

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.calls += 1
        return CompletionResponse(text=self.texts[self.calls - 1])


@pytest.fixture(scope="module")
def gsm8k_row_431():
    """The review's reproduction (1.5): GSM8K row 431, its own small answer, and row 439's answer."""
    from hybrid_router import load_routing_data
    from hybrid_router.train.data import shipped_path

    data = load_routing_data(shipped_path("routellm_gsm8k_answers"))
    return data.queries[431], data.small_answers[431], data.small_answers[439]


def run_workflow(llm: HybridLLM, question: str, calls: int) -> list:
    """``calls`` completions of ``question`` inside one workflow run (as an agent's steps make them)."""
    from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step

    class Steps(Workflow):
        @step
        async def go(self, ev: StartEvent) -> StopEvent:
            return StopEvent(result=[await llm.acomplete(question) for _ in range(calls)])

    async def go() -> list:
        return await Steps(timeout=60).run()

    return asyncio.run(go())


def pinned_pair(router, row, small_texts, large_texts) -> tuple[HybridLLM, Script, Script]:
    from hybrid_router import RoutingOptions

    question, good, bad = row
    threshold = router.decide(question, RoutingOptions(strategy="cascade", **PIN_DROP), "default").verify_threshold
    assert router.score_answer(question, good) >= threshold > router.score_answer(question, bad)
    small, large = Script(name="small-m", texts=small_texts), Script(name="large-m", texts=large_texts)
    return HybridLLM(small, large, router=router, strategy="cascade", **PIN_DROP), small, large


def test_a_workflow_run_pinned_small_still_verifies_and_escalates(cascade_router, gsm8k_row_431):
    question, good, bad = gsm8k_row_431
    llm, small, large = pinned_pair(cascade_router, gsm8k_row_431, [good, bad], ["L1"])
    first, second = run_workflow(llm, question, 2)
    assert (meta(first)["route"], meta(first)["answered_by"], meta(first)["escalated"]) == ("small", "small", False)
    m = meta(second)
    assert m["threshold_source"] == "pinned:" + meta(first)["threshold_source"]
    assert m["strategy"] == "cascade" and m["verify_threshold"] == meta(first)["verify_threshold"]
    assert m["verifier_score"] == pytest.approx(cascade_router.score_answer(question, bad))
    assert m["escalated"] and m["answered_by"] == "large" and second.text == "L1"


def test_an_escalation_pins_the_workflow_run_to_the_large_model(cascade_router, gsm8k_row_431):
    question, good, bad = gsm8k_row_431
    llm, small, large = pinned_pair(cascade_router, gsm8k_row_431, [good, bad, good], ["L1", "L2"])
    *_, third = run_workflow(llm, question, 3)
    m = meta(third)
    assert (m["route"], m["answered_by"], m["verifier_score"]) == ("large", "large", None)
    assert m["threshold_source"].startswith("pinned:") and third.text == "L2"
    assert (small.calls, large.calls) == (2, 2)  # the small model was not asked again
    (fresh,) = run_workflow(llm, question, 1)  # a new run is routed afresh
    assert not meta(fresh)["threshold_source"].startswith("pinned:") and meta(fresh)["answered_by"] == "small"

"""HybridChatModel with strategy="cascade": small answers, the verifier judges, the large model answers the rest."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from langchain_core.callbacks import UsageMetadataCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from hybrid_router import RoutingOptions
from langchain_hybrid import HybridChatModel
from langchain_hybrid.cost import get_hybrid_cost_callback

QUESTION = "Tom has 12 apples and buys 3 bags of 4 apples each. How many apples does he have now?"
RIGHT = "He buys 3 * 4 = 12 apples. Now he has 12 + 12 = 24 apples.\n#### 24"
WRONG = "He buys 3 * 4 = 12 apples. Now he has 12 + 12 = 34 apples.\n#### 34"
ACCEPT_ALL = {"max_quality_drop": 1.0}  # the cheapest frontier point: nothing large, every answer accepted


class Canned(BaseChatModel):
    """Answers one fixed message (any call kwargs accepted and recorded); streams it word by word."""

    model_name: str
    answer: AIMessage
    calls: list[dict[str, Any]] = []
    events: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "canned"

    def _message(self, kwargs: dict[str, Any]) -> AIMessage:
        self.calls.append(kwargs)
        usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
        return self.answer.model_copy(
            update={"usage_metadata": usage, "response_metadata": {"model_name": self.model_name}}
        )

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._message(kwargs))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        message = self._message(kwargs)
        words = str(message.content).split(" ")
        for i, word in enumerate(words):
            self.events.append(f"{self.model_name}:{i}")
            last = i == len(words) - 1
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content=word + ("" if last else " "),
                    usage_metadata=message.usage_metadata if last else None,
                    response_metadata=message.response_metadata if last else {},
                )
            )


def pair(small_answer: AIMessage, router, **fields) -> tuple[HybridChatModel, Canned, Canned]:
    events: list[str] = []
    small = Canned(model_name="small-m", answer=small_answer, calls=[], events=events)
    large = Canned(model_name="large-m", answer=AIMessage(content="The answer is 24."), calls=[], events=events)
    return HybridChatModel(small=small, large=large, router=router, strategy="cascade", **fields), small, large


def meta(message: BaseMessage) -> dict[str, Any]:
    return message.response_metadata["hybrid_router"]


def test_an_accepted_small_answer_is_returned(cascade_router):
    model, small, large = pair(AIMessage(content=RIGHT), cascade_router, **ACCEPT_ALL)
    out = model.invoke(QUESTION)
    assert out.content == RIGHT and len(large.calls) == 0
    m = meta(out)
    assert m["strategy"] == "cascade" and m["answered_by"] == "small" and not m["escalated"]
    assert m["verifier_score"] == pytest.approx(cascade_router.score_answer(QUESTION, RIGHT))


def test_the_verdict_follows_the_verifier_score_and_threshold(cascade_router):
    model, small, large = pair(AIMessage(content=WRONG), cascade_router, large_share=0.5)
    out = model.invoke(QUESTION)
    m = meta(out)
    if m["route"] == "small":  # not sent large at once: the verifier decided
        assert m["escalated"] == (m["verifier_score"] < m["verify_threshold"])
        assert out.content == ("The answer is 24." if m["escalated"] else WRONG)
    else:
        assert m["verifier_score"] is None and len(small.calls) == 0


def test_invalid_json_is_escalated_never_returned(cascade_router):
    model, small, large = pair(AIMessage(content='{"answer": 24'), cascade_router, **ACCEPT_ALL)
    out = model.invoke(QUESTION, response_format={"type": "json_object"})
    assert out.content == "The answer is 24." and len(small.calls) == len(large.calls) == 1
    assert meta(out)["escalation_reason"] == "the answer is not valid JSON"
    assert small.calls[0]["response_format"] == {"type": "json_object"}  # the child got the call's format


def test_an_unparsable_tool_call_is_escalated(cascade_router):
    broken = AIMessage(
        content="",
        invalid_tool_calls=[
            {"name": "add", "args": '{"a": 1,', "id": "c1", "error": "bad", "type": "invalid_tool_call"}
        ],
    )
    model, small, large = pair(broken, cascade_router, **ACCEPT_ALL)
    out = model.invoke(QUESTION)
    assert meta(out)["escalated"] and meta(out)["escalation_reason"] == "a tool call's arguments did not parse"
    assert out.content == "The answer is 24."


def test_a_stream_is_buffered_until_verified(cascade_router):
    model, small, large = pair(AIMessage(content=RIGHT), cascade_router, **ACCEPT_ALL)
    events = small.events
    for _chunk in model.stream(QUESTION):
        events.append("out")
    n_words = len(RIGHT.split(" "))
    assert events[:n_words] == [f"small-m:{i}" for i in range(n_words)] and set(events[n_words:]) == {"out"}


def test_an_escalated_stream_streams_the_large_model(cascade_router):
    model, small, large = pair(AIMessage(content='{"a": '), cascade_router, **ACCEPT_ALL)
    chunks = list(model.stream(QUESTION, response_format={"type": "json_object"}))
    text = "".join(c.content for c in chunks)
    assert text == "The answer is 24." and meta(chunks[0])["escalated"]


async def test_async_cascade(cascade_router):
    model, small, large = pair(AIMessage(content='{"a": '), cascade_router, **ACCEPT_ALL)
    out = await model.ainvoke(QUESTION, response_format={"type": "json_object"})
    assert out.content == "The answer is 24." and meta(out)["escalated"]
    chunks = [c async for c in model.astream(QUESTION, response_format={"type": "json_object"})]
    assert "".join(c.content for c in chunks) == "The answer is 24."


def test_usage_counts_each_model_once_and_cost_counts_both_calls(cascade_router):
    model, small, large = pair(AIMessage(content='{"a": '), cascade_router, **ACCEPT_ALL)
    usage = UsageMetadataCallbackHandler()
    with get_hybrid_cost_callback({"small-m": (1.0, 1.0), "large-m": (10.0, 10.0)}) as cost:
        model.invoke(QUESTION, response_format={"type": "json_object"}, config={"callbacks": [usage]})
    assert set(usage.usage_metadata) == {"large-m"} and usage.usage_metadata["large-m"]["total_tokens"] == 15
    totals = cost.tracker.per_model
    assert totals["small-m"].calls == 1 and totals["large-m"].calls == 1
    assert cost.total_cost == pytest.approx(15 * 1.0 / 1e6 + 15 * 10.0 / 1e6)


def test_strategy_from_config_metadata_and_route_by_default(cascade_router):
    model, small, large = pair(AIMessage(content='{"a": '), cascade_router, **ACCEPT_ALL)
    model = model.model_copy(update={"strategy": "route"})
    plain = model.invoke(QUESTION, response_format={"type": "json_object"})
    assert meta(plain)["strategy"] == "route" and plain.content == '{"a": '
    out = model.invoke(
        QUESTION, response_format={"type": "json_object"}, config={"metadata": {"hybrid_strategy": "cascade"}}
    )
    assert meta(out)["strategy"] == "cascade" and meta(out)["escalated"]


def test_a_router_without_verifier_gives_a_clear_error(default_router):
    model, _, _ = pair(AIMessage(content=RIGHT), default_router)
    with pytest.raises(ValueError, match="no answer verifier"):
        model.invoke(QUESTION)


# ---------------------------------------------------------------------- a real OpenAI client on a real socket
class _BrokenToolCallServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose model 'small' returns a tool call with unparsable arguments."""

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["model"] == "small":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b":'}}
                ],
            }
        else:
            message = {"role": "assistant", "content": "The answer is 24."}
        payload = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_chat_openai_unparsable_tool_call_is_escalated(cascade_router):
    from langchain_openai import ChatOpenAI

    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenToolCallServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        small = ChatOpenAI(model="small", base_url=url, api_key="none", max_retries=0)
        large = ChatOpenAI(model="large", base_url=url, api_key="none", max_retries=0)
        model = HybridChatModel(small=small, large=large, router=cascade_router, strategy="cascade", **ACCEPT_ALL)
        out = model.invoke(QUESTION)
    finally:
        server.shutdown()
    assert out.content == "The answer is 24." and meta(out)["escalated"]
    assert meta(out)["small_usage"] == {"input_tokens": 7, "output_tokens": 3}


def test_a_refresher_swaps_routers_between_calls(default_router, cascade_router, tmp_path):
    from hybrid_router.core.refresh import RouterRefresher, promote_router

    folder = tmp_path / "live"
    promote_router(default_router, folder)
    with RouterRefresher(folder, interval=0) as refresher:
        model, small, large = pair(AIMessage(content=RIGHT), refresher, **ACCEPT_ALL)
        with pytest.raises(ValueError, match="no answer verifier"):
            model.invoke(QUESTION)
        promote_router(cascade_router, folder)
        assert refresher.check()
        out = model.invoke(QUESTION)
        streamed = list(model.stream(QUESTION))
    assert meta(out)["verifier_score"] is not None and meta(streamed[0])["strategy"] == "cascade"


# ---------------------------------------------------------------------- agent-run pinning keeps the cascade
RUN_CONFIG = {"metadata": {"langgraph_node": "model"}, "configurable": {"thread_id": "t1", "checkpoint_ns": "x"}}
PIN_DROP = {"max_quality_drop": 0.2}  # certified with some calls small for cascade_router: its query routes small


class Script(BaseChatModel):
    """Answers its ``replies`` in turn (one per call), recording each call."""

    model_name: str
    replies: list[str]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "script"

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        self.calls += 1
        text = self.replies[self.calls - 1]
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


@pytest.fixture(scope="module")
def gsm8k_row_431():
    """The review's reproduction (1.5): GSM8K row 431, its own small answer, and row 439's answer."""
    from hybrid_router import load_routing_data
    from hybrid_router.train.data import shipped_path

    data = load_routing_data(shipped_path("routellm_gsm8k_answers"))
    return data.queries[431], data.small_answers[431], data.small_answers[439]


def pinned_run(router, row, small_replies, large_replies):
    question, good, bad = row
    small = Script(model_name="small-m", replies=small_replies)
    large = Script(model_name="large-m", replies=large_replies)
    model = HybridChatModel(small=small, large=large, router=router, strategy="cascade", **PIN_DROP)
    threshold = router.decide(question, RoutingOptions(strategy="cascade", **PIN_DROP), "default").verify_threshold
    assert router.score_answer(question, good) >= threshold > router.score_answer(question, bad)
    return model, small, large, HumanMessage(question, id="h1")


def test_a_run_pinned_small_still_verifies_and_escalates_later_calls(cascade_router, gsm8k_row_431):
    question, good, bad = gsm8k_row_431
    model, small, large, human = pinned_run(cascade_router, gsm8k_row_431, [good, bad], ["L1", "L2"])
    first = meta(model.invoke([human], config=RUN_CONFIG))
    assert first["route"] == "small" and first["answered_by"] == "small" and not first["escalated"]
    out = model.invoke([human], config=RUN_CONFIG)  # the run's 2nd call (e.g. its final answer): a bad answer
    second = meta(out)
    assert second["threshold_source"] == "pinned:" + first["threshold_source"]
    assert second["strategy"] == "cascade" and second["verify_threshold"] == first["verify_threshold"]
    assert second["verifier_score"] == pytest.approx(cascade_router.score_answer(question, bad))
    assert second["escalated"] and second["answered_by"] == "large" and out.content == "L1"
    assert (small.calls, large.calls) == (2, 1)


def test_an_escalation_pins_the_run_to_the_large_model(cascade_router, gsm8k_row_431):
    question, good, bad = gsm8k_row_431
    model, small, large, human = pinned_run(cascade_router, gsm8k_row_431, [good, bad, good], ["L1", "L2"])
    model.invoke([human], config=RUN_CONFIG)  # small, accepted: pins the run small
    assert meta(model.invoke([human], config=RUN_CONFIG))["escalated"]  # rejected: re-pins the run large
    out = model.invoke([human], config=RUN_CONFIG)
    third = meta(out)
    assert (third["route"], third["answered_by"], third["verifier_score"]) == ("large", "large", None)
    assert third["threshold_source"].startswith("pinned:") and out.content == "L2"
    assert (small.calls, large.calls) == (2, 2)  # the small model was not asked again
    other = meta(model.invoke([HumanMessage(question, id="h2")], config=RUN_CONFIG))  # a new run: routed afresh
    assert not other["threshold_source"].startswith("pinned:") and other["answered_by"] == "small"

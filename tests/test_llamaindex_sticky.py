"""Escalate-only sessions in LlamaIndex: a chat whose memory holds a large-model answer stays on the large model."""

import itertools
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse, LLMMetadata
from llama_index.core.chat_engine import SimpleChatEngine
from llama_index.core.llms import CustomLLM
from llama_index.core.memory import ChatMemoryBuffer

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM

_COUNTER = itertools.count()


class Numbered(CustomLLM):
    """Answers '<name> answer #n' (a new text every call), streamed in two chunks."""

    name: str = "numbered"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.name)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=f"{self.name} answer #{next(_COUNTER)}")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        text = self.complete(prompt).text
        head, tail = text[:5], text[5:]
        yield CompletionResponse(text=head, delta=head)
        yield CompletionResponse(text=text, delta=tail)


def hybrid(router, **fields) -> HybridLLM:
    return HybridLLM(Numbered(name="small-m"), Numbered(name="large-m"), router=router, **fields)


def engine(llm: HybridLLM) -> SimpleChatEngine:
    return SimpleChatEngine.from_defaults(llm=llm, memory=ChatMemoryBuffer.from_defaults(token_limit=4000))


def chat(chat_engine: SimpleChatEngine, text: str, threshold: float, *, stream: bool = False) -> str:
    with routing(quality_threshold=threshold):
        if stream:
            response = chat_engine.stream_chat(text)
            return "".join(response.response_gen)
        return chat_engine.chat(text).response


@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream_chat"])
def test_a_chat_engine_session_that_went_large_stays_large(default_router, stream):
    llm = hybrid(default_router, sticky_sessions=True)
    first, other = engine(llm), engine(llm)
    assert chat(first, "Prove that there are infinitely many primes.", 1.0, stream=stream).startswith("large-m")
    with record_routes() as records:
        second = chat(first, "Thanks! And what is 2 + 2?", 0.0, stream=stream)
        fresh = chat(other, "Thanks! And what is 2 + 2?", 0.0, stream=stream)
    assert second.startswith("large-m") and records[0]["threshold_source"].startswith("sticky:")
    assert fresh.startswith("small-m")  # another conversation (memory) is not affected
    forced = llm.chat([*first.chat_history, ChatMessage(role="user", content="3 + 3?")], hybrid_route="small")
    assert forced.message.content.startswith("small-m")  # a call kwarg still decides its own call


def test_off_by_default_and_small_answers_do_not_stick(default_router):
    plain = engine(hybrid(default_router))
    chat(plain, "Prove that there are infinitely many primes.", 1.0)
    assert chat(plain, "What is 2 + 2?", 0.0).startswith("small-m")
    sticky = engine(hybrid(default_router, sticky_sessions=True))
    chat(sticky, "Hi", 0.0)
    assert chat(sticky, "Hi again", 0.0).startswith("small-m")


def test_observe_mode_never_makes_a_session_sticky(default_router):
    observed = engine(hybrid(default_router, sticky_sessions=True, mode="observe"))
    chat(observed, "Prove that there are infinitely many primes.", 1.0)  # the large model answers every call
    with record_routes() as records:
        chat(observed, "What is 2 + 2?", 0.0)
    assert records[0]["route"] == "small" and not records[0]["threshold_source"].startswith("sticky:")

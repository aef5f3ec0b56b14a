"""The shipped small model (LangChain + LlamaIndex adapters) and the large model through a real local server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybrid_router.local.chat import ChatOutput, parse_tool_calls
from hybrid_router.local.models import SHIPPED_MODELS, cache_dir, model_path, shipped_gguf

# ---------------------------------------------------------------- plumbing (no model)


def test_parse_tool_calls_extracts_hermes_blocks():
    text = 'ok <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    rest, calls = parse_tool_calls(text)
    assert rest == "ok"
    assert [(c["name"], c["arguments"]) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0]["id"].startswith("call_")


def test_parse_tool_calls_leaves_malformed_blocks_in_text():
    text = "<tool_call>{not json}</tool_call>"
    assert parse_tool_calls(text) == (text, [])
    assert parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')[1] == []


def test_shipped_model_file_and_cache_dir(monkeypatch, tmp_path):
    assert shipped_gguf().name == SHIPPED_MODELS["smollm2-135m"][1]
    with pytest.raises(ValueError, match="unknown shipped model"):
        shipped_gguf("nope")
    monkeypatch.setenv("HYBRID_LLM_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert model_path("some/hub-id") == "some/hub-id"  # non-shipped names pass through unchanged


# ---------------------------------------------------------------- small model, LangChain


@pytest.mark.real_model
def test_small_model_loads_from_the_converted_cache(small_hf_model):
    from hybrid_router.local.models import load_small_model

    model, tokenizer = small_hf_model
    assert load_small_model()[0] is model  # one copy per process
    folder = Path(model_path())
    assert folder == cache_dir() / "models" / "smollm2-135m" and (folder / "model.safetensors").is_file()
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    assert tokenizer.chat_template


@pytest.mark.real_model
def test_other_local_folders_load_through_the_same_code_path(small_hf_model):
    from hybrid_router.local.chat import LocalChat

    chat = LocalChat.load(model_path())  # a plain local folder, as any HF id or path would be
    assert chat.model is not small_hf_model[0] and chat.model.config.to_dict() == small_hf_model[0].config.to_dict()
    assert chat.name == "smollm2-135m"


@pytest.mark.real_model
def test_small_chat_model_invoke_reports_usage_and_model(small_chat_model):
    message = small_chat_model.invoke("What is the capital of France? Answer in one word.", max_tokens=6)
    assert isinstance(message.content, str) and message.content.strip()
    assert message.response_metadata["model_name"] == "smollm2-135m"
    usage = message.usage_metadata
    assert usage["input_tokens"] > 5 and 0 < usage["output_tokens"] <= 6
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.mark.real_model
def test_small_chat_model_streams_pieces_and_usage_once(small_chat_model):
    chunks = list(small_chat_model.stream("Count from one to five.", max_tokens=6))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 2, "expected several text pieces"
    with_usage = [c for c in chunks if c.usage_metadata]
    assert len(with_usage) == 1 and chunks[-1].chunk_position == "last"
    merged = chunks[0]
    for c in chunks[1:]:
        merged += c
    assert merged.response_metadata["model_name"] == "smollm2-135m"
    assert merged.usage_metadata["output_tokens"] == with_usage[0].usage_metadata["output_tokens"] > 0


@pytest.mark.real_model
async def test_small_chat_model_async_and_tool_conversation(small_chat_model):
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    history = [
        HumanMessage("What's the weather in Paris?"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "c1"}]),
        ToolMessage("sunny, 21 C", tool_call_id="c1"),
    ]
    message = await small_chat_model.ainvoke(history, max_tokens=8)
    assert message.content and message.usage_metadata["output_tokens"] <= 8
    chunks = [c async for c in small_chat_model.astream("Say hi", max_tokens=4)]
    assert sum(bool(c.usage_metadata) for c in chunks) == 1


@pytest.mark.real_model
def test_small_chat_model_bind_tools_answers_in_text_without_template_support(small_chat_model):
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Weather in a city."""
        return "sunny"

    assert not small_chat_model.chat.supports_tools  # SmolLM2-135M's template has no tools section
    message = small_chat_model.bind_tools([get_weather]).invoke("Weather in Paris?", max_tokens=6)
    assert message.tool_calls == [] and message.content


@pytest.mark.real_model
def test_small_chat_model_stop_sequences_cut_invoke_and_stream(small_chat_model):
    prompt = "List three colors."
    free = small_chat_model.invoke(prompt, max_tokens=8).content
    words = free.split()
    assert len(words) >= 3, free
    stop = words[len(words) // 2]  # greedy decoding: the same text comes again, so the stop string will appear
    expected = free[: free.index(stop)]
    message = small_chat_model.invoke(prompt, stop=[stop], max_tokens=8)
    assert message.content == expected and message.response_metadata["finish_reason"] == "stop"
    chunks = list(small_chat_model.stream(prompt, stop=[stop], max_tokens=8))
    assert "".join(c.content for c in chunks) == expected


@pytest.mark.real_model
def test_tools_reach_a_tool_capable_chat_template(small_hf_model):
    """Tool schemas are rendered by templates that know tools (no generation needed to check the plumbing)."""
    import copy

    from langchain_core.utils.function_calling import convert_to_openai_tool

    from hybrid_router.local.chat import LocalChat

    model, tokenizer = small_hf_model
    tool_tokenizer = copy.deepcopy(tokenizer)
    tool_tokenizer.chat_template = (
        "{% for t in tools %}TOOL {{ t['function']['name'] }}\n{% endfor %}"
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    )
    chat = LocalChat(model, tool_tokenizer)
    assert chat.supports_tools

    def get_weather(city: str) -> str:
        """Weather in a city."""
        return city

    ids = chat.prompt_ids([{"role": "user", "content": "hi"}], tools=[convert_to_openai_tool(get_weather)])
    assert "TOOL get_weather" in tool_tokenizer.decode(ids[0])
    plain = LocalChat(model, tokenizer).prompt_ids(
        [{"role": "user", "content": "hi"}], tools=[convert_to_openai_tool(get_weather)]
    )
    assert "get_weather" not in tokenizer.decode(plain[0])  # SmolLM2's template has no tools section


@pytest.mark.real_model
def test_llamaindex_tool_calls_are_parsed_from_the_response(small_llamaindex_llm):
    from llama_index.core.base.llms.types import ChatMessage, ChatResponse

    call = {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}
    response = ChatResponse(message=ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]}))
    [selection] = small_llamaindex_llm.get_tool_calls_from_response(response)
    assert (selection.tool_id, selection.tool_name, selection.tool_kwargs) == ("call_1", "add", {"a": 1, "b": 2})
    empty = ChatResponse(message=ChatMessage(role="assistant", content="no tools"))
    assert small_llamaindex_llm.get_tool_calls_from_response(empty, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="expected a tool call"):
        small_llamaindex_llm.get_tool_calls_from_response(empty)


# ---------------------------------------------------------------- small model, LlamaIndex


@pytest.mark.real_model
def test_small_llamaindex_llm_chat_stream_and_counts(small_llamaindex_llm):
    from llama_index.core.llms import ChatMessage

    assert small_llamaindex_llm.metadata.model_name == "smollm2-135m"
    response = small_llamaindex_llm.chat([ChatMessage(role="user", content="Name a fruit.")], max_tokens=4)
    assert response.message.content
    assert response.raw["usage"]["completion_tokens"] == response.additional_kwargs["completion_tokens"] > 0
    pieces = list(small_llamaindex_llm.stream_chat([ChatMessage(role="user", content="Name a fruit.")], max_tokens=4))
    assert len([p for p in pieces if p.delta]) >= 2
    assert pieces[-1].message.content == "".join(p.delta or "" for p in pieces)
    assert pieces[-1].raw["usage"]["prompt_tokens"] > 5


@pytest.mark.real_model
async def test_small_llamaindex_llm_async_and_token_counting(small_llamaindex_llm):
    from llama_index.core.callbacks import CallbackManager, TokenCountingHandler

    counter = TokenCountingHandler()
    small_llamaindex_llm.callback_manager = CallbackManager([counter])
    try:
        response = await small_llamaindex_llm.acomplete("Say hello.", max_tokens=4)
        chunks = [c async for c in await small_llamaindex_llm.astream_complete("Say hello.", max_tokens=4)]
    finally:
        small_llamaindex_llm.callback_manager = CallbackManager([])
    assert response.text and chunks[-1].text
    assert len(counter.llm_token_counts) == 2  # one event per call, no double counting
    assert counter.llm_token_counts[0].completion_token_count == response.raw["usage"]["completion_tokens"]


# ---------------------------------------------------------------- large model: a real local OpenAI-compatible server


@pytest.mark.real_model
def test_large_chat_model_through_the_local_server(large_chat_model):
    message = large_chat_model.invoke("Say hi.", max_tokens=4)
    assert message.content and message.usage_metadata["output_tokens"] > 0
    chunks = list(large_chat_model.stream("Say hi.", max_tokens=4))
    assert len([c for c in chunks if c.content]) >= 2
    assert sum(bool(c.usage_metadata) for c in chunks) == 1


@pytest.mark.real_model
def test_large_llamaindex_llm_through_the_local_server(large_llamaindex_llm):
    from llama_index.core.llms import ChatMessage

    llm = large_llamaindex_llm.model_copy(update={"max_tokens": 4})  # OpenAILike ignores a per-call max_tokens
    response = llm.chat([ChatMessage(role="user", content="Say hi.")])
    assert response.message.content and response.raw.usage.completion_tokens <= 4
    deltas = [r.delta for r in llm.stream_chat([ChatMessage(role="user", content="Say hi.")])]
    assert len([d for d in deltas if d]) >= 2


@pytest.mark.real_model
def test_local_server_speaks_openai_with_tools(local_openai_server):
    """The raw protocol: the ``openai`` SDK, tools accepted, usage reported."""
    from openai import OpenAI

    client = OpenAI(base_url=local_openai_server.base_url, api_key="x", max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    response = client.chat.completions.create(
        model=local_openai_server.model_name,
        max_tokens=4,
        tools=tools,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert response.usage.completion_tokens > 0
    assert json.loads(response.model_dump_json())["choices"][0]["message"]["role"] == "assistant"
    # one display name everywhere: what requests name is what the server reports (not a cache path)
    assert local_openai_server.model_name == response.model == "smollm2-135m@local-server"


def test_chat_output_usage_dict():
    assert ChatOutput("x", 3, 2, "stop").usage() == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}

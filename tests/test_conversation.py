"""How multi-turn input becomes router text."""

import pytest

from hybrid_router import router_text


def test_latest_user_turn_first_then_context_then_system():
    text = router_text(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "Translate 'cat' to German."},
            {"role": "assistant", "content": "Katze"},
            {"role": "user", "content": "and now to French?"},
        ]
    )
    assert text == "and now to French?\n\nassistant: Katze\n\nuser: Translate 'cat' to German.\n\nsystem: Be terse."


def test_string_query_is_unchanged_and_parts_and_tuples_work():
    assert router_text("hello") == "hello"
    parts = [("human", [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}}])]
    assert router_text(parts) == "look"


def test_tool_calls_and_tool_results_are_context():
    text = router_text(
        [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [{"name": "get_weather", "args": {}}]},
            {"role": "tool", "content": "18C"},
        ]
    )
    assert text.startswith("weather in Paris?") and "tool: 18C" in text and "get_weather" in text


def test_framework_messages():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from llama_index.core.llms import ChatMessage

    lc = router_text([SystemMessage("sys"), HumanMessage("hi"), AIMessage("hello"), HumanMessage("bye")])
    li = router_text(
        [
            ChatMessage(role="system", content="sys"),
            ChatMessage(role="user", content="hi"),
            ChatMessage(role="assistant", content="hello"),
            ChatMessage(role="user", content="bye"),
        ]
    )
    assert lc == li == "bye\n\nassistant: hello\n\nuser: hi\n\nsystem: sys"


@pytest.mark.parametrize("empty", ["", [], [{"role": "user", "content": "  "}], None])
def test_empty_input_is_an_error(empty):
    with pytest.raises(ValueError, match="empty"):
        router_text(empty)

"""What the agent examples' offline tool callers do (both frameworks): not a language model, a fixed rule.

The shipped SmolLM2-135M cannot call tools, so offline the examples show the tool path with a stand-in that calls
the tool named in the question on the question's first two integers, then states the tool's result.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

#: OpenAI models for the tool-calling path when ``OPENAI_API_KEY`` is set (small, large).
OPENAI_TOOL_MODELS = ("gpt-4o-mini", "gpt-4o")
ONLINE = "OpenAI gpt-4o-mini | gpt-4o"
OFFLINE = "offline scripted tool callers (not language models; set OPENAI_API_KEY for real ones)"
NO_CALL = "I can only call a named tool on two numbers."


def scripted_tool_call(question: str, tool_names: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """(tool name, ``{"a": x, "b": y}``) for the tool named in ``question``; None without a tool name or 2 integers."""
    question = question.lower()
    name = next((n for n in tool_names if n and n in question), None)
    numbers = [int(n) for n in re.findall(r"-?\d+", question)[:2]]
    return None if name is None or len(numbers) < 2 else (name, dict(zip("ab", numbers)))


def scripted_answer(tool_result: Any) -> str:
    """The final answer after the tool ran."""
    return f"The result is {tool_result}."

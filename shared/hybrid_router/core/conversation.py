"""How a query or a chat conversation becomes the router's input text.

The router reads one string. For a plain string that is the string itself (as in training data). For a message
list it is:

    <latest user turn>
    <earlier turns, most recent first, each "role: text"; tool calls and tool results included>
    system: <system prompt(s)>

joined by blank lines. The latest user turn comes first so that the encoder's length limit (256 tokens for
MiniLM) cuts the oldest context, never the question being answered; earlier turns still shift the score
(a follow-up like "and now in French?" is scored with what it refers to). Messages may be dicts
(``{"role", "content"}``, OpenAI style), LangChain messages (``.type``), LlamaIndex ``ChatMessage`` (``.role``)
or ``(role, content)`` tuples; list-of-parts content keeps its text parts.
"""

from __future__ import annotations

from typing import Any, Sequence

ROLE_NAMES = {"human": "user", "ai": "assistant", "chatbot": "assistant", "model": "assistant", "function": "tool"}


def content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
            elif hasattr(part, "text") and isinstance(part.text, str):
                parts.append(part.text)
        return "\n".join(p for p in parts if p)
    return str(content)


def _role_of(role: Any) -> str:
    role = getattr(role, "value", role)
    role = str(role).lower()
    return ROLE_NAMES.get(role, role)


def message_role_and_text(message: Any) -> tuple[str, str]:
    """(normalised role, text) of one message in any supported form."""
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return _role_of(message[0]), content_text(message[1]).strip()
    if isinstance(message, dict):
        role, content = message.get("role", "user"), message.get("content")
        extra = message.get("tool_calls")
    else:
        role = getattr(message, "role", None) or getattr(message, "type", "user")
        content = getattr(message, "content", None)
        extra = getattr(message, "tool_calls", None)
        if content is None and hasattr(message, "blocks"):
            content = message.blocks
    text = content_text(content).strip()
    if extra:
        names = [str((c.get("name") if isinstance(c, dict) else getattr(c, "name", "")) or "") for c in extra]
        names = [n for n in names if n]
        if names:
            text = (text + "\n" if text else "") + "[calls tools: " + ", ".join(names) + "]"
    return _role_of(role), text


def router_text(query: str | Sequence[Any]) -> str:
    """The router input for a string or a message list (see module docstring); ValueError when empty."""
    if isinstance(query, str):
        if not query.strip():
            raise ValueError("the query is empty: nothing to route")
        return query
    messages = [message_role_and_text(m) for m in (query or [])]
    if not any(text for _, text in messages):
        raise ValueError("the message list is empty (or has no text): nothing to route")
    user_turns = [i for i, (role, text) in enumerate(messages) if role == "user" and text]
    last_user = user_turns[-1] if user_turns else None
    head = [messages[last_user][1]] if last_user is not None else []
    earlier = [
        f"{role}: {text}"
        for i, (role, text) in reversed(list(enumerate(messages)))
        if text and i != last_user and role != "system"
    ]
    system = [f"system: {text}" for role, text in messages if role == "system" and text]
    return "\n\n".join(head + earlier + system)

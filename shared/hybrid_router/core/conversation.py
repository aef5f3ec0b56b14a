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

Media parts (an image, audio, a file or video) cannot be read by the router. A message routes on the text it
has; a message with no text but media (an image-only message) becomes one placeholder per part, such as
``[image]``, so it still routes (on the placeholders and the rest of the conversation) instead of being rejected
as empty. Text that is not valid Unicode (a lone surrogate such as
``"\\ud800"``) is a ValueError.
"""

from __future__ import annotations

from typing import Any, Sequence

ROLE_NAMES = {"human": "user", "ai": "assistant", "chatbot": "assistant", "model": "assistant", "function": "tool"}
#: Content-part types (OpenAI, LangChain, LlamaIndex blocks) the router sees as a placeholder ``[kind]``.
MEDIA_PARTS = {
    "image": "image",
    "image_url": "image",
    "input_image": "image",
    "audio": "audio",
    "input_audio": "audio",
    "file": "file",
    "document": "file",
    "video": "video",
}


def _part_text(part: Any) -> str:
    """The text of one content part (empty for media and other non-text parts)."""
    if isinstance(part, str):
        return part
    kind = part.get("type", "text") if isinstance(part, dict) else getattr(part, "block_type", None)
    if isinstance(part, dict) or kind is not None:
        return str((part.get("text") if isinstance(part, dict) else part.text) or "") if kind == "text" else ""
    text = getattr(part, "text", None)
    return text if isinstance(text, str) else ""


def _media_kind(part: Any) -> str | None:
    """``"image"``, ``"audio"``, ``"file"`` or ``"video"`` for a media part, else None."""
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "block_type", None)
    return MEDIA_PARTS.get(kind) if isinstance(kind, str) else None


def content_text(content: Any) -> str:
    """The router text of a message's content: a string, or a list of parts whose text parts are kept.

    Parts with no text at all but media (an image-only message) give one placeholder per part, e.g. ``[image]``.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        text = "\n".join(p for p in map(_part_text, content) if p)
        if text.strip():
            return text
        return "\n".join(f"[{kind}]" for kind in map(_media_kind, content) if kind)
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
        blocks = getattr(message, "blocks", None)  # LlamaIndex: its .content drops media blocks
        content = blocks if isinstance(blocks, list) and blocks else getattr(message, "content", None)
        extra = getattr(message, "tool_calls", None)
    text = content_text(content).strip()
    if extra:
        names = [str((c.get("name") if isinstance(c, dict) else getattr(c, "name", "")) or "") for c in extra]
        names = [n for n in names if n]
        if names:
            text = (text + "\n" if text else "") + "[calls tools: " + ", ".join(names) + "]"
    return _role_of(role), text


def _check_unicode(text: str) -> str:
    """``text``, or a ValueError when it cannot be encoded (a lone surrogate such as ``"\\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start]
        raise ValueError(
            f"the query is not valid Unicode text: lone surrogate {bad!r} (U+{ord(bad):04X}) at position {exc.start}"
        ) from None
    return text


def router_text(query: str | Sequence[Any]) -> str:
    """The router input for a string or a message list (see module docstring); ValueError when empty or when the
    text is not valid Unicode."""
    if isinstance(query, str):
        if not query.strip():
            raise ValueError("the query is empty: nothing to route")
        return _check_unicode(query)
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
    return _check_unicode("\n\n".join(head + earlier + system))

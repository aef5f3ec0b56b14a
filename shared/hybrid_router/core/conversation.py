"""How a query or a chat conversation becomes the router's input text.

The router reads one string. For a plain string that is the string itself (as in training data). For a message
list it is:

    <latest user turn>
    <earlier turns, most recent first, each "role: text"; tool calls and tool results included>
    system: <system prompt(s)>

joined by blank lines. The latest user turn comes first so that the encoder's length limit (256 tokens for
MiniLM) never cuts the question being answered; earlier turns still shift the score (a follow-up like "and now in
French?" is scored with what it refers to). A longer text keeps the first and the last half of that budget
(:mod:`hybrid_router.core.encoder`, ``truncation="head_tail"``), so the end of a long user turn (where RAG
templates put the question after the retrieved context) is read too.

``router_input`` (:func:`select_router_text`) chooses another text: ``"last_user"`` (the latest user turn alone)
or a callable (the message list -> text). Messages may be dicts
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


#: The named ways a call's input becomes the router text (``router_input=``); a callable is the third way.
ROUTER_INPUTS = ("conversation", "last_user")


def check_router_input(router_input: Any) -> Any:
    """``router_input`` when it is ``"conversation"``, ``"last_user"``, a number of turns (an int >= 1) or a
    callable, else a ValueError."""
    if callable(router_input) or router_input in ROUTER_INPUTS:
        return router_input
    if isinstance(router_input, int) and not isinstance(router_input, bool) and router_input >= 1:
        return router_input
    raise ValueError(
        f"router_input must be one of {', '.join(map(repr, ROUTER_INPUTS))}, a number of turns (int >= 1) or a "
        f"callable (messages -> text), got {router_input!r}"
    )


def router_input_label(router_input: Any) -> str:
    """How the routing record names ``router_input``: its name, or ``"callable:<qualified name>"``."""
    if isinstance(router_input, str):
        return router_input
    if isinstance(router_input, int):
        return f"last_turns:{router_input}"
    name = getattr(router_input, "__qualname__", None) or type(router_input).__qualname__
    return f"callable:{name}"


def last_user_text(query: str | Sequence[Any]) -> str | None:
    """The text of the latest user turn with text (a string query is itself), or None when there is none."""
    if isinstance(query, str):
        return query
    for role, text in reversed([message_role_and_text(m) for m in (query or [])]):
        if role == "user" and text:
            return text
    return None


def last_turns(query: str | Sequence[Any], turns: int) -> str | list[Any]:
    """The messages from the ``turns``-th latest user turn on, with every system message (a string stays as it is;
    a list with fewer user turns stays whole)."""
    if isinstance(query, str):
        return query
    messages = list(query or [])
    roles = [message_role_and_text(m)[0] for m in messages]
    users = [i for i, role in enumerate(roles) if role == "user"]
    if len(users) <= turns:
        return messages
    start = users[-turns]
    return [m for i, (m, role) in enumerate(zip(messages, roles)) if i >= start or role == "system"]


def select_router_text(query: str | Sequence[Any], router_input: Any = "conversation") -> tuple[str, str]:
    """(router text, label of what it is) for a query or message list under ``router_input``.

    - ``"conversation"``: :func:`router_text` (the latest user turn, earlier turns, the system prompt).
    - ``"last_user"``: the latest user turn alone; a list with no user text falls back to the conversation rule
      (and the label says ``"conversation"``).
    - ``N`` (an int): a window of the last ``N`` turns (from the N-th latest user turn on), plus the system prompt;
      the conversation rule then orders them (latest user turn first).
    - a callable: called with the query as given (a string or the message list); it must return a non-empty
      string, which is routed on as it is.

    Empty input is a ValueError whatever the mode, so a call is rejected before any model runs.
    """
    check_router_input(router_input)
    if router_input == "conversation":
        return router_text(query), "conversation"
    if router_input == "last_user":
        text = last_user_text(query)
        if text is None or not text.strip():
            return router_text(query), "conversation"
        return router_text(text), "last_user"
    if isinstance(router_input, int):
        return router_text(last_turns(query, router_input)), router_input_label(router_input)
    router_text(query)  # reject empty input before the callable runs
    text = router_input(query)
    if not isinstance(text, str):
        raise ValueError(f"router_input {router_input_label(router_input)} returned {type(text).__name__}, not text")
    return router_text(text), router_input_label(router_input)

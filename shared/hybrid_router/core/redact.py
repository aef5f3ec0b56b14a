"""Remove secrets (API keys, bearer tokens, passwords in URLs) from any text we store, log or return.

Upstream errors often echo the request's credentials (a 401 body that quotes the key, a URL with a password).
Every error text that reaches a response, a log line or the routing log goes through :func:`redact` first.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

_PATTERNS = (
    # provider keys: OpenAI (sk-, sk-proj-), Anthropic (sk-ant-), Groq (gsk_), Hugging Face (hf_), Google (AIza), xAI
    re.compile(r"\b(?:sk|gsk|hf|xai|pk|rk)[-_][A-Za-z0-9_\-]{8,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"),
    # Authorization headers and bearer tokens, quoted or not
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]{6,}"),
    re.compile(
        r"(?i)(\b(?:api[_-]?key|x-api-key|authorization|access[_-]?token|password|secret)\b[\"']?\s*[:=]\s*[\"']?)"
        r"(?!\[REDACTED\]|(?i:bearer)\s)[^\s\"',;}&]{4,}"
    ),
    # user:password@ in URLs
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
)


def redact(text: object) -> str:
    """``str(text)`` with every secret-looking span replaced by ``[REDACTED]`` (keeps the label before it)."""
    out = str(text)
    for pattern in _PATTERNS:
        out = pattern.sub(lambda m: (m.group(1) if m.re.groups else "") + MASK, out)
    return out

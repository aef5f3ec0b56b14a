"""Secrets never survive into stored, logged or returned error text."""

import pytest

from hybrid_router.core.redact import MASK, redact


@pytest.mark.parametrize(
    "text, secret",
    [
        ("Incorrect API key provided: sk-proj-abcDEF123456789xyz. You can find your key", "sk-proj-abcDEF123456789xyz"),
        ("Error 401: {'error': 'bad key sk-ant-api03-AAAABBBBCCCC'}", "sk-ant-api03-AAAABBBBCCCC"),
        ("Authorization: Bearer abc.def-ghi_123", "abc.def-ghi_123"),
        ('{"api_key": "secretvalue123"}', "secretvalue123"),
        ("https://user:pa55word@example.invalid/v1", "pa55word"),
        ("x-api-key=abcd1234efgh&x=1", "abcd1234efgh"),
        ("token hf_ABCDEFGHIJKLmnop expired", "hf_ABCDEFGHIJKLmnop"),
    ],
)
def test_secrets_are_masked(text, secret):
    out = redact(text)
    assert secret not in out and MASK in out


def test_ordinary_text_is_unchanged():
    text = "small model failed: ConnectError: [Errno 111] Connection refused (skills-based task)"
    assert redact(text) == text

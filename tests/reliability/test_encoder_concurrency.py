"""Encoder thread safety (issue 12, item 18): 1,000 concurrent calls through the real MiniLM encoder.

A Hugging Face fast tokenizer raises ``RuntimeError: Already borrowed`` when two threads use it at once; the
encoder guards it. One encoder layer keeps the 1,000 forward passes cheap; tokenization (the racy part) is the same.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from hybrid_router.core.encoder import Encoder

pytestmark = pytest.mark.timeout(180)

TEXTS = [f"Question {i}: " + "how far is the moon " * (1 + i % 7) for i in range(20)]


def test_thousand_concurrent_calls_through_the_real_encoder():
    encoder = Encoder("minilm", layers=1)
    expected = {text: encoder.encode([text])[0] for text in TEXTS}
    jobs = [TEXTS[i % len(TEXTS)] for i in range(1000)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda text: (text, encoder.encode([text])[0]), jobs))
    assert len(results) == 1000
    for text, vector in results:
        np.testing.assert_allclose(vector, expected[text], atol=1e-5)

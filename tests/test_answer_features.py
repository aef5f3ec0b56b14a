"""Answer checks: total on any input, and each check sees what it should."""

import random
import string

import numpy as np
import pytest

from hybrid_router.core.answer_features import (
    answer_feature_matrix,
    answer_feature_names,
    answer_features,
    register_check,
    unregister_check,
)

NAMES = answer_feature_names()
Q = "Natalia sold clips to 48 of her friends in April, and then half as many in May. How many did she sell in total?"


def feature(query: str, answer: str, name: str) -> float:
    return float(answer_features(query, answer)[NAMES.index(name)])


def test_a_wrong_equation_is_seen():
    right = "In May she sold 48 / 2 = 24 clips. In total 48 + 24 = 72 clips.\n#### 72"
    wrong = "In May she sold 48 / 2 = 24 clips. In total 48 + 24 = 62 clips.\n#### 62"
    assert feature(Q, right, "arithmetic.any_wrong_equation") == 0.0
    assert feature(Q, wrong, "arithmetic.any_wrong_equation") == 1.0
    assert feature(Q, right, "final_marker_hash") == 1.0


def test_json_and_code_checks():
    ask = "Return the result as JSON with keys name and age."
    assert feature(ask, '{"name": "Ann", "age": 3}', "json.json_valid") == 1.0
    assert feature(ask, '{"name": "Ann", "age": }', "json.json_requested_invalid") == 1.0
    code = "Write a Python function that adds two numbers."
    assert feature(code, "```python\ndef add(a, b):\n    return a + b\n```", "python_code.python_syntax_error") == 0.0
    assert feature(code, "```python\ndef add(a, b)\n    return a + b\n```", "python_code.python_syntax_error") == 1.0


def test_repetition_loops_and_truncation():
    loop = "La femme de France, " * 40
    assert feature("Say hi", loop, "repeated_4gram_share") > 0.8
    assert feature("Explain tides.", "The tides are caused by the", "ends_with_connector") == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_any_string_gives_a_finite_vector(seed):
    rng = random.Random(seed)
    alphabet = string.printable + "\u00e9\u4e2d\ud7ff=+-*/^%$,.()[]{}#\\"
    texts = ["", "1e400 = 1e400", "5 / 0 = 0", "9^999999 = 1", "```python\n", "####", "{" * 5000]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000))) for _ in range(20)]
    m = answer_feature_matrix(texts, texts[::-1])
    assert m.shape == (len(texts), len(NAMES)) and np.isfinite(m).all()


def test_a_registered_check_adds_named_columns():
    class Polite:
        name = "polite"
        feature_names = ("says_please",)

        def __call__(self, ctx):
            return [float("please" in ctx.answer.lower())]

    register_check(Polite())
    try:
        names = answer_feature_names(("arithmetic", "polite"))
        assert names[-1] == "polite.says_please"
        assert answer_features("q", "yes please", ("arithmetic", "polite"))[-1] == 1.0
    finally:
        unregister_check("polite")

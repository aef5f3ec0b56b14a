"""First-run friction (issue 14, part 7): what a new user sees on the first run of the CLI, the router and the
shipped small model."""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from hybrid_router import HybridRouter
from hybrid_router.cli import main

TINY = Path(__file__).parent / "data" / "tiny_routing.csv"


def test_head_file_gets_the_same_mode_as_router_json(tmp_path):
    router = HybridRouter.default()
    for umask, expected in ((0o022, 0o644), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            folder = router.save(tmp_path / f"r{umask:o}")
        finally:
            os.umask(old)
        modes = {stat.S_IMODE((folder / name).stat().st_mode) for name in ("router.json", "head.safetensors")}
        assert modes == {expected}


def test_eval_warns_when_the_data_is_the_routers_training_file(tmp_path, capsys):
    router = HybridRouter.default()
    router.info["trained_on"] = str(TINY)
    router.save(tmp_path / "router")
    assert main(["eval", "--router", str(tmp_path / "router"), str(TINY)]) == 0
    assert "is the file this router was trained on" in capsys.readouterr().err
    other = shutil.copy(TINY, tmp_path / "held_out.csv")
    assert main(["eval", "--router", str(tmp_path / "router"), str(other)]) == 0
    assert "trained on" not in capsys.readouterr().err


def test_status_lines_are_info(caplog):
    from hybrid_router.cli.serve import load_router

    with caplog.at_level(logging.DEBUG, logger="hybrid_router"):
        load_router(None)
    status = [r for r in caplog.records if r.getMessage() == "loading the router ..."]
    assert [r.levelno for r in status] == [logging.INFO]


def test_loading_weights_bars_are_quiet_and_the_switch_is_restored(capfd):
    from transformers.utils import logging as hf_logging

    from hybrid_router.core.encoder import Encoder

    assert hf_logging.is_progress_bar_enabled()
    Encoder(layers=2)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the user's own loads keep their bars


LOOPING = [
    {"role": "system", "content": "Réponds toujours en français."},
    {"role": "user", "content": "Qui est la femme de France?"},
]


def repeats(text: str) -> int:
    """The most times one word 3-gram occurs in ``text``."""
    words = re.findall(r"\w+", text.lower())
    grams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return max((grams.count(g) for g in set(grams)), default=0)


@pytest.mark.real_model
def test_the_small_model_does_not_loop_on_a_system_prompt(small_hf_model):
    from hybrid_router.local.chat import DEFAULT_REPETITION_PENALTY, LocalChat

    model, tokenizer = small_hf_model
    plain = LocalChat(model, tokenizer, repetition_penalty=1.0).generate(LOOPING, max_new_tokens=32).text
    assert repeats(plain) >= 4  # "la femme de la femme de la femme de ..." without a penalty
    chat = LocalChat(model, tokenizer)
    assert chat.repetition_penalty == DEFAULT_REPETITION_PENALTY == 1.1
    answer = chat.generate(LOOPING, max_new_tokens=32).text
    assert answer.strip() and repeats(answer) <= 2
    assert "Paris" in chat.generate([{"role": "user", "content": "What is the capital of France?"}]).text
    with pytest.raises(ValueError, match="repetition_penalty"):
        LocalChat(model, tokenizer, repetition_penalty=0)

"""Routing data shipped with hybrid-llm.

The files are derived from the RouteLLM evaluation data (lm-sys/RouteLLM, Apache-2.0): per-query results of
Mixtral-8x7B-Instruct (small) and GPT-4-1106 (large) on GSM8K (MIT), MMLU (MIT) and MT-Bench (first turns,
GPT-4 judge grades). See ``ATTRIBUTION.md`` in this folder.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: Score-only sets (the shipped default router is trained on these).
SHIPPED_DATASETS = ("routellm_gsm8k", "routellm_mmlu", "routellm_mtbench_t1")
#: The same rows with both models' answers (``small_answer``, ``large_answer``): for the verifier and cascades.
ANSWER_DATASETS = ("routellm_gsm8k_answers", "routellm_mtbench_t1_answers")


def shipped_path(name: str) -> Path:
    """Path of a shipped data file, by dataset name (e.g. ``"routellm_gsm8k"``)."""
    if name not in SHIPPED_DATASETS + ANSWER_DATASETS:
        known = ", ".join(SHIPPED_DATASETS + ANSWER_DATASETS)
        raise ValueError(f"unknown shipped dataset {name!r}; choose one of {known}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.csv.gz")))

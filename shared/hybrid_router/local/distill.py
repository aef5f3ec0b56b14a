"""Distilling the large model into the small one: supervised fine-tuning on chat-messages JSONL (``export-sft``).

A plain torch loop (AdamW, linear warm-up and decay, gradient clipping) on the model's own chat template; the loss
covers only the assistant turns (their text and end-of-turn token), never the system/user prompt. With
``lora=True`` only low-rank adapters on the attention and MLP projections are trained (``peft``), and they are
merged into the weights before saving, so the result is an ordinary model folder (safetensors, tokenizer, chat
template) that :func:`hybrid_router.local_models.load_small_model` loads like the shipped one. Runs on the GPU
when one is present, else on the CPU.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .models import DEFAULT_SMALL_MODEL, model_path

IGNORE_INDEX = -100
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
INFO_FILE = "hybrid_llm_distill.json"


@dataclass
class DistillConfig:
    """Training settings; ``lr=None`` picks 1e-3 with LoRA and 3e-5 for full fine-tuning.

    (The settings of ``benchmarks/distill.py``.)
    """

    steps: int = 100
    batch_size: int = 4
    lr: float | None = None
    max_length: int = 384
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    warmup_fraction: float = 0.1
    seed: int = 0
    device: str | None = None

    @property
    def learning_rate(self) -> float:
        """The learning rate in use."""
        return self.lr if self.lr is not None else (1e-3 if self.lora else 3e-5)


@dataclass
class DistillResult:
    """What a run did: where the model went, the loss per step, time and sizes."""

    out_dir: str
    base: str
    config: dict
    n_examples: int
    n_target_tokens: int
    trainable_params: int
    seconds: float
    device: str
    losses: list[float] = field(default_factory=list)


def _render(tokenizer: Any, messages: Sequence[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def tokenize_conversation(tokenizer: Any, messages: Sequence[dict], max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one conversation; labels are ``-100`` except on assistant turns.

    The assistant spans are located in the rendered chat template text (the text up to each assistant turn must be
    a prefix of the whole rendering; ValueError otherwise) and mapped to tokens through the offsets mapping.
    Sequences longer than ``max_length`` tokens are cut at the end.
    """
    full = _render(tokenizer, messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], True)) if i else 0
        upto = _render(tokenizer, messages[: i + 1], False)
        if not full.startswith(upto) or start > len(upto):
            raise ValueError("the chat template does not render conversations incrementally; cannot mask prompts")
        spans.append((start, len(upto)))
    encoded = tokenizer(
        full, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_length
    )
    ids = list(encoded["input_ids"])
    labels = [
        tok if any(s <= begin < e for s, e in spans) else IGNORE_INDEX
        for tok, (begin, _end) in zip(ids, encoded["offset_mapping"])
    ]
    return ids, labels


def build_examples(
    tokenizer: Any, conversations: Sequence[Sequence[dict]], max_length: int
) -> list[tuple[list[int], list[int]]]:
    """Tokenized training examples; conversations left with no assistant token after truncation are dropped."""
    examples = [tokenize_conversation(tokenizer, c, max_length) for c in conversations]
    examples = [e for e in examples if any(t != IGNORE_INDEX for t in e[1])]
    if not examples:
        raise ValueError(f"no example keeps an assistant token within max_length={max_length}")
    return examples


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """``steps`` batches of indices: shuffled epochs, each example once per epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    out = []
    for _ in range(steps):
        batch = []
        while len(batch) < min(batch_size, n):
            if not order:
                order = list(range(n))
                rng.shuffle(order)
            batch.append(order.pop())
        out.append(batch)
    return out


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (steps - step) / max(1, steps - warmup))


def load_trainable(base: str) -> tuple[Any, Any]:
    """A private (model, tokenizer) for training, never the process-wide copy that the chat engines share."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(base)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return AutoModelForCausalLM.from_pretrained(path, dtype="float32"), tokenizer


def distill(
    conversations: Sequence[Sequence[dict]],
    out_dir: str | Path,
    *,
    base: str = DEFAULT_SMALL_MODEL,
    config: DistillConfig | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> DistillResult:
    """Fine-tune ``base`` on ``conversations`` (chat-messages lists) and save the model to ``out_dir``."""
    import torch

    config = config or DistillConfig()
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(config.seed)
    model, tokenizer = load_trainable(base)
    examples = build_examples(tokenizer, conversations, config.max_length)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=0.0,
                target_modules=list(LORA_TARGETS),
                task_type="CAUSAL_LM",
            ),
        )
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    warmup = max(1, math.ceil(config.steps * config.warmup_fraction))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config.steps, warmup))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses = []
    started = time.perf_counter()
    for step, batch_index in enumerate(_batches(len(examples), config.batch_size, config.steps, config.seed)):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in batch_index], pad_id).items()}
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if on_step:
            on_step(step + 1, losses[-1])
    seconds = time.perf_counter() - started
    if config.lora:
        model = model.merge_and_unload()
    model.eval()
    model.to("cpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    result = DistillResult(
        out_dir=str(out),
        base=base,
        config=asdict(config),
        n_examples=len(examples),
        n_target_tokens=sum(sum(t != IGNORE_INDEX for t in labels) for _, labels in examples),
        trainable_params=sum(p.numel() for p in params),
        seconds=seconds,
        device=device,
        losses=losses,
    )
    (out / INFO_FILE).write_text(json.dumps(asdict(result), indent=1))
    return result

"""Distillation: prompt masking, the SFT loader, a real 5-step fine-tune that reloads as the small model, int8."""

from __future__ import annotations

import json

import pytest
import torch

from hybrid_router.cli import main
from hybrid_router.local.distill import IGNORE_INDEX, INFO_FILE, DistillConfig, distill, tokenize_conversation
from hybrid_router.local.models import load_small_model
from hybrid_router.traffic.exports import read_sft_jsonl

EXAMPLES = [
    [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."}],
    [{"role": "user", "content": "What is 4 + 4?"}, {"role": "assistant", "content": "4 + 4 = 8. The answer is 8."}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 7 - 2?"},
        {"role": "assistant", "content": "7 - 2 = 5. The answer is 5."},
    ],
]


def test_loss_mask_covers_only_assistant_turns(small_hf_model):
    _, tokenizer = small_hf_model
    convo = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Sum 1 and 2"},
        {"role": "assistant", "content": "3"},
    ]
    ids, labels = tokenize_conversation(tokenizer, convo, max_length=256)
    assert len(ids) == len(labels)
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "Hello!<|im_end|>\n3<|im_end|>\n"
    short_ids, short_labels = tokenize_conversation(tokenizer, convo, max_length=10)
    assert len(short_ids) == 10 and all(t == IGNORE_INDEX for t in short_labels)  # the prompt alone fills 10 tokens


def test_sft_loader_rejects_malformed_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    for text, message in [
        ("{not json", "invalid JSON"),
        ('{"messages": []}', "non-empty"),
        ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}', "role"),
        ("\n", "no examples"),
    ]:
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match=message):
            read_sft_jsonl(path)
    path.write_text("".join(json.dumps({"messages": m, "metadata": {"x": 1}}) + "\n" for m in EXAMPLES))
    assert read_sft_jsonl(path) == EXAMPLES


def _changed(a, b) -> float:
    with torch.no_grad():
        return float(
            (a.model.layers[0].self_attn.q_proj.weight - b.model.layers[0].self_attn.q_proj.weight).abs().max()
        )


@pytest.mark.real_model
@pytest.mark.parametrize("lora", [False, True], ids=["full-api", "lora-cli"])
def test_five_step_distillation_changes_weights_and_reloads(tmp_path, small_hf_model, capsys, lora):
    base, _ = small_hf_model
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in EXAMPLES))
    out = tmp_path / "out"
    if lora:
        assert (
            main(
                [
                    "distill",
                    str(data),
                    "--out",
                    str(out),
                    "--steps",
                    "5",
                    "--batch-size",
                    "1",
                    "--max-length",
                    "48",
                    "--lora",
                ]
            )
            == 0
        )
        assert "step 5/5 loss" in capsys.readouterr().out
    else:
        steps = []
        result = distill(
            read_sft_jsonl(data),
            out,
            config=DistillConfig(steps=5, batch_size=1, max_length=48, lr=1e-4),
            on_step=lambda step, loss: steps.append((step, loss)),
        )
        assert [s for s, _ in steps] == [1, 2, 3, 4, 5] and all(loss > 0 for _, loss in steps)
        assert result.n_examples == 3 and result.device == "cpu"
    info = json.loads((out / INFO_FILE).read_text())
    assert info["config"]["lora"] is lora and len(info["losses"]) == 5
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= files
    assert not any(name.startswith("adapter") for name in files)  # LoRA is merged: an ordinary model folder
    tuned, tokenizer = load_small_model(str(out), cache=False)
    assert _changed(tuned, base) > 0
    if lora:
        assert info["trainable_params"] < 0.1 * sum(p.numel() for p in base.parameters())
    assert "<|im_start|>" in tokenizer.apply_chat_template(EXAMPLES[0], tokenize=False)
    prompt = tokenizer.apply_chat_template(
        EXAMPLES[0][:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.inference_mode():
        generated = tuned.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


@pytest.mark.real_model
def test_int8_quantized_copy_is_smaller_keeps_quality_and_generates(small_hf_model):
    from hybrid_router.local.chat import LocalChat
    from hybrid_router.local.quantize import Int8WeightOnlyLinear, quantize_model, state_size_mb

    model, tokenizer = small_hf_model
    quantized = quantize_model(model)
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # the original is untouched
    assert isinstance(quantized.model.layers[0].mlp.down_proj, Int8WeightOnlyLinear)
    assert state_size_mb(quantized) < 0.6 * state_size_mb(model)
    ids = tokenizer("Janet's ducks lay 16 eggs per day. She eats three for breakfast.", return_tensors="pt")[
        "input_ids"
    ]
    with torch.inference_mode():
        losses = [float(m(input_ids=ids, labels=ids).loss) for m in (model, quantized)]
    assert abs(losses[1] - losses[0]) < 0.05 * losses[0]  # weight-only int8 keeps the model's perplexity
    out = LocalChat(quantized, tokenizer, max_new_tokens=6).generate([{"role": "user", "content": "Say hello"}])
    assert out.output_tokens > 0 and out.text.strip()
    with pytest.raises(ValueError, match="unknown quantization"):
        quantize_model(model, "int3")

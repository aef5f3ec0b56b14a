"""Distillation: prompt masking, the SFT loader, a real 5-step fine-tune that reloads as the small model, int8."""

from __future__ import annotations

import json

import pytest
import torch

from hybrid_router.distill import INFO_FILE, IGNORE_INDEX, DistillConfig, distill, tokenize_conversation
from hybrid_router.exports import read_sft_jsonl
from hybrid_router.local_models import load_small_model

EXAMPLES = [
    [{"role": "user", "content": "What is 2 + 3?"}, {"role": "assistant", "content": "2 + 3 = 5. The answer is 5."}],
    [{"role": "user", "content": "What is 4 + 4?"}, {"role": "assistant", "content": "4 + 4 = 8. The answer is 8."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 7 - 2?"},
     {"role": "assistant", "content": "7 - 2 = 5. The answer is 5."}],
]


def test_loss_mask_covers_only_assistant_turns(small_hf_model):
    _, tokenizer = small_hf_model
    convo = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "Sum 1 and 2"}, {"role": "assistant", "content": "3"}]
    ids, labels = tokenize_conversation(tokenizer, convo, max_length=256)
    assert len(ids) == len(labels)
    assert tokenizer.decode([t for t in labels if t != IGNORE_INDEX]) == "Hello!<|im_end|>\n3<|im_end|>\n"
    short_ids, short_labels = tokenize_conversation(tokenizer, convo, max_length=10)
    assert len(short_ids) == 10 and all(t == IGNORE_INDEX for t in short_labels)  # the prompt alone fills 10 tokens


def test_sft_loader_rejects_malformed_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    for text, message in [("{not json", "invalid JSON"), ('{"messages": []}', "non-empty"),
                          ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant"),
                          ('{"messages": [{"role": "robot", "content": "hi"}]}', "role"), ("\n", "no examples")]:
        path.write_text(text + "\n")
        with pytest.raises(ValueError, match=message):
            read_sft_jsonl(path)
    path.write_text("".join(json.dumps({"messages": m, "metadata": {"x": 1}}) + "\n" for m in EXAMPLES))
    assert read_sft_jsonl(path) == EXAMPLES


def _changed(a, b) -> float:
    with torch.no_grad():
        return float((a.model.layers[0].self_attn.q_proj.weight - b.model.layers[0].self_attn.q_proj.weight).abs().max())


@pytest.mark.real_model
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_five_step_distillation_changes_weights_and_reloads(tmp_path, small_hf_model, lora):
    base, _ = small_hf_model
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in EXAMPLES))
    steps = []
    result = distill(read_sft_jsonl(data), tmp_path / "out",
                     config=DistillConfig(steps=5, batch_size=1, max_length=48, lora=lora, lr=1e-3 if lora else 1e-4),
                     on_step=lambda step, loss: steps.append((step, loss)))
    assert [s for s, _ in steps] == [1, 2, 3, 4, 5] and all(loss > 0 for _, loss in steps)
    assert result.n_examples == 3 and result.device == "cpu"
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer_config.json", INFO_FILE} <= files
    assert not any(name.startswith("adapter") for name in files)  # LoRA is merged: an ordinary model folder
    tuned, tokenizer = load_small_model(str(tmp_path / "out"), cache=False)
    assert _changed(tuned, base) > 0
    if lora:
        assert result.trainable_params < 0.1 * sum(p.numel() for p in base.parameters())
    assert "<|im_start|>" in tokenizer.apply_chat_template(EXAMPLES[0], tokenize=False)
    prompt = tokenizer.apply_chat_template(EXAMPLES[0][:1], add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.inference_mode():
        out = tuned.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    info = json.loads((tmp_path / "out" / INFO_FILE).read_text())
    assert info["config"]["lora"] is lora and len(info["losses"]) == 5


@pytest.mark.real_model
def test_int8_quantized_copy_is_smaller_and_generates(small_hf_model):
    from hybrid_router.local_chat import LocalChat
    from hybrid_router.quantize import quantize_model, state_size_mb

    model, tokenizer = small_hf_model
    quantized = quantize_model(model)
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # the original is untouched
    assert state_size_mb(quantized) < 0.6 * state_size_mb(model)
    out = LocalChat(quantized, tokenizer, max_new_tokens=6).generate([{"role": "user", "content": "Say hello"}])
    assert out.output_tokens > 0 and out.text.strip()
    with pytest.raises(ValueError, match="unknown quantization"):
        quantize_model(model, "int3")

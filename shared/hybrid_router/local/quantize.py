"""Quantizing a loaded small model for CPU inference; the input model is left untouched (a copy is returned).

- ``"int8"`` (default): weight-only int8 with one scale per output channel for every ``nn.Linear`` whose weight is
  not shared with the input embedding (SmolLM2 ties its output head to the embedding table, which stays float32).
  Activations stay float32, so quality is that of the float32 model (SmolLM2-135M: perplexity 26.32 vs 26.38 on
  GSM8K/MT-Bench questions). The matmul is torch's int8 weight-pack kernel (``torch._weight_int8pack_mm``, the one
  torchao uses), falling back to dequantize-then-matmul where a torch build lacks it.
- ``"int8-dynamic"``: ``torch.ao`` dynamic quantization (int8 weights *and* activations, per tensor). Faster, but
  the activation outliers of small LLMs make it lossy (SmolLM2-135M: perplexity 26 -> ~120); kept for comparison.

``benchmarks/small_model_quant.py`` measures speed, size and agreement with the float32 model.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import torch

QUANTIZE_METHODS = ("int8", "int8-dynamic")


class Int8WeightOnlyLinear(torch.nn.Module):
    """A linear layer with int8 weights (per-output-channel scales) and float activations."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = (weight.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if hasattr(torch, "_weight_int8pack_mm") and flat.device.type == "cpu":  # its bf16 path is the fast one
            out = torch._weight_int8pack_mm(
                flat.to(torch.bfloat16).contiguous(), self.weight_int8, self.scales.to(torch.bfloat16)
            ).to(x.dtype)
        else:
            out = flat @ (self.weight_int8.to(flat.dtype) * self.scales.to(flat.dtype)[:, None]).T
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def _int8_weight_only(model: Any) -> Any:
    quantized = copy.deepcopy(model)
    embedding = quantized.get_input_embeddings().weight
    targets = [
        (name, module)
        for name, module in quantized.named_modules()
        if isinstance(module, torch.nn.Linear) and module.weight is not embedding
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(quantized.get_submodule(parent_name) if parent_name else quantized, child, Int8WeightOnlyLinear(module))
    return quantized


def quantize_model(model: Any, method: str = "int8") -> Any:
    """A quantized copy of a loaded float32 CPU causal LM, e.g. ``quantize_model(load_small_model()[0])``."""
    if method not in QUANTIZE_METHODS:
        raise ValueError(f"unknown quantization {method!r}; choose one of {', '.join(QUANTIZE_METHODS)}")
    if method == "int8":
        quantized = _int8_weight_only(model)
    else:
        quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    quantized.eval()
    return quantized


def state_size_mb(model: Any) -> float:
    """Size of the model's serialized weights in MB (counts packed int8 weights, which ``parameters()`` does not)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6

"""Quantizing a loaded small model for CPU inference.

``int8``: torch dynamic quantization of every ``nn.Linear`` (int8 weights, activations quantized on the fly per
batch); the embedding table stays float32. ``benchmarks/small_model_quant.py`` measures speed, size and agreement
with the float32 model. The input model is left untouched (a quantized copy is returned).
"""

from __future__ import annotations

import io
from typing import Any

QUANTIZE_METHODS = ("int8",)


def quantize_model(model: Any, method: str = "int8") -> Any:
    """A quantized copy of a loaded (float32, CPU) causal LM, e.g. ``quantize_model(load_small_model()[0])``."""
    import torch

    if method not in QUANTIZE_METHODS:
        raise ValueError(f"unknown quantization {method!r}; choose one of {', '.join(QUANTIZE_METHODS)}")
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=False)
    quantized.eval()
    return quantized


def state_size_mb(model: Any) -> float:
    """Size of the model's serialized weights in MB (counts packed int8 weights, which ``parameters()`` does not)."""
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6

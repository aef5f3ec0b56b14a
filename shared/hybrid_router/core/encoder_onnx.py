"""ONNX Runtime backends of the router encoder: ``"onnx"`` (float32) and ``"int8"`` (dynamic int8 quantization).

The ONNX file is built locally from the encoder's own weights the first time a backend is asked for (export with
``torch.onnx.export``, then, for ``"int8"``, ``onnxruntime.quantization.quantize_dynamic`` with per-channel int8
weights), and cached under ``<cache_dir()>/encoders/<key>.onnx`` (``$HYBRID_LLM_CACHE``, else
``$XDG_CACHE_HOME/hybrid-llm``, else ``~/.cache/hybrid-llm``). The key hashes the weight and config files, the
backend and the build recipe, so new weights get a new file. Nothing is downloaded. The exported graph includes
mean pooling and L2 normalisation: it maps ``input_ids, attention_mask`` straight to the embedding.

Building needs the ``onnx`` and ``onnxruntime`` packages; running needs ``onnxruntime`` only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from .cache import cache_dir

logger = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "int8")
#: Bump when the export or quantization recipe changes: cached files of an older recipe are then rebuilt.
RECIPE = "1"
OPSET = 17
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_BUILD_LOCK = threading.Lock()


def _require_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "the 'onnx' and 'int8' encoder backends need onnxruntime and onnx: pip install 'hybrid-llm[int8]'"
        ) from exc
    return onnxruntime


def model_key(path: Path, backend: str, layers: int | None = None) -> str:
    """A content hash of a local encoder folder's config and weights, the backend, the layers kept and the recipe."""
    kept = "" if layers is None else f"|layers={layers}"
    digest = hashlib.sha256(f"{backend}|recipe={RECIPE}|opset={OPSET}{kept}".encode())
    weights = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
    if not (path / "config.json").is_file() or not weights:
        raise FileNotFoundError(
            f"{path} has no config.json and {' or '.join(WEIGHT_FILES)} to build an ONNX encoder from"
        )
    for file in (path / "config.json", weights[0]):
        with open(file, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def _export(path: Path, target: Path, layers: int | None) -> None:
    """Export the transformer (its first ``layers`` layers) with mean pooling and normalisation to fp32 ONNX."""
    import torch

    from .encoder import load_truncated

    class Pooled(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    model = Pooled(load_truncated(str(path), layers).eval())
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = (ids != 0).long()
    axes = {
        "input_ids": {0: "batch", 1: "tokens"},
        "attention_mask": {0: "batch", 1: "tokens"},
        "embedding": {0: "batch"},
    }
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask),
            str(target),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of every MatMul's weights (per output channel, 7-bit range for AVX2 CPUs)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def onnx_model_file(path: str | Path, backend: str, *, layers: int | None = None) -> Path:
    """The cached ONNX file of a local encoder folder for ``backend`` ("onnx" or "int8"), built on first use.

    ``layers`` keeps only the first that many transformer layers (see :class:`hybrid_router.encoder.Encoder`).
    """
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r}; choose one of {', '.join(ONNX_BACKENDS)}")
    path = Path(path)
    target = cache_dir() / "encoders" / f"{model_key(path, backend, layers)}.onnx"
    if target.is_file():
        return target
    _require_onnxruntime()
    try:
        import onnx  # noqa: F401  (needed by the exporter and the quantizer)
    except ImportError as exc:
        raise ImportError("building an ONNX encoder needs the onnx package: pip install 'hybrid-llm[int8]'") from exc
    with _BUILD_LOCK:
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.warning(
            "hybrid-llm: building the %s router encoder from %s into %s (once; about 10-30 s)", backend, path, target
        )
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            _export(path, fp32, layers)
            built = fp32
            if backend == "int8":
                built = Path(tmp) / "int8.onnx"
                _quantize(fp32, built)
            os.replace(built, target)  # atomic: concurrent builders each write a complete file
        logger.info("hybrid-llm: built %s in %.1f s", target.name, time.perf_counter() - start)
    return target


class OnnxEncoderModel:
    """An ONNX Runtime session mapping token ids and attention mask to normalised embeddings."""

    def __init__(self, model_file: str | Path, *, threads: int):
        ort = _require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.file = Path(model_file)
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Embeddings ``[batch, dim]`` (float32, unit norm)."""
        feeds = {
            "input_ids": input_ids.astype(np.int64, copy=False),
            "attention_mask": attention_mask.astype(np.int64, copy=False),
        }
        return self.session.run(None, feeds)[0]

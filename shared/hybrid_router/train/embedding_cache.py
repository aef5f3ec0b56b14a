"""An on-disk embedding cache: encode each (encoder, text) once, across training runs and benchmarks.

:class:`CachedEncoder` is an :class:`~hybrid_router.encoder.Encoder` that looks every text up in a cache file keyed
by the encoder's name and settings and by a hash of the text; the transformer is only loaded when some text is
missing from the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.encoder import DEFAULT_BACKEND, DEFAULT_ENCODER, DEFAULT_TRUNCATION, Encoder, check_truncation


def text_key(text: str) -> str:
    """A stable 20-hex-digit key of a text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


class CachedEncoder(Encoder):
    """An :class:`Encoder` whose embeddings are cached in ``cache_dir`` (one ``.npz`` per encoder setting)."""

    def __init__(
        self,
        name_or_path: str = DEFAULT_ENCODER,
        *,
        cache_dir: str | Path,
        max_length: int = 256,
        device: str = "cpu",
        backend: str = DEFAULT_BACKEND,
        layers: int | None = None,
        truncation: str = DEFAULT_TRUNCATION,
    ):
        # The model is loaded lazily (see _ensure_model), so Encoder.__init__ runs only on a cache miss.
        self.name = name_or_path
        self.max_length = max_length
        self.backend = backend
        self.layers = layers
        self.truncation = check_truncation(truncation)
        self._device_name = device
        self._loaded = False
        key = {"encoder": name_or_path, "max_length": max_length}
        if backend != DEFAULT_BACKEND:
            key["backend"] = backend
        if layers is not None:
            key["layers"] = layers
        if truncation != "head":  # files written before truncation modes existed hold "head" vectors
            key["truncation"] = truncation
        setting = json.dumps(key, sort_keys=True)
        self.path = Path(cache_dir) / f"emb_{hashlib.sha1(setting.encode()).hexdigest()[:16]}.npz"
        self._index: dict[str, int] = {}
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        if self.path.exists():
            with np.load(self.path) as stored:
                self._vectors = stored["vectors"]
                self._index = {str(k): i for i, k in enumerate(stored["keys"])}

    def _ensure_model(self) -> None:
        if not self._loaded:
            Encoder.__init__(
                self,
                self.name,
                max_length=self.max_length,
                device=self._device_name,
                backend=self.backend,
                layers=self.layers,
                truncation=self.truncation,
            )
            self._loaded = True

    @property
    def dim(self) -> int:
        """Embedding size (from the cache when it has any vector)."""
        if self._vectors.size:
            return int(self._vectors.shape[1])
        self._ensure_model()
        return Encoder.dim.fget(self)

    def with_layers(self, layers: int | None) -> "CachedEncoder":
        """The same cached encoder keeping only the first ``layers`` layers (its own cache file)."""
        return CachedEncoder(
            self.name,
            cache_dir=self.path.parent,
            max_length=self.max_length,
            device=self._device_name,
            backend=self.backend,
            layers=layers,
            truncation=self.truncation,
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts``; missing ones are computed, added to the cache and saved."""
        texts = list(texts)
        keys = [text_key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self._index}.items())
        if missing:
            self._ensure_model()
            fresh = Encoder.encode(self, [t for _, t in missing], batch_size=batch_size, progress=progress)
            self._add([k for k, _ in missing], fresh)
        return self._vectors[[self._index[k] for k in keys]].astype(np.float32, copy=True)

    def _add(self, keys: list[str], vectors: np.ndarray) -> None:
        start = len(self._index)
        self._vectors = vectors if not self._vectors.size else np.concatenate([self._vectors, vectors])
        self._index.update({k: start + i for i, k in enumerate(keys)})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self._index), dtype="U20"), vectors=self._vectors)
        os.replace(tmp, self.path)

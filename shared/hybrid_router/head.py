"""Router heads: small models that map encoder embeddings (and the raw texts) to a score in [0, 1].

A head is saved as a JSON-able ``config()`` (with ``"type"``) plus named arrays (``tensors()``, stored as
safetensors). New heads register themselves with :func:`register_head`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import numpy as np

_HEADS: dict[str, type["RouterHead"]] = {}


def register_head(cls: type["RouterHead"]) -> type["RouterHead"]:
    """Class decorator: make a head type loadable by its ``kind``."""
    _HEADS[cls.kind] = cls
    return cls


class RouterHead(ABC):
    """Scores embeddings: ``predict(emb, texts)[i]`` = P[small is good enough for query i]."""

    kind: ClassVar[str]

    @abstractmethod
    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Scores in [0, 1], shape ``[n]``."""

    @abstractmethod
    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays to store."""

    def config(self) -> dict:
        """JSON-able settings (``type`` is added by the router)."""
        return {}

    @classmethod
    @abstractmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> "RouterHead":
        """Rebuild from ``config()`` and ``tensors()``."""


def load_head(config: dict, tensors: dict[str, np.ndarray]) -> RouterHead:
    """Rebuild a head from its saved config (``config["type"]`` picks the class)."""
    kind = config.get("type")
    if kind not in _HEADS:
        raise ValueError(f"unknown router head type {kind!r}; known: {', '.join(sorted(_HEADS))}")
    try:
        return _HEADS[kind].from_saved(config, tensors)
    except KeyError as exc:
        raise ValueError(f"router head {kind!r} is missing tensor {exc}") from exc


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@register_head
class LogisticHead(RouterHead):
    """A linear layer on the embedding followed by a sigmoid."""

    kind = "logistic"

    def __init__(self, weight: np.ndarray, bias: float):
        self.weight = np.asarray(weight, dtype=np.float32).reshape(-1)
        self.bias = float(bias)

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(embeddings @ self.weight + self.bias)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight, "bias": np.array([self.bias], dtype=np.float32)}

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> "LogisticHead":
        return cls(tensors["weight"], float(tensors["bias"][0]))

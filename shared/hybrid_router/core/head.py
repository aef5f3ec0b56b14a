"""Router heads: small models that map encoder embeddings (and the raw texts) to a score in [0, 1].

A head is saved as a JSON-able ``config()`` (with ``"type"``) plus named arrays (``tensors()``, stored as
safetensors). New heads register themselves with :func:`register_head`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import numpy as np

from .features import FEATURE_NAMES, FEATURES_VERSION, query_features

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
    """Rebuild a head from its saved config (``config["type"]`` picks the class).

    A ValueError for an unknown type, a missing tensor, or weights that are NaN or infinite (such a head would
    score every query NaN and silently send it to the large model).
    """
    kind = config.get("type")
    if not isinstance(kind, str) or kind not in _HEADS:
        raise ValueError(f"unknown router head type {kind!r}; known: {', '.join(sorted(_HEADS))}")
    for name, array in tensors.items():
        if np.issubdtype(array.dtype, np.number) and not np.isfinite(array).all():
            raise ValueError(f"router head {kind!r}: tensor {name!r} holds NaN or infinite values")
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


def logit(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Inverse of :func:`sigmoid`, with ``p`` clipped to ``[eps, 1 - eps]``."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


#: Standardised query features are clipped to [-FEATURE_CLIP, FEATURE_CLIP] standard deviations.
FEATURE_CLIP = 5.0


@register_head
class LinearHead(RouterHead):
    """Logistic regression on the embedding and/or the standardised hand-made query features.

    ``sigmoid(emb @ emb_weight + z @ feature_weight + bias)`` with ``z = clip((features - mean) / std, -clip,
    clip)``: clipping keeps a query far outside the training data (a one-word greeting, a 2,000-word document)
    from getting an extreme score from one feature. Either block may be unused.
    """

    kind = "linear"

    def __init__(
        self,
        emb_weight: np.ndarray | None,
        feature_weight: np.ndarray | None,
        bias: float,
        feature_mean: np.ndarray | None = None,
        feature_std: np.ndarray | None = None,
        *,
        clip: float = FEATURE_CLIP,
    ):
        if emb_weight is None and feature_weight is None:
            raise ValueError("a linear head needs embedding weights, feature weights or both")
        self.emb_weight = None if emb_weight is None else np.asarray(emb_weight, dtype=np.float32).reshape(-1)
        self.feature_weight = None if feature_weight is None else np.asarray(feature_weight, np.float32).reshape(-1)
        self.bias = float(bias)
        self.clip = float(clip)
        if self.feature_weight is not None:
            n = len(self.feature_weight)
            if n != len(FEATURE_NAMES):
                raise ValueError(f"linear head has {n} feature weights, this version computes {len(FEATURE_NAMES)}")
            self.feature_mean = np.asarray(feature_mean, dtype=np.float32).reshape(n)
            self.feature_std = np.asarray(feature_std, dtype=np.float32).reshape(n)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """Clipped z-scores of query features, as the head sees them."""
        return np.clip((features - self.feature_mean) / self.feature_std, -self.clip, self.clip)

    def logits(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The linear score before the sigmoid."""
        out = np.full(len(texts) if self.emb_weight is None else len(embeddings), self.bias, dtype=np.float64)
        if self.emb_weight is not None:
            out += embeddings @ self.emb_weight
        if self.feature_weight is not None:
            out += self.standardise(query_features(texts)) @ self.feature_weight
        return out

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return sigmoid(self.logits(embeddings, texts))

    def config(self) -> dict:
        return {
            "embedding": self.emb_weight is not None,
            "features": self.feature_weight is not None,
            "features_version": FEATURES_VERSION,
            "clip": self.clip,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"bias": np.array([self.bias], dtype=np.float32)}
        if self.emb_weight is not None:
            out["emb_weight"] = self.emb_weight
        if self.feature_weight is not None:
            out.update(feature_weight=self.feature_weight, feature_mean=self.feature_mean, feature_std=self.feature_std)
        return out

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> "LinearHead":
        use_features = bool(config.get("features"))
        if use_features and config.get("features_version") != FEATURES_VERSION:
            raise ValueError(
                f"head was trained on query features version {config.get('features_version')!r}, "
                f"this version computes {FEATURES_VERSION}"
            )
        return cls(
            tensors["emb_weight"] if config.get("embedding") else None,
            tensors["feature_weight"] if use_features else None,
            float(tensors["bias"][0]),
            tensors["feature_mean"] if use_features else None,
            tensors["feature_std"] if use_features else None,
            clip=float(config.get("clip", FEATURE_CLIP)),
        )


@register_head
class KnnHead(RouterHead):
    """Label smoothing over the nearest training queries (cosine similarity of the embeddings).

    ``score = (sum_j w_j y_j + strength * prior) / (sum_j w_j + strength)`` over the ``k`` most similar stored
    queries, with ``w_j = exp((sim_j - max sim) / temperature)`` (``temperature = 0``: equal weights). The prior
    (the mean training label) keeps scores of queries without close neighbours near the base rate.
    """

    kind = "knn"

    def __init__(
        self,
        keys: np.ndarray,
        values: np.ndarray,
        *,
        k: int = 30,
        temperature: float = 0.0,
        strength: float = 1.0,
        prior: float | None = None,
    ):
        self.keys = np.asarray(keys).astype(np.float16)  # stored as float16 (half the size; cosines barely move)
        # multiplied as float32 (numpy has no fast float16 matmul), transposed once: a query is one [1, dim] row
        self._keys_t = np.ascontiguousarray(self.keys.astype(np.float32).T)
        self.values = np.asarray(values, dtype=np.float32).reshape(-1)
        if len(self.keys) != len(self.values) or not len(self.values):
            raise ValueError("a kNN head needs as many labels as stored embeddings, and at least one")
        self.k = int(min(max(k, 1), len(self.values)))
        self.temperature = float(temperature)
        self.strength = float(strength)
        self.prior = float(self.values.mean() if prior is None else prior)

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return self.predict_similarities(np.asarray(embeddings, dtype=np.float32) @ self._keys_t)

    def predict_similarities(self, sims: np.ndarray, *, exclude_self: bool = False) -> np.ndarray:
        """Scores from a precomputed similarity matrix ``[n, n_stored]`` (``exclude_self``: leave-one-out on the
        stored queries themselves, for model selection)."""
        sims = np.array(sims, dtype=np.float32, copy=exclude_self)
        if exclude_self:
            np.fill_diagonal(sims, -np.inf)
        k = min(self.k, sims.shape[1] - int(exclude_self))
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        if self.temperature > 0:
            weights = np.exp((top - top.max(axis=1, keepdims=True)) / self.temperature)
        else:
            weights = np.ones_like(top)
        labels = self.values[idx]
        return ((weights * labels).sum(1) + self.strength * self.prior) / (weights.sum(1) + self.strength)

    def config(self) -> dict:
        return {"k": self.k, "temperature": self.temperature, "strength": self.strength, "prior": self.prior}

    def tensors(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys, "values": self.values}

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> "KnnHead":
        return cls(
            tensors["keys"],
            tensors["values"],
            k=int(config["k"]),
            temperature=float(config["temperature"]),
            strength=float(config["strength"]),
            prior=float(config["prior"]),
        )


@register_head
class BlendHead(RouterHead):
    """A weighted sum of other heads' logits: ``sigmoid(sum_j weight_j * logit(p_j) + bias)``."""

    kind = "blend"

    def __init__(self, parts: Sequence[RouterHead], weights: Sequence[float], bias: float = 0.0):
        if not parts or len(parts) != len(weights):
            raise ValueError("a blend head needs at least one part and one weight per part")
        self.parts = list(parts)
        self.weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        self.bias = float(bias)

    def predict(self, embeddings: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        z = np.full(len(texts), self.bias, dtype=np.float64)
        for weight, part in zip(self.weights, self.parts):
            if weight != 0:
                z += weight * logit(part.predict(embeddings, texts))
        return sigmoid(z)

    def config(self) -> dict:
        return {
            "parts": [{"type": p.kind, **p.config()} for p in self.parts],
            "weights": [float(w) for w in self.weights],
            "bias": self.bias,
        }

    def tensors(self) -> dict[str, np.ndarray]:
        return {f"{i}.{name}": value for i, part in enumerate(self.parts) for name, value in part.tensors().items()}

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray]) -> "BlendHead":
        parts = []
        for i, part_config in enumerate(config["parts"]):
            prefix = f"{i}."
            own = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            parts.append(load_head(part_config, own))
        return cls(parts, config["weights"], float(config.get("bias", 0.0)))

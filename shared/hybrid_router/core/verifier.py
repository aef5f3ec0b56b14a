"""The answer verifier: P[the small model's answer is good enough], from the query and that answer.

It is the second signal of a cascade (:mod:`hybrid_router.core.cascade`): the router reads only the query; the
verifier also reads what the small model actually answered. Same label definition and modes as the router
(det / prob / trans): the verifier is trained on the router's labels, with the small model's answer as extra input.

The model is a logistic regression over up to four input blocks, chosen by cross-validation when it is trained
(:mod:`hybrid_router.train.verifier`):

- ``query``: the query's embedding (the router's encoder; the router computed it already, so it costs nothing);
- ``answer``: the answer's embedding (one more encoder forward);
- ``answer_features``: cheap checks of the answer (:mod:`hybrid_router.core.answer_features`: arithmetic of a
  worked answer, final-answer format, hedging, repetition loops, truncation, JSON, code that compiles ...);
- ``query_features``: the router's hand-made query features;
- ``route_score``: the router's own score of the query (its log-odds; free, the router computed it): with it the
  verifier can fall back on what the router knew where the answer says little (stacking), and a verifier of this
  block alone ranks exactly as the router does (a cascade that degrades to routing).

Feature blocks are standardised with the training means and deviations and clipped (as the router's linear head).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .answer_features import ANSWER_FEATURES_VERSION, DEFAULT_CHECKS, answer_feature_matrix, answer_feature_names
from .features import FEATURE_NAMES, FEATURES_VERSION, query_features
from .head import FEATURE_CLIP, sigmoid

#: The input blocks, cheapest first (a cross-validation tie goes to the cheaper set).
INPUTS = ("answer_features", "query", "query_features", "answer", "route_score")
EMBEDDING_INPUTS = ("query", "answer")
FEATURE_INPUTS = ("answer_features", "query_features", "route_score")
#: Router scores are clipped to [eps, 1 - eps] before their log-odds are taken.
SCORE_EPS = 1e-6


def route_score_block(route_scores: np.ndarray) -> np.ndarray:
    """The ``route_score`` block: the router's scores as log-odds, one column."""
    p = np.clip(np.asarray(route_scores, dtype=np.float64), SCORE_EPS, 1.0 - SCORE_EPS)
    return np.log(p / (1.0 - p))[:, None]


class AnswerVerifier:
    """``sigmoid(sum_b x_b @ w_b + bias)`` over the chosen input blocks (see the module docstring)."""

    def __init__(
        self,
        weights: dict[str, np.ndarray],
        bias: float,
        stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
        *,
        clip: float = FEATURE_CLIP,
        checks: Sequence[str] = DEFAULT_CHECKS,
        feature_names: dict[str, list[str]] | None = None,
        info: dict | None = None,
    ):
        unknown = set(weights) - set(INPUTS)
        if not weights or unknown:
            raise ValueError(f"verifier inputs must be a non-empty subset of {INPUTS}, got {sorted(weights)}")
        self.weights = {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in weights.items()}
        self.bias = float(bias)
        self.stats = {k: (np.asarray(m, np.float32), np.asarray(s, np.float32)) for k, (m, s) in (stats or {}).items()}
        missing = [k for k in self.weights if k in FEATURE_INPUTS and k not in self.stats]
        if missing:
            raise ValueError(f"verifier feature blocks without standardisation statistics: {missing}")
        self.clip = float(clip)
        self.checks = tuple(checks)
        self.feature_names = feature_names or {k: self._current_names(k) for k in self.weights if k in FEATURE_INPUTS}
        self.info = dict(info or {})
        for name, w in self.weights.items():
            if not np.all(np.isfinite(w)):
                raise ValueError(f"verifier weights for {name!r} are not finite")
        if not np.isfinite(self.bias):
            raise ValueError("verifier bias is not finite")

    def _current_names(self, block: str) -> list[str]:
        if block == "route_score":
            return ["route_score_logit"]
        return list(answer_feature_names(self.checks)) if block == "answer_features" else list(FEATURE_NAMES)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input blocks it reads, in :data:`INPUTS` order."""
        return tuple(k for k in INPUTS if k in self.weights)

    @property
    def needs_route_score(self) -> bool:
        """True when scoring reads the router's score of the query."""
        return "route_score" in self.weights

    @property
    def needs_answer_embedding(self) -> bool:
        """True when scoring embeds the answer (one encoder forward); else it costs a few feature checks."""
        return "answer" in self.weights

    def features(self, block: str, queries: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """The raw feature matrix of a feature block (``route_score`` is given, not computed: see :meth:`logits`)."""
        if block == "route_score":
            raise ValueError("the route_score block is the router's score: pass route_scores")
        if block == "answer_features":
            return answer_feature_matrix(queries, answers, self.checks)
        return query_features(list(queries))

    def logits(
        self,
        queries: Sequence[str],
        answers: Sequence[str],
        query_embeddings: np.ndarray | None = None,
        answer_embeddings: np.ndarray | None = None,
        route_scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Log-odds of "good enough"; embeddings and router scores are needed only for the blocks that read them."""
        if len(queries) != len(answers):
            raise ValueError(f"{len(queries)} queries but {len(answers)} answers")
        z = np.full(len(queries), self.bias, dtype=np.float64)
        given = {"query": query_embeddings, "answer": answer_embeddings}
        for block, w in self.weights.items():
            if block in EMBEDDING_INPUTS:
                x = given[block]
                if x is None:
                    raise ValueError(f"this verifier reads the {block} embedding; pass {block}_embeddings")
            else:
                if block == "route_score" and route_scores is None:
                    raise ValueError("this verifier reads the router's score; pass route_scores")
                if block == "route_score":
                    raw = route_score_block(route_scores)
                else:
                    raw = self.features(block, queries, answers)
                mean, std = self.stats[block]
                x = np.clip((raw - mean) / std, -self.clip, self.clip)
            if x.shape[-1] != len(w):
                raise ValueError(f"verifier block {block!r} expects {len(w)} values per row, got {x.shape[-1]}")
            z += x @ w
        return z

    def predict(self, queries, answers, query_embeddings=None, answer_embeddings=None, route_scores=None) -> np.ndarray:
        """Scores in [0, 1]: P[the answer is good enough]."""
        return sigmoid(self.logits(queries, answers, query_embeddings, answer_embeddings, route_scores))

    # ------------------------------------------------------------------ persistence
    def config(self) -> dict:
        """JSON-able settings (stored under ``"verifier"`` in router.json)."""
        return {
            "inputs": list(self.inputs),
            "clip": self.clip,
            "checks": list(self.checks),
            "answer_features_version": ANSWER_FEATURES_VERSION,
            "query_features_version": FEATURES_VERSION,
            "feature_names": self.feature_names,
            "info": self.info,
        }

    def tensors(self, prefix: str = "verifier.") -> dict[str, np.ndarray]:
        """The arrays to store (names carry ``prefix``, so they can share the router's weights file)."""
        out = {f"{prefix}w.{k}": w for k, w in self.weights.items()}
        out[f"{prefix}bias"] = np.array([self.bias], dtype=np.float32)
        for k, (mean, std) in self.stats.items():
            out[f"{prefix}mean.{k}"], out[f"{prefix}std.{k}"] = mean, std
        return out

    @classmethod
    def from_saved(cls, config: dict, tensors: dict[str, np.ndarray], prefix: str = "verifier.") -> "AnswerVerifier":
        """Rebuild from :meth:`config` and :meth:`tensors`; ValueError when the folder and this code disagree."""
        inputs = config["inputs"]
        names = config.get("feature_names") or {}
        checks = tuple(config.get("checks", DEFAULT_CHECKS))
        if "answer_features" in inputs:
            try:
                current = list(answer_feature_names(checks))
            except (KeyError, ValueError) as exc:
                raise ValueError(
                    f"the verifier uses answer checks {list(checks)}; register them first ({exc})"
                ) from None
            if (
                config.get("answer_features_version") != ANSWER_FEATURES_VERSION
                or names.get("answer_features") != current
            ):
                raise ValueError(
                    "the verifier was trained on other answer features (version "
                    f"{config.get('answer_features_version')}; this hybrid-llm computes version "
                    f"{ANSWER_FEATURES_VERSION}): retrain it"
                )
        if "query_features" in inputs and config.get("query_features_version") != FEATURES_VERSION:
            raise ValueError(f"the verifier was trained on query features v{config.get('query_features_version')}")
        weights = {k: tensors[f"{prefix}w.{k}"] for k in inputs}
        stats = {k: (tensors[f"{prefix}mean.{k}"], tensors[f"{prefix}std.{k}"]) for k in inputs if k in FEATURE_INPUTS}
        return cls(
            weights,
            float(tensors[f"{prefix}bias"][0]),
            stats,
            clip=float(config.get("clip", FEATURE_CLIP)),
            checks=checks,
            feature_names=names,
            info=config.get("info"),
        )

"""Encoder depth: how many of the encoder's layers the router reads, chosen by cross-validation on training data.

The mean-pooled hidden states of MiniLM's middle layers predict "the small model will do about as well" at least
as well as its last layer on the shipped data (5-fold CV on the training halves, auto recipe: MMLU 0.635 with 3
layers vs 0.624 with all 6; GSM8K 0.58 vs 0.56-0.58), and a 3-layer forward pass costs half of a 6-layer one. The
``auto`` recipe therefore cross-validates its head search at each candidate depth and keeps the shallowest depth
whose best out-of-fold ranking quality is within ``tolerance`` of the best depth's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.encoder import Encoder, encoder_depth
from .recipes import MIN_CV_QUERIES, Selection, select_head

#: Depths the ``auto`` recipe tries (``None``: all layers). Depths the encoder does not have are skipped.
DEFAULT_DEPTHS: tuple[int | None, ...] = (3, 4, None)
#: A shallower encoder is kept when its CV ranking quality is at most this much below the best depth's.
DEPTH_TOLERANCE = 0.005


@dataclass
class DepthChoice:
    """The chosen encoder, the training embeddings at its depth, its head selection and every depth's CV score."""

    encoder: Encoder
    embeddings: np.ndarray
    selection: Selection
    scores: dict[str, float]

    def details(self) -> dict:
        """JSON-able summary (stored in the router's info)."""
        return {"chosen": depth_name(self.encoder.layers), "cv_ranking_quality": self.scores}


def depth_name(layers: int | None) -> str:
    """``"3"`` for the first 3 layers, ``"all"`` for the whole encoder."""
    return "all" if layers is None else str(layers)


def select_depth(
    encoder: Encoder,
    texts: Sequence[str],
    labels: np.ndarray,
    seed: int = 0,
    *,
    depths: Sequence[int | None] = DEFAULT_DEPTHS,
    tolerance: float = DEPTH_TOLERANCE,
    progress: bool = False,
) -> DepthChoice | None:
    """Run the ``auto`` head search on the embeddings of ``encoder`` cut to each depth; keep the shallowest depth
    within ``tolerance`` of the best. ``None`` when there is too little data to cross-validate (the caller then
    keeps ``encoder`` as it is)."""
    if len(texts) < MIN_CV_QUERIES or np.ptp(labels) == 0:
        return None
    full = encoder_depth(encoder.name)
    options = list(dict.fromkeys(d for d in depths if d is None or d < full))
    options.sort(key=lambda d: full if d is None else d)
    tried = []
    for layers in options:
        enc = encoder if layers == encoder.layers else encoder.with_layers(layers)
        embeddings = enc.encode(texts, progress=progress)
        selection = select_head(embeddings, texts, labels, seed)
        tried.append((enc, embeddings, selection, selection.scores[selection.name]))
    scores = {depth_name(enc.layers): round(quality, 4) for enc, _, _, quality in tried}
    best = max(quality for *_, quality in tried)
    enc, embeddings, selection, _ = next(t for t in tried if t[3] >= best - tolerance)
    return DepthChoice(enc, embeddings, selection, scores)

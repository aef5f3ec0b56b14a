"""Training a router: encode queries, make labels, fit a head, calibrate on a held-out split, report metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .calibration import Calibration
from .data_io import RoutingData
from .encoder import DEFAULT_ENCODER, Encoder
from .evaluation import RoutingReport, evaluate_with_references
from .head import LogisticHead, RouterHead
from .labels import make_labels
from .router import HybridRouter

HeadFitter = Callable[[np.ndarray, Sequence[str], np.ndarray, int], RouterHead]


def fit_logistic(embeddings: np.ndarray, texts: Sequence[str], labels: np.ndarray, seed: int = 0,
                 weight_decay: float = 1e-3, steps: int = 300) -> LogisticHead:
    """Logistic regression on (soft) labels with L2 regularisation, fitted by L-BFGS."""
    torch.manual_seed(seed)
    x = torch.as_tensor(embeddings, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return LogisticHead(w.detach().numpy(), float(b.item()))


RECIPES: dict[str, HeadFitter] = {"logistic": fit_logistic}
DEFAULT_RECIPE = "logistic"


@dataclass
class TrainResult:
    """A trained router and what was measured on its validation split."""

    router: HybridRouter
    relaxation: float
    label_mean: float
    validation: list[RoutingReport] = field(default_factory=list)
    n_train: int = 0
    n_val: int = 0


def train_router(
    data: RoutingData,
    *,
    labels: str = "det",
    relaxation: float | None = None,
    recipe: str = DEFAULT_RECIPE,
    encoder: Encoder | str = DEFAULT_ENCODER,
    val_fraction: float = 0.2,
    seed: int = 0,
    progress: bool = False,
) -> TrainResult:
    """Train on ``1 - val_fraction`` of the queries, calibrate and evaluate on the rest.

    The relaxation t* of ``trans`` labels is searched on the training split only.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train, val = data.split(1.0 - val_fraction, seed=seed)
    if len(train) < 2 or len(val) < 1:
        raise ValueError(f"too few queries to train ({len(data)}); need at least 3")
    y, t_used = make_labels(train, labels, t=relaxation)
    enc = encoder if isinstance(encoder, Encoder) else Encoder(encoder)
    emb_train = enc.encode(train.queries, progress=progress)
    head = RECIPES[recipe](emb_train, train.queries, y, seed)
    router = HybridRouter(
        head,
        encoder=enc,
        label_mode=labels,
        relaxation=t_used,
        info={"recipe": recipe, "trained_on": data.source, "n_train": len(train), "metric": data.metric,
              "small_model": data.small_model, "large_model": data.large_model},
    )
    val_scores = router.score_texts(val.queries, progress=progress)
    small_q, large_q = val.mean_small(), val.mean_large()
    router.calibration = Calibration.fit(val_scores, small_q, large_q)
    reports = evaluate_with_references(val_scores, small_q, large_q)
    return TrainResult(router, t_used, float(np.mean(y)), reports, len(train), len(val))

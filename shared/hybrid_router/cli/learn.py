"""``hybrid-llm learn LOG --out DIR``: retrain the router on a routing log, promote it only when a test says it is
better (see :mod:`hybrid_router.loop.learn` for what a promotion guarantees)."""

from __future__ import annotations

import argparse

from .engine_options import add_engine_arguments, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``learn`` subcommand."""
    p = sub.add_parser(
        "learn",
        help="retrain the router on a routing log and write it only if it beats the current one",
        description="Grades the log if needed, trains a router (and the answer verifier when answers are "
        "logged) on all but the newest distinct queries of the scored pairs, compares it with the base router on "
        "those newest queries (APGR, cost advantage at a 1%% quality drop, large share at the base's threshold) "
        "and writes it to DIR only when a paired bootstrap says its APGR gain is above --min-gain at --confidence, "
        "it needs no more large calls than the base at the base's default threshold, and it keeps the base's "
        "verifier and cascade table (or with --force). The decision is printed and appended to DIR.learn.jsonl. "
        "Run it from cron to retrain on a schedule.",
    )
    p.add_argument("log", help="routing log with shadow answers: SQLite file or postgresql:// URL")
    p.add_argument("--out", required=True, help="router folder to write (replaced atomically)")
    p.add_argument(
        "--base", default=None, help="router folder to beat (default: the router in --out, else the shipped one)"
    )
    p.add_argument(
        "--holdout", type=float, default=0.2, help="newest share of the distinct scored queries held out (0.2)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write the new router even when it is not better (and decide on as few as 10 held-out queries)",
    )
    p.add_argument(
        "--min-gain", type=float, default=0.0, help="the APGR gain's lower confidence bound must exceed this (0)"
    )
    p.add_argument(
        "--confidence", type=float, default=0.95, help="confidence of the gain's one-sided lower bound (0.95)"
    )
    p.add_argument("--scorer", default=None, help="scores to learn from (default: the log's only scorer)")
    p.add_argument("--references", default=None, help="CSV/JSONL of query, reference: grade an ungraded log by match")
    p.add_argument("--labels", default="det", choices=("det", "prob", "trans"), help="label mode (det)")
    p.add_argument(
        "--encoder-layers", type=int, default=None, help="fix the encoder depth (default: chosen by cross-validation)"
    )
    refit = p.add_mutually_exclusive_group()
    refit.add_argument(
        "--refit-all",
        action="store_true",
        help="write a refit of the measured configuration on all pairs, holdout included (not measured on it)",
    )
    refit.add_argument(
        "--no-refit", action="store_true", help="write the router measured on the holdout (the default now)"
    )
    p.add_argument("--seed", type=int, default=0)
    add_engine_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Learn, print the comparison and decision tables and the decision (also appended to DIR.learn.jsonl)."""
    from ..core.encoder import Encoder
    from ..core.engine_encoder import engine_encoder
    from ..loop.learn import learn

    if args.encoder_layers is not None and args.encoder_layers < 1:
        raise ValueError(f"--encoder-layers must be >= 1, got {args.encoder_layers}")
    if args.min_gain < 0:
        raise ValueError(f"--min-gain must be >= 0, got {args.min_gain}")
    if not 0.5 <= args.confidence < 1:
        raise ValueError(f"--confidence must be in [0.5, 1), got {args.confidence}")
    with engine_from_args(args) as engine:
        layers = args.encoder_layers
        encoder = engine_encoder(engine, layers=layers) or (Encoder(layers=layers) if layers else None)
        result = learn(
            args.log,
            args.out,
            base=args.base,
            holdout=args.holdout,
            force=args.force,
            min_gain=args.min_gain,
            confidence=args.confidence,
            scorer=args.scorer,
            references=args.references,
            labels=args.labels,
            encoder=encoder,
            depths=None if args.encoder_layers else (3, 4, None),
            refit_all=args.refit_all,
            seed=args.seed,
            engine=engine,
        )
    print(result.summary())
    return 0

"""``hybrid-llm train DATA --labels {det,prob,trans} --out DIR``: train, calibrate and save a router."""

from __future__ import annotations

import argparse

from ..train.data_io import load_routing_data
from ..train.evaluation import format_table
from ..train.labels import LABEL_MODES
from .engine_options import add_engine_arguments, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    from ..train.training import DEFAULT_DELTA, DEFAULT_MAX_QUALITY_DROP, DEFAULT_RECIPE, RECIPES

    p = sub.add_parser(
        "train",
        help="train a router on CSV/JSONL routing data",
        description="Train a router on rows of (query, small_score, large_score).",
    )
    p.add_argument("data", help="CSV or JSONL file (optionally .gz)")
    p.add_argument("--labels", choices=LABEL_MODES, default="det", help="label mode (default: det)")
    p.add_argument(
        "--relaxation", type=float, default=None, help="fixed t for trans labels (default: t* found from data)"
    )
    p.add_argument(
        "--recipe", choices=sorted(RECIPES), default=DEFAULT_RECIPE, help=f"head recipe (default: {DEFAULT_RECIPE})"
    )
    p.add_argument(
        "--encoder", default="minilm", help="encoder: 'minilm' (shipped) or a Hugging Face name / local path"
    )
    p.add_argument(
        "--encoder-layers",
        type=int,
        default=None,
        help="keep only the encoder's first N layers (a faster, compressed router; default: all)",
    )
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out share for calibration and metrics")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad-rows", action="store_true", help="skip rows with missing/non-numeric scores")
    p.add_argument(
        "--default-max-drop",
        type=float,
        default=DEFAULT_MAX_QUALITY_DROP,
        help="the router's default threshold is the certified one for this quality drop "
        f"(default: {DEFAULT_MAX_QUALITY_DROP:g}, i.e. 1%%)",
    )
    p.add_argument(
        "--delta",
        type=float,
        default=DEFAULT_DELTA,
        help="risk level of the certified thresholds: a promised drop or large share fails with probability at "
        f"most this (default: {DEFAULT_DELTA:g})",
    )
    p.add_argument(
        "--no-verifier",
        action="store_true",
        help="do not train the answer verifier even when the data has a small_answer column",
    )
    p.add_argument("--out", required=True, help="output folder for the router")
    add_engine_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and save; prints t*, sizes and validation metrics."""
    import warnings

    from ..core.encoder import Encoder
    from ..core.engine_encoder import engine_encoder
    from ..train.training import train_router

    data = load_routing_data(args.data, skip_bad_rows=args.skip_bad_rows)
    if data.skipped_rows:
        print(f"skipped {data.skipped_rows} bad rows")
    print(f"loaded {len(data)} queries from {args.data} (metric: {data.metric or 'unspecified'})")
    with engine_from_args(args) as engine:
        encoder = engine_encoder(engine, args.encoder, layers=args.encoder_layers) or (
            args.encoder if args.encoder_layers is None else Encoder(args.encoder, layers=args.encoder_layers)
        )
        with warnings.catch_warnings():  # train's warnings are printed below, once, in their place
            warnings.simplefilter("ignore", UserWarning)
            result = train_router(
                data,
                labels=args.labels,
                relaxation=args.relaxation,
                recipe=args.recipe,
                encoder=encoder,
                val_fraction=args.val_fraction,
                seed=args.seed,
                default_max_quality_drop=args.default_max_drop,
                verifier=not args.no_verifier,
                progress=True,
                delta=args.delta,
            )
    if args.labels == "trans":
        print(f"t* = {result.relaxation:g}")
    print(
        f"labels: {args.labels}, mean label {result.label_mean:.3f}; "
        f"trained on {result.n_train}, validated on {result.n_val}"
    )
    print(
        f"recipe {args.recipe}: {result.router.info.get('selection', {}).get('chosen', args.recipe)}, encoder "
        f"layers: {result.router.encoder_layers or 'all'}"
    )
    print(result.router.info["skill"]["verdict"])
    if result.router.verifier is not None:
        verifier = result.router.info["verifier"]
        print(f"answer verifier: {verifier['chosen']} (strategy='cascade' can use it); {verifier.get('why', '')}")
    elif data.small_answers is None:
        print("no small_answer column: no answer verifier (the cascade strategy needs one)")
    print(format_table([r.row() for r in result.validation]))
    calibration = result.router.calibration
    print(
        f"default threshold {result.router.default_threshold:.3f} ({result.router.info['default_threshold_rule']}, "
        f"delta={args.delta:g}, on {calibration.n_queries} out-of-fold calibration queries)"
    )
    for note in result.warnings:
        print(f"WARNING: {note}")
    result.router.save(args.out)
    print(f"saved router to {args.out}")
    return 0

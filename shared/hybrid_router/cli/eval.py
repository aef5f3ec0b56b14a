"""``hybrid-llm eval --router DIR DATA [--plot out.png]``: router vs random vs oracle on labelled data.

When the router has an answer verifier and the data has a ``small_answer`` column, the verifier alone and the
calibrated cascade are reported (and plotted) next to the query-only router.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..train.data_io import load_routing_data
from ..train.evaluation import (
    evaluate_cascade,
    evaluate_scores,
    evaluate_with_references,
    format_table,
    plot_reports,
)
from .engine_options import add_engine_arguments, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    p = sub.add_parser(
        "eval",
        help="evaluate a router on labelled routing data",
        description="Cost advantage, quality drop, APGR and CPT of a router next to random and oracle.",
    )
    p.add_argument("data", help="CSV or JSONL file (optionally .gz)")
    p.add_argument("--router", default=None, help="router folder (default: the shipped router)")
    p.add_argument("--plot", default=None, help="write a PNG of quality vs large-call share")
    p.add_argument("--json", default=None, help="also write the metrics as JSON")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip rows with missing/non-numeric scores")
    add_engine_arguments(p)
    p.set_defaults(func=run)


def trained_on_this(trained_on: object, data: str) -> bool:
    """True when ``data`` is the file recorded in a router's ``info["trained_on"]`` (the same file on disk)."""
    if not isinstance(trained_on, str) or not trained_on:
        return False
    try:
        return Path(trained_on).samefile(data)
    except OSError:
        return Path(trained_on).resolve() == Path(data).resolve()


def run(args: argparse.Namespace) -> int:
    """Score every query and print the metrics table."""
    from ..core.engine_encoder import router_on
    from ..core.router import HybridRouter

    data = load_routing_data(args.data, skip_bad_rows=args.skip_bad_rows)
    router = HybridRouter.load(args.router) if args.router else HybridRouter.default()
    if trained_on_this(router.info.get("trained_on"), args.data):
        print(
            f"warning: {args.data} is the file this router was trained on (router.json info.trained_on): these "
            "numbers are in-sample and optimistic; evaluate on data the router has not seen",
            file=sys.stderr,
        )
    small_q, large_q = data.mean_small(), data.mean_large()
    with engine_from_args(args) as engine:
        router_on(router, engine)
        scores = router.score_texts(data.queries, progress=True)
        reports = evaluate_with_references(scores, small_q, large_q)
        if router.verifier is not None and data.small_answers is not None:
            verified = router.score_answer_batch(data.queries, data.small_answers)
            reports[-1:-1] = [evaluate_scores("verifier", verified, small_q, large_q)]
            if router.cascade is not None:
                reports[-1:-1] = [evaluate_cascade("cascade", router.cascade, scores, verified, small_q, large_q)]
    if router.verifier is not None and data.small_answers is None:
        print("the router has an answer verifier; add a small_answer column to evaluate it and the cascade")
    print(
        f"{len(data)} queries from {args.data}"
        + (f" ({data.skipped_rows} bad rows skipped)" if data.skipped_rows else "")
    )
    print(format_table([r.row() for r in reports]))
    if args.plot:
        plot_reports(reports, args.plot, title=f"{args.data}")
        print(f"wrote {args.plot}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r.row() for r in reports], fh, indent=1)
    return 0

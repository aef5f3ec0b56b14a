"""``hybrid-llm demo``: route a built-in mix of queries between the shipped small model and a large model."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging

from ..core.pricing import ModelPrice
from .serve import add_model_arguments, load_router, open_models


def _price(text: str) -> ModelPrice:
    try:
        inp, out = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IN,OUT dollars per million tokens, got {text!r}") from None
    if inp < 0 or out < 0:
        raise argparse.ArgumentTypeError(f"prices must be non-negative, got {text!r}")
    return ModelPrice(inp, out)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    from ..serve.demo import DEFAULT_LARGE_PRICE, DEFAULT_SMALL_PRICE, DEMO_QUERIES

    p = sub.add_parser(
        "demo",
        help="route built-in queries end to end and show the cost saved",
        description="Routes ~12 mixed queries with the shipped router: the shipped small model "
        "answers the easy ones; the large model is $OPENAI_MODEL when $OPENAI_API_KEY is "
        "set, else a local stand-in server. Prints a table and the savings.",
    )
    add_model_arguments(p, max_tokens=32)
    p.add_argument("--threshold", type=float, default=None, help="quality threshold (default: the router's)")
    p.add_argument("--limit", type=int, default=None, help=f"route only the first N of the {len(DEMO_QUERIES)} queries")
    p.add_argument(
        "--small-price",
        type=_price,
        default=DEFAULT_SMALL_PRICE,
        help=f"IN,OUT $ per million tokens (default: {DEFAULT_SMALL_PRICE.input_per_million:g},"
        f"{DEFAULT_SMALL_PRICE.output_per_million:g})",
    )
    p.add_argument(
        "--large-price",
        type=_price,
        default=DEFAULT_LARGE_PRICE,
        help=f"IN,OUT $ per million tokens (default: gpt-4o-mini, {DEFAULT_LARGE_PRICE.input_per_million:g},"
        f"{DEFAULT_LARGE_PRICE.output_per_million:g})",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write the table and totals as JSON")
    p.add_argument(
        "--learn",
        action="store_true",
        help="instead: replay shipped GSM8K traffic (no model calls, under 2 minutes) and show the savings growing "
        "as 'learn' retrains the router on it",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the table."""
    from ..serve.demo import DEMO_QUERIES, format_demo, run_demo

    if args.learn:
        from ..loop.demo import run_learn_demo

        run_learn_demo()
        return 0
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("hybrid_router").setLevel(logging.INFO)  # the status lines ("loading the router ...")
    with contextlib.ExitStack() as stack:
        small, large = open_models(args, stack)
        router = load_router(args.router)
        result = run_demo(
            router,
            small,
            large,
            queries=DEMO_QUERIES[: args.limit],
            max_tokens=args.max_tokens,
            threshold=args.threshold,
            small_price=args.small_price,
            large_price=args.large_price,
        )
    print(format_demo(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result.to_dict(), fh, indent=1)
        print(f"wrote {args.json}")
    return 0

"""``hybrid-llm replay DATA --log LOG``: recorded traffic through the real routing path, into a routing log."""

from __future__ import annotations

import argparse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``replay`` subcommand."""
    p = sub.add_parser(
        "replay",
        help="replay a routing-data file as traffic into a routing log (offline evaluation, learning)",
        description="Routes every query of DATA (CSV/JSONL with query, small_score, large_score and, where "
        "present, small_answer / large_answer) with the router, answers it from the recorded answers (a marked "
        "placeholder where the file has none) through the fallback runner, logs it like live traffic (shadow "
        "answers at --shadow-rate) and grades every logged answer with its recorded score (scorer 'recorded').",
    )
    p.add_argument("data", help="routing-data file (CSV or JSONL, optionally .gz)")
    p.add_argument(
        "--log",
        required=True,
        help="routing log to write (SQLite file or postgresql:// URL); appended to when it exists",
    )
    p.add_argument("--shadow-rate", type=_rate, default=0.0, help="share of calls also answered by the other model")
    p.add_argument("--router", default=None, help="router folder (default: the shipped router)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shadow sampling (same seed, same log)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip rows with missing or non-numeric scores")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Replay and print a summary line."""
    from ..core.router import HybridRouter
    from ..loop.replay import replay_file

    router = HybridRouter.load(args.router) if args.router else None
    summary = replay_file(
        args.data,
        args.log,
        router=router,
        shadow_rate=args.shadow_rate,
        seed=args.seed,
        skip_bad_rows=args.skip_bad_rows,
    )
    print(summary.line(args.log))
    return 0

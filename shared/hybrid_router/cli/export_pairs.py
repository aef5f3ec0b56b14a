"""``hybrid-llm export-pairs LOG OUT.csv [--scorer NAME]``: scored pairs as router-training CSV."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export-pairs`` subcommand."""
    p = sub.add_parser(
        "export-pairs",
        help="write scored answer pairs as router-training data",
        description="One row per pair whose small and large answers are both scored, in the format "
        "that 'hybrid-llm train' reads.",
    )
    p.add_argument("log", help="routing log: SQLite file or postgresql:// URL")
    p.add_argument("out", help="output CSV")
    p.add_argument("--scorer", default=None, help="which scores to use (default: the only scorer in the log)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the row count."""
    from ..traffic.exports import export_pairs

    n = export_pairs(args.log, args.out, scorer=args.scorer)
    print(f"wrote {n} pairs to {args.out}")
    return 0

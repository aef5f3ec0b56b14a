"""``hybrid-llm export-sft LOG OUT.jsonl --min-score X [--scorer NAME]``: good large-model answers as SFT data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``export-sft`` subcommand."""
    p = sub.add_parser(
        "export-sft",
        help="write the large model's well-scored answers as chat-messages JSONL",
        description="Rejection filter for distillation: keep the large model's answers scored at "
        'least --min-score, as {"messages": [...]} lines.',
    )
    p.add_argument("log", help="routing log: SQLite file or postgresql:// URL")
    p.add_argument("out", help="output JSONL")
    p.add_argument("--min-score", type=float, required=True, help="keep answers with score >= this")
    p.add_argument("--scorer", default=None, help="which scores to use (default: the only scorer in the log)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the number of examples kept."""
    from ..traffic.exports import export_sft

    n = export_sft(args.log, args.out, min_score=args.min_score, scorer=args.scorer)
    print(f"wrote {n} examples to {args.out}")
    return 0

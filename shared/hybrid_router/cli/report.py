"""``hybrid-llm report LOG``: what routing would have saved at several thresholds (observe-mode logs too)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="what routing would have saved on a routing log, with the quality drop from scored pairs",
        description="For several thresholds: the share of calls each model would answer, the estimated cost "
        "(when the log has costs) and the quality drop estimated from the scored pairs (shadow answers graded "
        "by score-log). Works on observe-mode logs, where the large model answered every call.",
    )
    p.add_argument("log", help="routing log: SQLite file or postgresql:// URL")
    p.add_argument("--scorer", default=None, help="scores for the quality drop (default: the log's only scorer)")
    p.add_argument("--threshold", type=float, action="append", default=None, help="report this threshold (repeatable)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also write a PNG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report (and write the PNG)."""
    from ..loop.report import build_report, plot_report

    for t in args.threshold or ():
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"--threshold must be in [0, 1], got {t}")
    report = build_report(args.log, scorer=args.scorer, thresholds=args.threshold)
    print(report.format())
    if args.plot:
        plot_report(report, args.plot)
        print(f"wrote {args.plot}")
    return 0

"""``hybrid-llm score-log LOG --scorer match|embed|judge``: grade the logged answers into the log's scores table."""

from __future__ import annotations

import argparse
import sys

from .engine_options import add_engine_arguments, check_engine_args, engine_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``score-log`` subcommand."""
    p = sub.add_parser(
        "score-log",
        help="grade the answers in a routing log (match, embed or LLM judge)",
        description="Grade logged answers; already graded calls are skipped, so re-running resumes.",
    )
    p.add_argument("log", help="routing log written by RoutingLog: SQLite file or postgresql:// URL")
    p.add_argument(
        "--scorer",
        choices=("match", "embed", "judge"),
        required=True,
        help="match: reference answers; embed: similarity to the large answer; judge: LLM-as-judge",
    )
    p.add_argument("--references", default=None, help="match: CSV/JSONL with columns query, reference")
    p.add_argument("--judge-url", default=None, help="judge: OpenAI-compatible base URL (e.g. http://host:8000/v1)")
    p.add_argument("--judge-model", default=None, help="judge: model name (API key from OPENAI_API_KEY)")
    p.add_argument(
        "--pairwise",
        action="store_true",
        help="judge: compare the two answers of a pair (scorer 'judge-pairwise') instead of grading 1-10",
    )
    p.add_argument("--judge-max-tokens", type=int, default=512, help="judge: max tokens of a verdict")
    p.add_argument("--retry-errors", action="store_true", help="grade again the calls whose grading failed")
    p.add_argument("--limit", type=int, default=None, help="grade at most this many pairs in this run")
    add_engine_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Grade and print a one-line summary."""
    from ..core.engine_encoder import engine_encoder
    from ..traffic.log_scoring import make_scorer, score_log
    from ..traffic.routing_log import open_log

    open_log(args.log).close()  # a missing file or one that is not a routing log fails before any scorer loads
    check_engine_args(args)
    if args.scorer != "embed" and args.engine != "local":
        print(
            f"note: the {args.scorer} scorer embeds nothing, so it runs here (--engine is for embed)", file=sys.stderr
        )
        args.engine, args.workers, args.ray_address = "local", None, None
    with engine_from_args(args) as engine:
        scorer = make_scorer(
            args.scorer,
            references=args.references,
            judge_url=args.judge_url,
            judge_model=args.judge_model,
            judge_max_tokens=args.judge_max_tokens,
            pairwise=args.pairwise,
            encoder=engine_encoder(engine) if args.scorer == "embed" else None,
        )
        summary = score_log(args.log, scorer, retry_errors=args.retry_errors, limit=args.limit)
    print(
        f"{scorer.name}: scored {summary.scored} calls, {summary.errors} errors (see scores.error), "
        f"{summary.skipped} already scored, {summary.unscorable} not scorable by this scorer"
    )
    return 0

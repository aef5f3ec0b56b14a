"""The ``hybrid-llm`` console script: one subcommand per module in this package.

Each module defines ``register(subparsers)``, which adds its subparser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("train", "eval", "score_log", "export_pairs", "export_sft", "distill", "serve", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="hybrid-llm", description="Quality-aware routing between a small and a large LLM."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"hybrid_router.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors in user input print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"hybrid-llm {args.command}: error: {exc}", file=sys.stderr)
        return 2

"""The ``hybrid-llm`` console script: one subcommand per module in this package.

Each module defines ``register(subparsers)``, which adds its subparser and sets ``func`` to a callable taking the
parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from ..core.encoder import EncoderLoadError
from ..core.redact import redact

COMMANDS = (
    "train",
    "eval",
    "score_log",
    "export_pairs",
    "export_sft",
    "distill",
    "serve",
    "demo",
    "replay",
    "learn",
    "report",
)

#: Errors caused by the user's input (files, folders, options): one line on stderr and exit status 2, no traceback.
#: ValueError covers DataError, RouterFileError, LogFileError and undecodable text; OSError covers missing,
#: unreadable and unwritable paths.
USER_ERRORS = (ValueError, OSError, EncoderLoadError, sqlite3.Error)


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
    except USER_ERRORS as exc:
        print(f"hybrid-llm {args.command}: error: {redact(exc)}", file=sys.stderr)
        return 2

"""``--engine``, ``--workers``, ``--ray-address``: where the batch commands (score-log, train, eval, learn) embed."""

from __future__ import annotations

import argparse

from ..core.engines import DEFAULT_ENGINE, ENGINES, Engine, EngineError, make_engine


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """Add the engine options to a batch command's parser."""
    p.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        metavar="{" + ",".join(ENGINES) + "}",
        help="where texts are embedded: local (this process, default) or ray (a ray.data job: pip install "
        "'hybrid-llm[ray]'); the numbers are the same",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="ray: workers embedding at once, one CPU and one encoder each (default: the cluster's CPUs)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="ray: a running cluster ('auto', 'ray://head:10001'); default: start a local one for this run",
    )


def engine_from_args(args: argparse.Namespace) -> Engine:
    """The engine the options ask for (use it in a ``with`` block: a Ray cluster started for the run is shut down);
    the options are checked first (:func:`check_engine_args`)."""
    check_engine_args(args)
    return make_engine(args.engine, workers=args.workers, address=args.ray_address)


def check_engine_args(args: argparse.Namespace) -> None:
    """An :class:`~hybrid_router.core.engines.EngineError` (one line from the CLI) for an unknown engine,
    ``--workers`` below 1, or a Ray option without ``--engine ray``."""
    if args.engine not in ENGINES:
        raise EngineError(f"unknown engine {args.engine!r}; choose one of {', '.join(ENGINES)}")
    if args.workers is not None and args.workers < 1:
        raise EngineError(f"--workers must be >= 1, got {args.workers}")
    if args.engine != "ray" and (args.workers is not None or args.ray_address is not None):
        raise EngineError("--workers and --ray-address go with --engine ray")

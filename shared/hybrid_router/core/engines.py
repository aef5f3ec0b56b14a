"""Batch engines: call a batch function on consecutive batches of rows, in order, here or on a Ray cluster.

An :class:`Engine` has one job, :meth:`Engine.map_batches`: cut the rows into the batches asked for, call an
instance of a *callable class* on each batch (the class is built once per worker, so a model loads once per
worker, not once per batch) and return the outputs concatenated in row order. The function sees exactly the
batches asked for on every engine, so an engine changes where the work runs, never the numbers.

- :class:`LocalEngine` (``"local"``): in this process, one instance per (class, arguments), kept between calls.
- :class:`RayEngine` (``"ray"``): a ``ray.data`` job, ``map_batches`` over an actor pool of ``workers`` actors,
  order preserved. Ray is imported only here, when the engine is made (``pip install 'hybrid-llm[ray]'``); without
  an ``address`` it starts a local cluster and shuts it down on :meth:`~Engine.close`, a cluster already
  initialised in the process (or at ``address``) is used and left running.

:mod:`hybrid_router.core.engine_encoder` runs the router's encoder on an engine (the batch work of ``score-log``,
``train``, ``eval`` and ``learn``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import numpy as np

ENGINES = ("local", "ray")
DEFAULT_ENGINE = "local"
#: Environment variables a Ray worker gets from the driver (the encoder loads offline on every node).
WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME")
#: Columns the Ray engine adds to the rows it ships (the function never sees them).
_BATCH, _ROW = "__batch__", "__row__"

Columns = Mapping[str, Sequence[Any]]
BatchFunction = Callable[[dict[str, Any]], Mapping[str, Any]]


class EngineError(ValueError):
    """An engine that cannot run: Ray not installed, a cluster that cannot start or be reached, a failed job."""


def batch_bounds(n_rows: int, batch_size: int | Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each batch: ``batch_size`` rows a batch (the last may be shorter), or the given sizes."""
    if isinstance(batch_size, (int, np.integer)):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sizes: Sequence[int] = [min(int(batch_size), n_rows - s) for s in range(0, n_rows, int(batch_size))]
    else:
        sizes = [int(s) for s in batch_size]
        if any(s < 1 for s in sizes) or sum(sizes) != n_rows:
            raise ValueError(f"batch sizes must be >= 1 and add up to the {n_rows} rows, got {sum(sizes)} rows")
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def _row_count(rows: Columns) -> int:
    lengths = {name: len(values) for name, values in rows.items()}
    if not lengths or len(set(lengths.values())) != 1:
        raise ValueError(f"rows must be one or more columns of equal length, got {lengths}")
    return next(iter(lengths.values()))


def _concat(outputs: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    names = list(outputs[0]) if outputs else []
    return {name: np.concatenate([np.asarray(out[name]) for out in outputs]) for name in names}


class Engine(ABC):
    """Runs a batch function over rows (see the module docstring); a context manager that closes itself."""

    name: str = ""
    #: how many copies of the batch function run at once
    workers: int = 1

    @abstractmethod
    def map_batches(
        self,
        fn_class: type,
        rows: Columns,
        *,
        batch_size: int | Sequence[int],
        fn_kwargs: Mapping[str, Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """``fn_class(**fn_kwargs)(batch)`` on each batch of ``rows`` (columns of equal length, cut by
        ``batch_size``: rows a batch, or the size of each batch in turn); the output columns, in row order.

        Each output column holds one entry (an array's first axis) per row of the batch.
        """

    def close(self) -> None:
        """Release what the engine started (nothing for the local engine)."""
        return None

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"


class LocalEngine(Engine):
    """In this process, batch after batch; each (class, arguments) is instantiated once and kept."""

    name = "local"

    def __init__(self) -> None:
        self._instances: dict[tuple[type, str], BatchFunction] = {}

    def _instance(self, fn_class: type, fn_kwargs: Mapping[str, Any]) -> BatchFunction:
        key = (fn_class, json.dumps(fn_kwargs, sort_keys=True, default=repr))
        if key not in self._instances:
            self._instances[key] = fn_class(**fn_kwargs)
        return self._instances[key]

    def map_batches(self, fn_class, rows, *, batch_size, fn_kwargs=None):
        n_rows = _row_count(rows)
        fn = self._instance(fn_class, dict(fn_kwargs or {}))
        columns = {name: list(values) for name, values in rows.items()}
        outputs = [
            fn({name: values[start:stop] for name, values in columns.items()})
            for start, stop in batch_bounds(n_rows, batch_size)
        ]
        return _concat(outputs)

    def close(self) -> None:
        self._instances.clear()


class _EachBatch:
    """The class a Ray actor runs: the caller's batch function, called once per batch the engine cut.

    The rows carry their batch number and row number; a Ray batch holding several of the engine's batches is
    split back into them, so the function sees exactly the batches it would see locally.
    """

    def __init__(self, fn_class: type, fn_kwargs: Mapping[str, Any]):
        self.fn = fn_class(**fn_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch[_BATCH])
        cuts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1), len(ids)]
        columns = {name: values for name, values in batch.items() if name not in (_BATCH, _ROW)}
        outputs = [
            self.fn({name: list(values[start:stop]) for name, values in columns.items()})
            for start, stop in zip(cuts[:-1], cuts[1:])
        ]
        out = _concat(outputs)
        out[_ROW] = np.asarray(batch[_ROW])
        return out


def import_ray() -> Any:
    """The ``ray`` module with ``ray.data``, or an :class:`EngineError` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise EngineError(
            f"--engine ray needs Ray Data, which is not installed ({exc}): pip install 'hybrid-llm[ray]'"
        ) from None
    return ray


class RayEngine(Engine):
    """``ray.data`` ``map_batches`` over an actor pool of ``workers`` actors (one CPU each), order preserved.

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``); None starts a local one with ``num_cpus``
    CPUs (default: ``workers``, else all of this machine's), which :meth:`close` shuts down. When Ray is already
    initialised in this process, that cluster is used. ``workers`` defaults to the cluster's CPU count.
    """

    name = "ray"

    def __init__(self, *, workers: int | None = None, address: str | None = None, num_cpus: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise EngineError(f"workers must be a positive integer, got {workers!r}")
        ray = import_ray()
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
            options: dict[str, Any] = dict(
                address=address,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
                runtime_env={"env_vars": env} if env else None,
            )
            if address is None:
                options["num_cpus"] = num_cpus or workers
            try:
                ray.init(**options)
            except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's own, all one message
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise EngineError(f"cannot start or reach {where}: {_last_line(exc)}") from None
            self._started = True
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(cpus, 1)

    def map_batches(self, fn_class, rows, *, batch_size, fn_kwargs=None):
        import pandas as pd

        ray = self._ray
        n_rows = _row_count(rows)
        bounds = batch_bounds(n_rows, batch_size)
        if not bounds:
            return {}
        columns = {name: list(values) for name, values in rows.items()}
        # one block per batch: Ray Data never splits a block between calls when batch_size is None
        frames = [
            pd.DataFrame(
                {
                    _BATCH: np.full(stop - start, k),
                    _ROW: np.arange(start, stop),
                    **{name: pd.Series(values[start:stop], dtype=object) for name, values in columns.items()},
                }
            )
            for k, (start, stop) in enumerate(bounds)
        ]
        with warnings.catch_warnings():  # newer Ray deprecates passing actor options this way; 2.9 needs it
            warnings.simplefilter("ignore")
            dataset = ray.data.from_pandas(frames).map_batches(
                _EachBatch,
                fn_constructor_kwargs={"fn_class": fn_class, "fn_kwargs": dict(fn_kwargs or {})},
                compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(bounds))),
                batch_size=None,
                batch_format="numpy",
                max_restarts=0,  # a batch job: a lost worker fails the job (a re-run repeats it), no restart noise
            )
        try:
            out = _concat(list(dataset.iter_batches(batch_format="numpy", batch_size=None)))
        except ray.exceptions.RayError as exc:
            raise EngineError(f"the Ray job failed: {_last_line(exc)}") from None
        order = np.argsort(out.pop(_ROW), kind="stable")
        if len(order) != n_rows:
            raise EngineError(f"the Ray job returned {len(order)} rows for {n_rows}")
        return {name: values[order] for name, values in out.items()}

    def close(self) -> None:
        if self._started:
            self._started = False
            self._ray.shutdown()

    def __repr__(self) -> str:
        return f"RayEngine(workers={self.workers}, started_here={self._started})"


def _last_line(exc: BaseException) -> str:
    """The last meaningful line of an exception's text (Ray wraps the cause in a traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def make_engine(
    name: str = DEFAULT_ENGINE, *, workers: int | None = None, address: str | None = None
) -> LocalEngine | RayEngine:
    """The engine called ``name`` (``"local"`` or ``"ray"``); an :class:`EngineError` for any other name."""
    if name == "local":
        return LocalEngine()
    if name == "ray":
        return RayEngine(workers=workers, address=address)
    raise EngineError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")

"""``hybrid-llm serve --small URL_OR_LOCAL --large URL --router DIR --port N``: the router as an OpenAI endpoint.

Secrets (upstream keys, the server's own key) are read from environment variables or files as well as flags:
a flag's value shows in ``ps``, a variable's or a file's does not.

``--workers N`` (N > 1) serves from N processes under uvicorn's supervisor: the parent binds the port (and starts a
``local`` stand-in large server once), writes the parsed options to a settings file named by
:data:`SETTINGS_ENV`, and each worker rebuilds the app with :func:`worker_app` (its own router and backends).
``--workers 1`` serves in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..local.models import DEFAULT_SMALL_MODEL
from ..serve.backends import DEFAULT_CONCURRENCY, DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..core.router import HybridRouter
    from ..serve.backends import ChatBackend


#: Environment variables read for secrets when no flag or file gives them.
SMALL_KEY_ENV = "HYBRID_LLM_SMALL_API_KEY"
LARGE_KEY_ENV = "HYBRID_LLM_LARGE_API_KEY"
SERVER_KEY_ENV = "HYBRID_LLM_API_KEY"
#: Set by ``serve --workers N`` for its worker processes: the JSON settings file :func:`worker_app` reads.
SETTINGS_ENV = "HYBRID_LLM_SERVE_SETTINGS"
#: Seconds a new worker may take to load (the router, a local small model) when SIGHUP restarts the workers.
WORKER_START_S = 120


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0-65535 (0: any free port), got {port}")
    return port


def read_secret(value: str | None, file: str | None, env: str | None) -> str | None:
    """A secret from a flag, else from a file (its first line), else from the environment variable ``env``."""
    if value:
        return value
    if file:
        path = Path(file)
        if not path.is_file():
            raise FileNotFoundError(f"secret file {file} does not exist or is not a file")
        secret = path.read_text(encoding="utf-8").strip()
        if not secret or "\n" in secret:
            raise ValueError(f"secret file {file} must hold the key on one line")
        return secret
    return (os.environ.get(env) if env else None) or None


def add_model_arguments(p: argparse.ArgumentParser, *, max_tokens: int) -> None:
    """The --small / --large / --router options shared by ``serve`` and ``demo``."""
    p.add_argument(
        "--small",
        default=DEFAULT_SMALL_MODEL,
        help=f"small model: a local model ({DEFAULT_SMALL_MODEL!r}, a Hugging Face id or a folder) or an "
        f"OpenAI-compatible base URL (default: {DEFAULT_SMALL_MODEL})",
    )
    p.add_argument("--small-model", default=None, help="model name to request when --small is a URL")
    p.add_argument(
        "--small-api-key",
        default=None,
        help=f"API key when --small is a URL (visible in ps: prefer --small-api-key-file or ${SMALL_KEY_ENV})",
    )
    p.add_argument("--small-api-key-file", default=None, metavar="PATH", help="read the --small API key from a file")
    p.add_argument(
        "--large",
        default=None,
        help="large model: an OpenAI-compatible base URL, or 'local[:MODEL]' to start a local stand-in "
        f"server (default: $OPENAI_BASE_URL, else {DEFAULT_LARGE_URL} when $OPENAI_API_KEY is set, "
        "else 'local')",
    )
    p.add_argument(
        "--large-model",
        default=None,
        help=f"model name to request from --large (default: $OPENAI_MODEL, else {DEFAULT_LARGE_MODEL})",
    )
    p.add_argument(
        "--large-api-key",
        default=None,
        help=f"API key for --large (default: --large-api-key-file, else ${LARGE_KEY_ENV}, else $OPENAI_API_KEY; "
        "a flag is visible in ps)",
    )
    p.add_argument("--large-api-key-file", default=None, metavar="PATH", help="read the --large API key from a file")
    p.add_argument("--router", default=None, help="router folder (default: the shipped router)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=max_tokens,
        help=f"max tokens per answer when the request sets none, for local and URL models (default: {max_tokens})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for local models (default: 1; a 135M model gains little from more)",
    )


def open_models(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[ChatBackend, ChatBackend]:
    """(small, large) backends for parsed ``add_model_arguments`` options; servers started here stop with ``stack``."""
    from ..local.chat import LocalChat
    from ..serve.backends import LocalBackend, OpenAIBackend

    log = logging.getLogger("hybrid_router")
    if args.max_tokens < 1 or args.threads < 1:
        raise ValueError("--max-tokens and --threads must be >= 1")
    limits = {"concurrency": args.concurrency} if getattr(args, "concurrency", None) else {}
    if args.small.startswith(("http://", "https://")):
        if not args.small_model:
            raise ValueError("--small is a URL: give the model name with --small-model")
        key = read_secret(args.small_api_key, args.small_api_key_file, SMALL_KEY_ENV)
        small = OpenAIBackend(args.small, args.small_model, api_key=key, max_tokens=args.max_tokens, **limits)
    else:
        import torch

        torch.set_num_threads(args.threads)
        log.info("loading the small model %s ...", args.small)
        small = LocalBackend(LocalChat.load(args.small, max_new_tokens=args.max_tokens))
    spec = large_spec(args)
    if spec.startswith(("http://", "https://")):
        model = args.large_model or os.environ.get("OPENAI_MODEL") or DEFAULT_LARGE_MODEL
        key = read_secret(args.large_api_key, args.large_api_key_file, LARGE_KEY_ENV) or os.environ.get(
            "OPENAI_API_KEY"
        )
        name = getattr(args, "large_name", None)  # set by --workers for a stand-in the parent started
        large = OpenAIBackend(spec, model, api_key=key, name=name, max_tokens=args.max_tokens, **limits)
    elif spec == "local" or spec.startswith("local:"):
        url, model = start_local_large(spec, args.threads, stack)
        large = OpenAIBackend(url, model, name=model, max_tokens=args.max_tokens, **limits)
    else:
        raise ValueError(f"--large must be an http(s) URL or 'local[:MODEL]', got {spec!r}")
    for backend in (small, large):
        if hasattr(backend, "close"):
            stack.callback(backend.close)
    return small, large


def large_spec(args: argparse.Namespace) -> str:
    """``--large``, else ``$OPENAI_BASE_URL``, else the OpenAI API when ``$OPENAI_API_KEY`` is set, else ``local``."""
    return (
        args.large
        or os.environ.get("OPENAI_BASE_URL")
        or (DEFAULT_LARGE_URL if os.environ.get("OPENAI_API_KEY") else "local")
    )


def start_local_large(spec: str, threads: int, stack: contextlib.ExitStack) -> tuple[str, str]:
    """Start the ``local[:MODEL]`` stand-in large server (stops with ``stack``); (base URL, model name).

    The model name requests send is the stand-in's display name (``smollm2-135m@local-server``)."""
    from ..local.server import LocalOpenAIServer

    log = logging.getLogger("hybrid_router")
    name = spec.partition(":")[2] or DEFAULT_SMALL_MODEL
    log.info("starting a local OpenAI-compatible stand-in for the large model (%s; ~30-60 s) ...", name)
    server = stack.enter_context(LocalOpenAIServer(name, threads=threads))
    log.info("stand-in large model ready at %s", server.base_url)
    return server.base_url, server.model_name


def check_model_arguments(args: argparse.Namespace) -> None:
    """ValueError / OSError for model options :func:`open_models` would refuse, without loading or starting anything."""
    if args.max_tokens < 1 or args.threads < 1:
        raise ValueError("--max-tokens and --threads must be >= 1")
    if args.small.startswith(("http://", "https://")):
        if not args.small_model:
            raise ValueError("--small is a URL: give the model name with --small-model")
        read_secret(args.small_api_key, args.small_api_key_file, SMALL_KEY_ENV)
    spec = large_spec(args)
    if spec.startswith(("http://", "https://")):
        read_secret(args.large_api_key, args.large_api_key_file, LARGE_KEY_ENV)
    elif not (spec == "local" or spec.startswith("local:")):
        raise ValueError(f"--large must be an http(s) URL or 'local[:MODEL]', got {spec!r}")
    if args.refresh_s and not args.router:
        raise ValueError("--refresh-s needs --router DIR: the folder that hybrid-llm learn promotes into")


def load_router(directory: str | None) -> HybridRouter:
    """The router in ``directory`` (default: the shipped one), with its encoder loaded."""
    from ..core.router import HybridRouter

    logging.getLogger("hybrid_router").info("loading the router ...")
    router = HybridRouter.load(directory) if directory else HybridRouter.shared_default()
    router.score("warm-up")  # loads the encoder now rather than on the first request
    return router


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser(
        "serve",
        help="serve the router as an OpenAI-compatible chat completions endpoint",
        description="OpenAI chat completions (streaming, tools) routed between a small and a large "
        "model. Request model 'hybrid', 'hybrid:0.7' (threshold), 'hybrid:small' or "
        "'hybrid:large'; or send quality_threshold in the body. Keys: pass them in environment "
        f"variables (${SERVER_KEY_ENV}, ${SMALL_KEY_ENV}, ${LARGE_KEY_ENV} or $OPENAI_API_KEY) or "
        "files (--*-api-key-file) rather than flags, which other users can read in ps.",
    )
    add_model_arguments(p, max_tokens=256)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="listen port; 0 picks a free one (default: 8000)")
    p.add_argument("--timeout", type=_positive(float), default=None, help="seconds to first output before falling back")
    p.add_argument(
        "--idle-timeout",
        type=_positive(float),
        default=None,
        help="seconds allowed between stream chunks after the first output (default: no limit)",
    )
    p.add_argument(
        "--cooldown-after",
        type=_positive(int),
        default=None,
        help="skip a model that failed this many times in a row for --cooldown-s seconds (default: never)",
    )
    p.add_argument("--cooldown-s", type=_positive(float), default=30.0, help="cooldown period in seconds (default: 30)")
    p.add_argument("--no-fallback", action="store_true", help="answer 502 instead of asking the other model")
    p.add_argument(
        "--refresh-s",
        type=_positive(float),
        default=None,
        help="re-read --router DIR every N seconds and swap in a newly promoted router without dropping requests "
        "(hybrid-llm learn --out DIR promotes atomically)",
    )
    p.add_argument(
        "--mode",
        choices=("route", "observe"),
        default="route",
        help="'observe': route and record the decision, but let the large model answer every request "
        "(measure savings before switching routing on)",
    )
    p.add_argument(
        "--strategy",
        choices=("route", "cascade"),
        default="route",
        help="default strategy: 'route' (the routed model answers) or 'cascade' (small answers, the router's answer "
        "verifier accepts or escalates; needs a router trained on answers); a request's 'strategy' field overrides it",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require this key as 'Authorization: Bearer <key>' on every route but /health (default: "
        f"--api-key-file, else ${SERVER_KEY_ENV}, else no key; a flag is visible in ps)",
    )
    p.add_argument("--api-key-file", default=None, metavar="PATH", help="read the server's API key from a file")
    p.add_argument(
        "--max-request-bytes",
        type=_positive(int),
        default=None,
        help="larger request bodies get a 413 (default: 1048576, 1 MiB)",
    )
    p.add_argument(
        "--concurrency",
        type=_positive(int),
        default=DEFAULT_CONCURRENCY,
        help=f"calls in flight per model; more wait, within --timeout (default: {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--workers",
        type=_positive(int),
        default=1,
        help="worker processes, each with its own router and model connections, sharing the port (default: 1: "
        "serve in this process)",
    )
    p.set_defaults(func=run)


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one); ValueError naming the address if impossible."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def build_app(args: argparse.Namespace, api_key: str | None, stack: contextlib.ExitStack) -> tuple[FastAPI, str]:
    """Load the models and the router for parsed ``serve`` options; (the app, a description of its models)."""
    from ..serve.app import MAX_BODY_BYTES, RouterService, create_app

    small, large = open_models(args, stack)
    router: Any = load_router(args.router)
    if args.refresh_s:
        from ..core.refresh import RouterRefresher

        if not args.router:
            raise ValueError("--refresh-s needs --router DIR: the folder that hybrid-llm learn promotes into")
        router = stack.enter_context(RouterRefresher(args.router, interval=args.refresh_s).start())
    service = RouterService(
        router,
        small,
        large,
        timeout=args.timeout,
        fallback=not args.no_fallback,
        concurrency=args.concurrency,
        idle_timeout=args.idle_timeout,
        cooldown_after=args.cooldown_after,
        cooldown_s=args.cooldown_s,
        strategy=args.strategy,
        observe=args.mode == "observe",
    )
    app = create_app(service, api_key=api_key, max_body_bytes=args.max_request_bytes or MAX_BODY_BYTES)
    return app, f"small: {small.name}, large: {large.name}"


def _log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    """Bind the port, load everything, then serve until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    api_key = read_secret(args.api_key, args.api_key_file, SERVER_KEY_ENV)
    _log_setup()
    if args.workers > 1:
        return run_workers(args, api_key)
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(listen(args.host, args.port))
        app, models = build_app(args, api_key, stack)
        host, port = sock.getsockname()[:2]
        print(
            f"serving on http://{host}:{port}/v1 ({models}{', API key required' if api_key else ''})",
            file=sys.stderr,
            flush=True,
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # uvicorn re-raises the stop signal after
        with contextlib.suppress(KeyboardInterrupt):  # shutting down: end normally, so the stack closes
            server.run(sockets=[sock])
    return 0


class _DropStartupFailure(logging.Filter):
    """Hides uvicorn's "failed to start" line in the parent: the worker's own error becomes the one error line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "failed to start" not in record.getMessage()


def run_workers(args: argparse.Namespace, api_key: str | None) -> int:
    """Serve from ``args.workers`` processes sharing one listening socket, until SIGINT / SIGTERM stops them all.

    Options are checked here first (one error line); a worker that cannot start (a bad router folder, a local model
    that does not load) writes its error for this process to report, and every worker is stopped.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    check_model_arguments(args)
    errors: list[str] = []
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(listen(args.host, args.port))
        settings = {k: v for k, v in vars(args).items() if k != "func"}
        spec = large_spec(args)
        if spec == "local" or spec.startswith("local:"):  # one stand-in for all workers, started here
            url, model = start_local_large(spec, args.threads, stack)
            settings.update(large=url, large_model=model, large_name=model)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybrid-llm-serve-")))  # mode 0700
        (folder / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
        os.environ[SETTINGS_ENV] = str(folder / "settings.json")  # inherited by the spawned workers
        options: dict[str, Any] = {"log_level": "warning", "timeout_graceful_shutdown": 5}
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            options["timeout_worker_healthcheck"] = WORKER_START_S  # SIGHUP's rolling restart waits this long
        config = uvicorn.Config("hybrid_router.cli.serve:worker_app", factory=True, workers=args.workers, **options)
        logging.getLogger("uvicorn.error").addFilter(_DropStartupFailure())
        supervisor = Multiprocess(config, sockets=[sock])
        host, port = sock.getsockname()[:2]

        def watch() -> None:  # "serving on" once every worker is up; stop all on a worker's startup error
            while not supervisor.should_exit.wait(0.1):
                if failed := sorted(folder.glob("error-*")):
                    errors.append(failed[0].read_text(encoding="utf-8"))
                    supervisor.should_exit.set()
                    return
                ready = sorted(folder.glob("ready-*"))
                if len(ready) >= args.workers:
                    print(
                        f"serving on http://{host}:{port}/v1 ({ready[0].read_text(encoding='utf-8')}, "
                        f"{args.workers} workers{', API key required' if api_key else ''})",
                        file=sys.stderr,
                        flush=True,
                    )
                    return

        threading.Thread(target=watch, daemon=True, name="serve-workers-watch").start()
        supervisor.run()
        if not errors and (failed := sorted(folder.glob("error-*"))):
            errors.append(failed[0].read_text(encoding="utf-8"))
    if errors:
        raise ValueError(errors[0])
    return 0


#: What a worker process holds open while it serves (backends, a router refresher); it ends with the process.
_worker_stack = contextlib.ExitStack()


def worker_app() -> FastAPI:
    """The app factory each ``serve --workers N`` worker runs: the app rebuilt from the parent's settings file.

    Writes ``ready-<pid>`` next to the settings when the app is built, or ``error-<pid>`` with the message and exits
    with uvicorn's startup-failure status when the options cannot be served.
    """
    from uvicorn.config import STARTUP_FAILURE

    from . import USER_ERRORS

    settings = Path(os.environ[SETTINGS_ENV])
    _log_setup()
    args = argparse.Namespace(**json.loads(settings.read_text(encoding="utf-8")))
    # uvicorn only records a stop signal until the app is loaded: stop loading at once instead
    previous = {sig: signal.signal(sig, _stop_loading) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        api_key = read_secret(args.api_key, args.api_key_file, SERVER_KEY_ENV)
        app, models = build_app(args, api_key, _worker_stack)
    except USER_ERRORS as exc:
        _note(settings.parent / f"error-{os.getpid()}", str(exc))
        sys.exit(STARTUP_FAILURE)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _note(settings.parent / f"ready-{os.getpid()}", models)
    return app


def _stop_loading(sig: int, frame: Any) -> None:
    sys.exit(0)


def _note(path: Path, text: str) -> None:
    """Write ``path`` atomically (the parent never reads half a note)."""
    partial = path.with_name(f".partial-{path.name}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)

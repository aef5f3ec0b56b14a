"""``hybrid-llm serve --small URL_OR_LOCAL --large URL --router DIR --port N``: the router as an OpenAI endpoint.

Secrets (upstream keys, the server's own key) are read from environment variables or files as well as flags:
a flag's value shows in ``ps``, a variable's or a file's does not.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..local.models import DEFAULT_SMALL_MODEL
from ..serve.backends import DEFAULT_CONCURRENCY, DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL

if TYPE_CHECKING:
    from ..core.router import HybridRouter
    from ..serve.backends import ChatBackend


#: Environment variables read for secrets when no flag or file gives them.
SMALL_KEY_ENV = "HYBRID_LLM_SMALL_API_KEY"
LARGE_KEY_ENV = "HYBRID_LLM_LARGE_API_KEY"
SERVER_KEY_ENV = "HYBRID_LLM_API_KEY"


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
    large_spec = (
        args.large
        or os.environ.get("OPENAI_BASE_URL")
        or (DEFAULT_LARGE_URL if os.environ.get("OPENAI_API_KEY") else "local")
    )
    if large_spec.startswith(("http://", "https://")):
        model = args.large_model or os.environ.get("OPENAI_MODEL") or DEFAULT_LARGE_MODEL
        key = read_secret(args.large_api_key, args.large_api_key_file, LARGE_KEY_ENV) or os.environ.get(
            "OPENAI_API_KEY"
        )
        large = OpenAIBackend(large_spec, model, api_key=key, max_tokens=args.max_tokens, **limits)
    elif large_spec == "local" or large_spec.startswith("local:"):
        from ..local.models import model_display_name
        from ..local.server import LocalOpenAIServer

        name = large_spec.partition(":")[2] or DEFAULT_SMALL_MODEL
        log.info("starting a local OpenAI-compatible stand-in for the large model (%s; ~30-60 s) ...", name)
        server = stack.enter_context(LocalOpenAIServer(name, threads=args.threads))
        log.info("stand-in large model ready at %s", server.base_url)
        large = OpenAIBackend(
            server.base_url,
            server.model_name,
            name=f"{model_display_name(name)}@local-server",
            max_tokens=args.max_tokens,
            **limits,
        )
    else:
        raise ValueError(f"--large must be an http(s) URL or 'local[:MODEL]', got {large_spec!r}")
    for backend in (small, large):
        if hasattr(backend, "close"):
            stack.callback(backend.close)
    return small, large


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


def run(args: argparse.Namespace) -> int:
    """Bind the port, load everything, then serve until interrupted (SIGINT / SIGTERM)."""
    import uvicorn

    from ..serve.app import MAX_BODY_BYTES, RouterService, create_app

    api_key = read_secret(args.api_key, args.api_key_file, SERVER_KEY_ENV)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(listen(args.host, args.port))
        small, large = open_models(args, stack)
        router = load_router(args.router)
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
        host, port = sock.getsockname()[:2]
        print(
            f"serving on http://{host}:{port}/v1 (small: {small.name}, large: {large.name}"
            f"{', API key required' if api_key else ''})",
            file=sys.stderr,
            flush=True,
        )
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # uvicorn re-raises the stop signal after
        with contextlib.suppress(KeyboardInterrupt):  # shutting down: end normally, so the stack closes
            server.run(sockets=[sock])
    return 0

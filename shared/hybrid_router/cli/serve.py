"""``hybrid-llm serve --small URL_OR_LOCAL --large URL --router DIR --port N``: the router as an OpenAI endpoint."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
from typing import TYPE_CHECKING

from ..local.models import DEFAULT_SMALL_MODEL
from ..serve.backends import DEFAULT_LARGE_MODEL, DEFAULT_LARGE_URL

if TYPE_CHECKING:
    from ..core.router import HybridRouter
    from ..serve.backends import ChatBackend


def add_model_arguments(p: argparse.ArgumentParser, *, max_tokens: int) -> None:
    """The --small / --large / --router options shared by ``serve`` and ``demo``."""
    p.add_argument(
        "--small",
        default=DEFAULT_SMALL_MODEL,
        help=f"small model: a local model ({DEFAULT_SMALL_MODEL!r}, a Hugging Face id or a folder) or an "
        f"OpenAI-compatible base URL (default: {DEFAULT_SMALL_MODEL})",
    )
    p.add_argument("--small-model", default=None, help="model name to request when --small is a URL")
    p.add_argument("--small-api-key", default=None, help="API key when --small is a URL")
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
    p.add_argument("--large-api-key", default=None, help="API key for --large (default: $OPENAI_API_KEY)")
    p.add_argument("--router", default=None, help="router folder (default: the shipped router)")
    p.add_argument(
        "--max-tokens",
        type=int,
        default=max_tokens,
        help=f"max tokens per answer when the request sets none (default: {max_tokens})",
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
    if args.small.startswith(("http://", "https://")):
        if not args.small_model:
            raise ValueError("--small is a URL: give the model name with --small-model")
        small = OpenAIBackend(args.small, args.small_model, api_key=args.small_api_key)
    else:
        import torch

        torch.set_num_threads(args.threads)
        log.warning("loading the small model %s ...", args.small)
        small = LocalBackend(LocalChat.load(args.small, max_new_tokens=args.max_tokens))
    large_spec = (
        args.large
        or os.environ.get("OPENAI_BASE_URL")
        or (DEFAULT_LARGE_URL if os.environ.get("OPENAI_API_KEY") else "local")
    )
    if large_spec.startswith(("http://", "https://")):
        model = args.large_model or os.environ.get("OPENAI_MODEL") or DEFAULT_LARGE_MODEL
        large = OpenAIBackend(large_spec, model, api_key=args.large_api_key or os.environ.get("OPENAI_API_KEY"))
    elif large_spec == "local" or large_spec.startswith("local:"):
        from ..local.models import model_display_name
        from ..local.server import LocalOpenAIServer

        name = large_spec.partition(":")[2] or DEFAULT_SMALL_MODEL
        log.warning("starting a local OpenAI-compatible stand-in for the large model (%s; ~30-60 s) ...", name)
        server = stack.enter_context(LocalOpenAIServer(name, threads=args.threads))
        log.warning("stand-in large model ready at %s", server.base_url)
        large = OpenAIBackend(server.base_url, server.model_name, name=f"{model_display_name(name)}@local-server")
    else:
        raise ValueError(f"--large must be an http(s) URL or 'local[:MODEL]', got {large_spec!r}")
    for backend in (small, large):
        if hasattr(backend, "close"):
            stack.callback(backend.close)
    return small, large


def load_router(directory: str | None) -> HybridRouter:
    """The router in ``directory`` (default: the shipped one), with its encoder loaded."""
    from ..core.router import HybridRouter

    logging.getLogger("hybrid_router").warning("loading the router ...")
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
        "'hybrid:large'; or send quality_threshold in the body.",
    )
    add_model_arguments(p, max_tokens=256)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: 8000)")
    p.add_argument("--timeout", type=float, default=None, help="seconds to first output before falling back")
    p.add_argument("--no-fallback", action="store_true", help="answer 502 instead of asking the other model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load everything, then serve until interrupted."""
    import uvicorn

    from ..serve.app import RouterService, create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.ExitStack() as stack:
        small, large = open_models(args, stack)
        service = RouterService(
            load_router(args.router), small, large, timeout=args.timeout, fallback=not args.no_fallback
        )
        logging.getLogger("hybrid_router").warning(
            "serving on http://%s:%d/v1 (small: %s, large: %s)", args.host, args.port, small.name, large.name
        )
        uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0

"""Start and stop a real OpenAI-compatible server on 127.0.0.1 that serves a local model (``transformers serve``).

Used as a stand-in large model by the tests and ``hybrid-llm demo`` when no hosted endpoint is configured. The
server runs in a child process (chat completions, streaming and tool calls are transformers' own implementation);
requests must name :attr:`LocalOpenAIServer.model_name` in their ``model`` field. That name is a display name,
``<model>@local-server`` (e.g. ``smollm2-135m@local-server``), the same one the demo, the server, the examples, the
logs and cost keys show: ``transformers serve`` answers with the name it was started with, so it is started in a
temporary folder holding a link of that name to the model's folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from .models import DEFAULT_SMALL_MODEL, model_display_name, model_path

logger = logging.getLogger(__name__)

#: What the stand-in's display name adds to the model's own short name.
SERVED_SUFFIX = "@local-server"


class ServerStartError(RuntimeError):
    """The local server exited or did not answer its health check in time."""


def _die_with_parent() -> None:
    """In the child (Linux): receive SIGTERM when the parent process dies, so no server is left orphaned."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LocalOpenAIServer:
    """``transformers serve`` pinned to one local model, on ``host:port`` (a free port when ``port`` is None).

    Use as a context manager, or call :meth:`start` (returns without waiting), :meth:`wait_ready` and :meth:`stop`.
    ``threads`` caps the child's torch/OpenMP threads (1 suits a small shared CPU). On Linux the server is stopped
    when the thread that started it exits (so a killed test session leaves no server behind): start it from a
    long-lived thread.
    """

    def __init__(
        self,
        model: str = DEFAULT_SMALL_MODEL,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 300.0,
        threads: int = 1,
    ):
        self.model = model
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self.threads = threads
        self.model_path = model_path(model)
        self.model_name = model_display_name(model).replace("/", "--") + SERVED_SUFFIX
        self._process: subprocess.Popen[bytes] | None = None
        self._served: str | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> str | None:
        """The file that collects the server's output while it runs (removed by :meth:`stop`)."""
        return self._log.name if self._log else None

    def start(self) -> "LocalOpenAIServer":
        """Launch the server process (does not wait for it; see :meth:`wait_ready`)."""
        if self.running:
            return self
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS=str(self.threads),
            MKL_NUM_THREADS=str(self.threads),
            TOKENIZERS_PARALLELISM="false",
        )
        self._served = tempfile.mkdtemp(prefix="hybrid-llm-served-")
        os.symlink(self.model_path, os.path.join(self._served, self.model_name))
        command = [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            self.model_name,  # a folder, relative to cwd: the served name is the display name
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ]
        self._log = tempfile.NamedTemporaryFile(prefix="hybrid-llm-server-", suffix=".log", delete=False)
        logger.info("hybrid-llm: starting local OpenAI-compatible server for %s at %s", self.model, self.base_url)
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self._served,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> "LocalOpenAIServer":
        """Block until ``/health`` answers; :class:`ServerStartError` (with the log tail) if it dies or times out."""
        if self._process is None:
            raise ServerStartError("the server was not started")
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ServerStartError(f"server exited with status {self._process.returncode}:\n{self._log_tail()}")
            if self._healthy():
                logger.info("hybrid-llm: local server ready at %s", self.base_url)
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(f"server not ready after {self.startup_timeout:g}s:\n{self._log_tail()}")

    def _log_tail(self, chars: int = 3000) -> str:
        if not self._log:
            return ""
        return Path(self._log.name).read_bytes()[-chars:].decode("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the server (kill it if it does not exit within ``timeout`` seconds)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._served is not None:
            shutil.rmtree(self._served, ignore_errors=True)
            self._served = None
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> "LocalOpenAIServer":
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()

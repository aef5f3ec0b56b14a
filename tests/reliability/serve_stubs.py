"""Faulty OpenAI-compatible upstreams on 127.0.0.1, the router app on a real socket, and socket counting.

Used by the ``test_serve_*`` reliability tests and by ``benchmarks/soak.py``. The stub picks a behaviour from the
``model`` it is asked for (``"name:BEHAVIOUR"``) or, for a plain ``"name"``, from the first word of the last
message (so one backend can be asked to fail on purpose per request). Every response closes its connection.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

#: Behaviours: ok, pause (1 chunk, then one every 0.5 s for 10 s), late (pause, 2 s late), hang (30 s of
#: silence), nodone (2 chunks, then close without [DONE]), nodone_finished (a whole answer with its
#: finish_reason, then close without [DONE], as ``transformers serve`` does), foo ({"foo": "bar"}),
#: list ([1, 2, 3]), onlydone (only ``data: [DONE]`` / an empty body), echo401 (401 quoting the Authorization
#: header), err500, err400.
BEHAVIOURS = (
    "ok",
    "pause",
    "late",
    "hang",
    "nodone",
    "nodone_finished",
    "foo",
    "list",
    "onlydone",
    "echo401",
    "err500",
    "err400",
)


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "stub answer"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default 5 drops connections under load (a 1 s SYN retry each)


class StubUpstream:
    """A threaded HTTP server speaking (and breaking) the chat-completions protocol; records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.active = 0  # requests whose handler has not finished (an abandoned stream keeps one alive)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                stub._handle(self)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="stub-upstream")
        self._thread.start()

    def close(self) -> None:
        """Stop serving; sleeping handlers wake up and end."""
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StubUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.loads(handler.rfile.read(int(handler.headers["content-length"])))
        with self._lock:
            self.requests.append({"body": body, "authorization": handler.headers.get("authorization")})
            self.active += 1
        try:
            self._respond(handler, body)
        except OSError:  # the router closed the connection: what a correct client does when it gives up
            pass
        finally:
            with self._lock:
                self.active -= 1

    def behaviour(self, body: dict[str, Any]) -> str:
        """The behaviour a request asks for (see module docstring)."""
        fixed = str(body.get("model", "")).partition(":")[2]
        if fixed:
            return fixed
        content = body["messages"][-1].get("content") or ""
        word = content.split()[0] if isinstance(content, str) and content.split() else "ok"
        return word if word in BEHAVIOURS else "ok"

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("content-type", kind)
        handler.send_header("connection", "close")
        if kind == "application/json":
            handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def _sleep(self, handler: BaseHTTPRequestHandler, seconds: float) -> None:
        """Wait ``seconds``; ConnectionResetError as soon as the router closes the connection (or the stub stops)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            readable, _, _ = select.select([handler.connection], [], [], 0.05)
            if readable and not handler.connection.recv(1, socket.MSG_PEEK):
                raise ConnectionResetError("the router closed the upstream connection")

    def _respond(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        behaviour, model, stream = self.behaviour(body), str(body.get("model")), bool(body.get("stream"))
        errors = {
            "echo401": (401, {"error": {"message": f"Incorrect API key: {handler.headers.get('authorization')}"}}),
            "err500": (500, {"error": {"message": "upstream exploded"}}),
            "err400": (400, {"error": {"message": "bad request upstream"}}),
            "foo": (200, {"foo": "bar"}),
            "list": (200, [1, 2, 3]),
        }
        if behaviour == "hang":
            self._sleep(handler, 30)
            return
        if behaviour == "late":
            self._sleep(handler, 2)
        if behaviour in errors:
            status, payload = errors[behaviour]
            if stream and status == 200:
                self._send(
                    handler, 200, f"data: {json.dumps(payload)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream"
                )
            else:
                self._send(handler, status, json.dumps(payload).encode(), "application/json")
            return
        if not stream:
            payload = b"" if behaviour == "onlydone" else json.dumps(_completion(model)).encode()
            self._send(handler, 200, payload, "application/json")
            return
        self._stream(handler, behaviour, model)

    def _stream(self, handler: BaseHTTPRequestHandler, behaviour: str, model: str) -> None:
        self._send(handler, 200, b"", "text/event-stream")
        if behaviour == "onlydone":
            handler.wfile.write(b"data: [DONE]\n\n")
            return
        pieces = [_chunk(model, {"role": "assistant", "content": "stub"})]
        slow = behaviour in ("pause", "late")
        pieces += [_chunk(model, {"content": f" {i}"}) for i in range(20 if slow else 2)]
        for i, piece in enumerate(pieces):
            handler.wfile.write(piece)
            handler.wfile.flush()
            if behaviour == "nodone" and i == 1:
                return
            if slow:
                self._sleep(handler, 0.5)
        handler.wfile.write(
            _chunk(model, {}, "stop") + (b"" if behaviour == "nodone_finished" else b"data: [DONE]\n\n")
        )
        handler.wfile.flush()


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def connections_to(port: int) -> int:
    """Open TCP connections (any state but TIME_WAIT and LISTEN) from this machine to 127.0.0.1:``port``."""
    count = 0
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            remote_port, state = int(fields[2].split(":")[1], 16), fields[3]
            if remote_port == port and state not in ("06", "0A"):
                count += 1
    return count


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a thread on a free loopback port; yields the base URL (no ``/v1``)."""
    import uvicorn

    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="router-app")
    thread.start()
    assert wait_until(lambda: server.started, 30), "router app did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def disconnect_after_first_chunk(
    base_url: str, body: dict[str, Any], timeout: float = 10, headers: dict[str, str] | None = None
) -> bytes:
    """POST a streaming request on a raw socket, read until the first SSE event, close the socket; what was read."""
    host, port = base_url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head + payload)
        data = b""
        while b"\n\n" not in data.partition(b"data:")[2]:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    return data

"""A scriptable HTTP server on 127.0.0.1 for the acquisition tests.

Each path gets a script of :class:`Reply` objects, consumed one per request (the last one repeats),
so a test can say "500, then 200" or "cut the body off mid-way, then serve it whole". The server
counts hits per path and the peak number of requests in flight, runs in a daemon thread, and stops
(interrupting any deliberate delay) when its ``with`` block ends.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted answer."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                 # seconds to wait before answering (slow server)
    truncate_at: int | None = None     # announce the full length, send this many bytes, hang up
    content_length: bool = True        # send a Content-Length header
    location: str | None = None        # redirect target (with a 3xx status)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # server-side socket timeout, so a stuck client cannot hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        reply = self.server.owner.next_reply(self.path)
        self.server.owner.enter()
        try:
            self._answer(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): fine
        finally:
            self.server.owner.leave()

    def _answer(self, reply: Reply) -> None:
        if reply.delay and self.server.owner.stopping.wait(reply.delay):
            return
        self.send_response(reply.status)
        if reply.location:
            self.send_header("Location", self.server.owner.url(reply.location))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.content_length:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        body = reply.body if reply.truncate_at is None else reply.body[:reply.truncate_at]
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LocalServer

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - quiet
        pass


class LocalServer:
    """``with LocalServer() as server: server.route("/x", Reply(b"...")); server.url("/x")``."""

    def __init__(self) -> None:
        self._routes: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, *replies: Reply) -> str:
        """Script the answers for ``path`` (replacing any previous script); return its URL."""
        with self._lock:
            self._routes[path] = list(replies)
        return self.url(path)

    def body(self, path: str) -> bytes:
        """The body of the next scripted reply for ``path`` (to re-script it with variations)."""
        with self._lock:
            return self._routes[path][0].body

    def next_reply(self, path: str) -> Reply:
        with self._lock:
            self.hits[path] += 1
            script = self._routes.get(path)
            if not script:
                return Reply(b"not found", status=404)
            return script.pop(0) if len(script) > 1 else script[0]

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

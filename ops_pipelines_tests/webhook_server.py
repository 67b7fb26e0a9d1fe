"""A real HTTP webhook receiver on a free local port: answers a scripted list of statuses (then 200),
records every request, and can hang instead of answering (until the test ends)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG = "hang"


@dataclass
class Received:
    path: str
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class WebhookServer:
    url: str
    # What to answer, in order, before answering 200: a status, (status, headers), or HANG.
    script: list = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)


@contextmanager
def webhook_server(path: str = "/hooks/T0KEN-in-the-path", script: list | None = None) -> Iterator[WebhookServer]:
    server_state: WebhookServer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            server_state.received.append(Received(self.path, body))
            answer = server_state.script.pop(0) if server_state.script else 200
            if answer == HANG:
                server_state.released.wait()  # until the test is over: the client times out
                return
            status, headers = answer if isinstance(answer, tuple) else (answer, {})
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # keep test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server_state = WebhookServer(url=f"http://127.0.0.1:{httpd.server_port}{path}", script=list(script or []))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server_state.released.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def closed_port_url(path: str = "/hooks/T0KEN-in-the-path") -> str:
    """A URL on a local port nothing listens on: a webhook that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"

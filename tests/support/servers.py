"""Real HTTP servers on 127.0.0.1 for the tests: a free port, a background server for any handler, and one that
plays scripted answers (downloads, webhooks, a fixed /metrics page)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Answer:
    """One scripted response. `declared_length` larger than the body simulates a truncated transfer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/csv"
    delay: float = 0.0
    declared_length: int | None = None


@dataclass
class ScriptedServer:
    """Answers requests in order from `script`; the last answer repeats. Records every request."""

    script: list[Answer]
    url: str = ""
    requests: list[dict] = field(default_factory=list)

    def next_answer(self) -> Answer:
        index = min(len(self.requests) - 1, len(self.script) - 1)
        return self.script[index]


def _handler_for(server_state: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            server_state.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers), "body": self.rfile.read(length)})
            answer = server_state.next_answer()
            time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(answer.declared_length or len(answer.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                self.wfile.write(answer.body)
            if answer.declared_length:
                self.close_connection = True

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    return Handler


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> Iterator[ThreadingHTTPServer]:
    """Serve `handler` on a free port of `host` from a background thread for the duration of the block."""
    httpd = ThreadingHTTPServer((host, 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@contextmanager
def scripted_server(*script: Answer) -> Iterator[ScriptedServer]:
    """Serve `script` on a free port of 127.0.0.1 for the duration of the block."""
    state = ScriptedServer(list(script) or [Answer()])
    with serving(_handler_for(state)) as httpd:
        state.url = f"http://127.0.0.1:{httpd.server_port}/BreastCancer.csv"
        yield state

"""A local webhook receiver for tests: an http.server in a thread that records every request and
answers with the statuses it is told to (then 200), optionally after a delay."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0, headers: dict | None = None):
        self.statuses = list(statuses or [])  # answered in turn; 200 once they run out
        self.delay, self.extra_headers = delay, headers or {}
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                for name, value in receiver.extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/janus?token=t1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *_):
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, condition, timeout: float = 60) -> list[Received]:
        """Until condition(received) holds; returns what was received."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                received = list(self.received)
            if condition(received):
                return received
            time.sleep(0.05)
        raise TimeoutError(f"receiver got {[(r.headers.get('webhook-id'), r.json.get('status')) for r in received]}")


def readme_verifier():
    """The signature check README.md shows, executed as written: verify_webhook(secret, headers, body)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("```python\nimport base64, hashlib, hmac, time")
    block = text[start + len("```python\n"):text.index("```", start + 3)]
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README's example
    return namespace["verify_webhook"]

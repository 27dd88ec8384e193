"""A tiny local HTTP server answering from a script, for what a real stack cannot be made to do
on cue: a 429 or 503 with Retry-After, an event stream that drops in the middle."""
from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes


@dataclass
class ScriptedServer:
    """Each request takes the next step of `script` (a function of the handler); `seen` logs them."""

    script: deque = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def __enter__(self) -> "ScriptedServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                owner.seen.append(Seen(self.command, self.path, dict(self.headers), self.rfile.read(length)))
                step = owner.script.popleft() if owner.script else json_answer(500, {"error": {"code": "x"}})
                step(self)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def then(self, *steps: Callable) -> "ScriptedServer":
        self.script.extend(steps)
        return self


def json_answer(status: int, body, headers: dict | None = None) -> Callable:
    def step(handler: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
    return step


def error(status: int, code: str, headers: dict | None = None, field: str | None = None) -> Callable:
    return json_answer(status, {"error": {"code": code, "message": f"{code} happened", "field": field}}, headers)


def event_stream(text: str, drop: bool = False) -> Callable:
    """`text` as a chunked text/event-stream; with `drop`, the connection is cut in the middle of
    a chunk (what a dying proxy does), else the chunked body ends cleanly."""
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        data = text.encode()
        handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        if drop:
            handler.wfile.write(b"400\r\npartial")  # promises 1024 bytes, sends 7, hangs up
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(2)
        else:
            handler.wfile.write(b"0\r\n\r\n")
    return step


def no_content(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(204)
    handler.end_headers()


def job(job_id: str = "j1", status: str = "queued", **extra) -> dict:
    return {"id": job_id, "type": "generate", "status": status, "progress": 0.0, "params": {"seed": 3},
            "created_at": "2026-11-27T00:00:00Z", "metrics": {}, "error": None, "result": None, **extra}

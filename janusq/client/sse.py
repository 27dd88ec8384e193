"""Server-sent events: parsing a text/event-stream, and following one job's stream across drops.

A job's stream (GET /v1/jobs/<id>/events) ends with an event named `completed`. A stream that
ends before it (the connection dropped, a proxy timed out, the API process was full and
declined it) is reopened with Last-Event-ID, so no event is lost or repeated; the server's
`retry:` says how long to wait first.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import urllib3

from janusq.client.errors import ConnectionFailedError, RateLimitedError, UnavailableError

COMPLETED = "completed"
DEFAULT_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 30.0
# Reconnects in a row that bring no event before giving up: a dead server is not waited on forever.
MAX_FRUITLESS_RECONNECTS = 5
# A dropped or timed-out connection, a 503 or 429: worth reconnecting (a 404 or 401 is not).
RETRYABLE = (ConnectionFailedError, UnavailableError, RateLimitedError, urllib3.exceptions.HTTPError)


@dataclass(frozen=True)
class Event:
    """One event: `type` status, progress, output, preview or completed; `data` its JSON."""

    id: str | None
    type: str
    data: Any


@dataclass(frozen=True)
class Retry:
    """A `retry:` field: reconnect after this many seconds."""

    seconds: float


Heartbeat = None  # what parse_stream yields for a comment (`: ping`): time passes, nothing happened


def parse_stream(lines: Iterable[bytes]) -> Iterator[Event | Retry | None]:
    """Events from the lines of a text/event-stream (the WHATWG rules this API needs: `data`
    lines joined with newlines, comments, `retry`); yields None for each comment line."""
    fields: dict[str, str] = {}
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield Event(fields.get("id"), fields.get("event") or "message", _decode("\n".join(data)))
            fields, data = {}, []
        elif line.startswith(":"):
            yield Heartbeat
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "retry" and value.isdigit():
                yield Retry(int(value) / 1000)
            else:
                fields[name] = value


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


class JobEvents:
    """Iterates one job's events to its `completed`, reconnecting with Last-Event-ID.

    `open(last_event_id)` returns a streaming response, or None when the server says there is
    nothing more (204). Yields Events, and None for heartbeats when `heartbeats` (wait() uses
    them to look at its clock)."""

    def __init__(self, open_stream: Callable[[str | None], Any], sleep: Callable[[float], None],
                 last_event_id: str | None = None, heartbeats: bool = False):
        self.open_stream, self.sleep = open_stream, sleep
        self.last_event_id, self.heartbeats = last_event_id, heartbeats
        self.retry_seconds = DEFAULT_RETRY_SECONDS
        self.ended = False

    def __iter__(self) -> Iterator[Event | None]:
        fruitless = 0
        while True:
            got_event, asked = False, 0.0
            try:
                for item in self._one_connection():
                    got_event = got_event or isinstance(item, Event)
                    if isinstance(item, Event) or self.heartbeats:
                        yield item
                    if isinstance(item, Event) and item.type == COMPLETED:
                        return
                if self.ended:
                    return
            except RETRYABLE as exc:
                asked = getattr(exc, "retry_after", None) or 0.0  # a 429's or 503's Retry-After
            fruitless = 0 if got_event else fruitless + 1
            if fruitless > MAX_FRUITLESS_RECONNECTS:
                raise ConnectionFailedError(f"the event stream failed {fruitless} times in a row without "
                                            "an event", code="stream_failed")
            if self.heartbeats:
                yield Heartbeat  # the caller may look at its clock before the pause and reconnect
            self.sleep(min(max(self.retry_seconds, asked), MAX_RETRY_SECONDS))

    def _one_connection(self) -> Iterator[Event | None]:
        response = self.open_stream(self.last_event_id)
        if response is None:  # 204: the server has sent this stream's end already
            self.ended = True
            return
        try:
            for item in parse_stream(_lines(response)):
                if isinstance(item, Retry):
                    self.retry_seconds = min(item.seconds, MAX_RETRY_SECONDS)
                    continue
                if isinstance(item, Event) and item.id:
                    self.last_event_id = item.id
                yield item
        finally:
            # close, not release: a stream left half-read must not go back to the pool.
            response.close()


def _lines(response) -> Iterator[bytes]:
    """The response's lines as they arrive (urllib3's iteration would wait for a full chunk)."""
    buffer = b""
    while True:
        chunk = response.read1(65536)  # what has arrived, up to 64 KiB; b"" at the end
        if not chunk:
            if buffer:
                yield buffer
            return
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for line in complete:
            yield line + b"\n"

"""A small server-sent-events client for the tests: what an EventSource does, over requests."""
from __future__ import annotations

import json

import requests


def read_events(url: str, headers: dict | None = None, last_event_id: str | None = None, stop_after: int | None = None,
                timeout: float = 120) -> list[dict]:
    """The events of one connection, as {"id", "event", "data"} (data parsed as JSON), until the
    server closes it or `stop_after` events came (then the client drops the connection)."""
    headers = {"Accept": "text/event-stream", **(headers or {})}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict] = []
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        assert response.headers["Content-Type"].startswith("text/event-stream")
        fields: dict = {}
        for line in response.iter_lines(decode_unicode=True):
            if line == "":
                if "data" in fields:
                    events.append({"id": fields.get("id"), "event": fields.get("event", "message"),
                                   "data": json.loads(fields["data"])})
                    if stop_after is not None and len(events) >= stop_after:
                        return events
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value
    return events

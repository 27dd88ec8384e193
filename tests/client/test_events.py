"""The event stream: parsing, and reconnecting with Last-Event-ID after a drop or a declined
stream, against a scripted local server that cuts connections on cue."""
from __future__ import annotations

import json
import time

import pytest

from janusq.client import Client, ConnectionFailedError, WaitTimeoutError
from janusq.client.sse import Event, Retry, parse_stream
from tests.client.scripted import ScriptedServer, event_stream, job, json_answer, no_content


def _sse(event_id: str, kind: str, data: dict) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n"


RUNNING = _sse("1-0", "status", {"status": "running"})
HALF = _sse("2-0", "progress", {"progress": 0.5, "step": 288, "steps": 576})
DONE = _sse("completed", "completed", job(status="succeeded", result={"text": "a fox"}, type="understand"))


def test_parse_stream_follows_the_rules_the_api_uses():
    lines = [b"retry: 2500\n", b"\n", b": ping\n", b"id: 7-0\n", b"event: output\n", b'data: {"text":\n',
             b'data: "hi"}\n', b"\n", b"data: plain\r\n", b"\r\n"]
    assert list(parse_stream(lines)) == [Retry(2.5), None, Event("7-0", "output", {"text": "hi"}),
                                         Event(None, "message", "plain")]


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


def _handle(server, status="running"):
    server.then(json_answer(200, job(status=status)))
    client = Client(server.url)
    slept: list[float] = []
    client.backoff.sleep = slept.append
    return client.jobs.handle("j1"), slept


def test_a_dropped_stream_is_reopened_after_the_last_event_it_delivered(server):
    handle, slept = _handle(server)
    server.then(event_stream("retry: 50\n\n" + RUNNING + HALF, drop=True), event_stream(DONE))
    events = list(handle.events())
    assert [(e.id, e.type) for e in events] == [("1-0", "status"), ("2-0", "progress"), ("completed", "completed")]
    assert "Last-Event-ID" not in server.seen[1].headers
    assert server.seen[2].headers["Last-Event-ID"] == "2-0"
    assert slept == [0.05]  # the server's retry: hint
    assert handle.job.status == "succeeded" and handle.job.answer == "a fox"  # from `completed`


def test_a_stream_that_ends_without_completed_is_reopened_too(server):
    # What an API process over its cap sends: the events so far, a comment, the end.
    handle, _ = _handle(server)
    server.then(event_stream(RUNNING + ": declined: reconnect\n\n"), event_stream(HALF), event_stream(DONE))
    assert [e.type for e in handle.events()] == ["status", "progress", "completed"]
    assert [seen.headers.get("Last-Event-ID") for seen in server.seen[1:]] == [None, "1-0", "2-0"]


def test_204_ends_the_stream(server):
    handle, _ = _handle(server)
    server.then(no_content)
    assert list(handle.events(last_event_id="completed")) == []


def test_a_dead_server_is_not_waited_on_forever(server):
    handle, slept = _handle(server)
    server.then(*[event_stream("", drop=True)] * 10)
    with pytest.raises(ConnectionFailedError):
        list(handle.events())
    assert len(slept) == 5  # MAX_FRUITLESS_RECONNECTS pauses, then it gives up


def test_wait_returns_the_completed_job(server):
    handle, _ = _handle(server)
    server.then(event_stream(RUNNING + HALF + DONE))
    assert handle.wait(timeout=30).status == "succeeded"


def test_wait_times_out_on_a_silent_stream(server):
    handle, _ = _handle(server)

    def silent(handler):  # headers, then nothing: a job that takes long
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        handler.wfile.flush()
        time.sleep(2)

    server.then(silent, json_answer(200, job(status="running", progress=0.25)))
    with pytest.raises(WaitTimeoutError) as raised:
        handle.wait(timeout=0.5)
    assert raised.value.job.progress == 0.25 and raised.value.code == "timeout"

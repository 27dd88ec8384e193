"""Retries after 429 and 503 (Retry-After, capped backoff), typed errors, idempotent submits,
cursor paging: against a scripted local server."""
from __future__ import annotations

import json
import socket
from email.utils import formatdate

import pytest

from janusq.client import (
    Client,
    ConnectionFailedError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from janusq.client.http import parse_retry_after
from tests.client.scripted import ScriptedServer, error, job, json_answer


@pytest.fixture
def server():
    with ScriptedServer() as scripted:
        yield scripted


def _client(server, **kwargs) -> tuple[Client, list[float]]:
    client = Client(server.url, "jq_test", **kwargs)
    slept: list[float] = []
    client.backoff.sleep = slept.append  # record the pauses instead of taking them
    return client, slept


def test_429_and_503_are_retried_after_their_retry_after(server):
    server.then(error(429, "rate_limited", {"Retry-After": "3"}),
                error(503, "unavailable", {"Retry-After": "1"}),
                json_answer(200, job(status="succeeded")))
    client, slept = _client(server)
    assert client.jobs.get("j1").status == "succeeded"
    assert slept == [3.0, 1.0]
    assert [seen.headers["Authorization"] for seen in server.seen] == ["Bearer jq_test"] * 3


def test_a_long_retry_after_is_capped(server):
    server.then(error(503, "unavailable", {"Retry-After": "3600"}), json_answer(200, job()))
    client, slept = _client(server, max_backoff=7)
    client.jobs.get("j1")
    assert slept == [7]


def test_without_retry_after_the_backoff_grows_exponentially_within_the_cap(server):
    server.then(*[error(503, "unavailable")] * 4, json_answer(200, job()))
    client, slept = _client(server, max_backoff=1.5)
    client.jobs.get("j1")
    assert 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0 and all(pause <= 1.5 for pause in slept)
    assert slept[3] >= 0.75  # 0.5 * 2**3 = 4, capped at 1.5, jittered down to half at most


def test_retries_run_out_into_a_typed_error_with_the_apis_code(server):
    server.then(*[error(429, "too_many_unfinished_jobs", {"Retry-After": "5"})] * 3)
    client, slept = _client(server, max_retries=2)
    with pytest.raises(RateLimitedError) as raised:
        client.submit("generate", prompt="a fox")
    assert raised.value.code == "too_many_unfinished_jobs" and raised.value.status == 429
    assert raised.value.retry_after == 5 and slept == [5, 5]
    # One Idempotency-Key for all three tries: a retried submit can never make a second job.
    keys = {seen.headers["Idempotency-Key"] for seen in server.seen}
    assert len(keys) == 1 and len(server.seen) == 3


@pytest.mark.parametrize("status, code, cls", [(404, "not_found", NotFoundError),
                                                (422, "validation_error", ValidationError),
                                                (500, "internal_error", UnavailableError)])
def test_errors_are_typed_by_status_and_keep_code_message_and_field(server, status, code, cls):
    server.then(error(status, code, field="prompt"))
    client, slept = _client(server)
    with pytest.raises(cls) as raised:
        client.jobs.get("j1")
    assert (raised.value.code, raised.value.status, raised.value.field) == (code, status, "prompt")
    assert raised.value.message == f"{code} happened" and slept == []  # only 429 and 503 are retried


def test_a_non_api_error_body_still_gives_a_typed_error(server):
    def html(handler):
        handler.send_response(502)
        handler.send_header("Content-Length", "18")
        handler.end_headers()
        handler.wfile.write(b"<h1>Bad Gateway</h1>"[:18])
    server.then(html)
    client, _ = _client(server)
    with pytest.raises(UnavailableError) as raised:
        client.jobs.get("j1")
    assert raised.value.code == "http_502" and raised.value.status == 502


def test_connection_refused_is_a_connection_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}", max_retries=1)
    client.backoff.sleep = lambda _: None
    with pytest.raises(ConnectionFailedError) as raised:
        client.jobs.get("j1")
    assert raised.value.code == "connection_error" and "refused" in str(raised.value).lower()


def test_list_follows_the_cursor_and_stops_at_the_limit(server):
    server.then(json_answer(200, {"data": [job("a"), job("b")], "next_cursor": "c1"}),
                json_answer(200, {"data": [job("c"), job("d")], "next_cursor": "c2"}),
                json_answer(200, {"data": [job("e")], "next_cursor": None}))
    client, _ = _client(server)
    assert [j.id for j in client.jobs.list(status="succeeded", page_size=2)] == list("abcde")
    assert server.seen[0].path == "/v1/jobs?status=succeeded&limit=2"
    assert server.seen[1].path.endswith("&cursor=c1") and server.seen[2].path.endswith("&cursor=c2")
    server.then(json_answer(200, {"data": [job("a"), job("b")], "next_cursor": "c1"}))
    assert [j.id for j in client.jobs.list(limit=2)] == ["a", "b"] and len(server.seen) == 4


def test_understand_uploads_the_image_as_multipart_and_asks_to_wait(server, tmp_path):
    answer = job(status="succeeded", type="understand", result={"text": "a red square"})
    server.then(json_answer(200, answer))
    client, _ = _client(server)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG fake")
    result = client.understand(photo, "what is it?", max_new_tokens=8, timeout=20)
    assert result.answer == "a red square" and result.kind == "understand"
    sent = server.seen[0]
    assert sent.headers["Prefer"] == "wait=20" and sent.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="image"; filename="photo.png"' in sent.body and b"\x89PNG fake" in sent.body
    assert b'name="max_new_tokens"\r\n\r\n8\r\n' in sent.body and b"temperature" not in sent.body


def test_the_job_shape(server):
    server.then(json_answer(200, job(status="failed", error={"code": "model_error", "message": "boom"},
                                     metrics={"queue_seconds": 0.5, "run_seconds": 2.0})))
    client, _ = _client(server)
    failed = client.jobs.get("j1")
    assert (failed.error.code, failed.error.message, failed.seed) == ("model_error", "boom", 3)
    assert failed.timings.queue_seconds == 0.5 and failed.done and not failed.succeeded
    assert failed.raw["params"] == {"seed": 3} and json.dumps(failed.raw)


def test_retry_after_as_an_http_date():
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    import time
    assert 50 <= parse_retry_after(formatdate(time.time() + 60, usegmt=True)) <= 61

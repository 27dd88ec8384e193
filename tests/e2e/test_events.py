"""GET /v1/jobs/<id>/events against the real service (issue 10, items 1 and 3).

`janusq serve` (gunicorn) and a `janusq worker` on PostgreSQL and Redis (events in Redis
streams), with auth on and two tenants; the simulated model, so that jobs take a few seconds
without torch. An HTTP client reads the streams, drops a connection on purpose and reconnects
with Last-Event-ID. The embedded stack (SQLite, events in the job_events table) is covered at
the end with the tiny model.
"""
from __future__ import annotations

import base64
import io
import time
import uuid

import numpy as np

import pytest
import requests
from PIL import Image

from jobs.db import Database
from jobs.keys import create_key
from tests.e2e.conftest import embedded_env
from tests.e2e.helpers import data_url, png_bytes
from tests.e2e.sse import read_events
from tests.e2e.stack import TERMINAL, Stack
from tests.pgdb import fresh_database

MODEL = "simulated:h200-janus-1.3b?scale=2"
GENERATE = {"type": "generate", "prompt": "a lighthouse at dusk", "num_images": 2}
UNDERSTAND = {"type": "understand", "question": "What is in this picture?", "image": data_url(png_bytes()),
              "max_new_tokens": 1000}


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def served(request, tmp_path_factory, redis_url):
    """(stack, key of tenant a, key of tenant b)."""
    with fresh_database("janusq_e2e_events") as database_url:
        keys = [_make_key(database_url, tenant) for tenant in ("a", "b")]
        env = {"JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")), "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": MODEL, "JANUS_AUTH": "on",
               "JANUS_PROGRESS_INTERVAL": "0.2", "JANUS_EVENTS_HEARTBEAT": "1",
               "JANUS_MAX_BATCH_IMAGES": "16",
               "JANUS_API_WORKER_CLASS": request.param, "JANUS_API_WORKERS": "2"}
        stack = Stack(env, tmp_path_factory.mktemp(f"logs-{request.param}"))
        try:
            yield stack.start(workers=1), *keys
        finally:
            stack.stop()


def _make_key(database_url: str, tenant: str) -> str:
    db = Database(database_url, pooled=False)
    with db.session() as session:
        secret = create_key(session, f"events-{uuid.uuid4().hex[:6]}", tenant=tenant).secret
    db.dispose()
    return secret


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _submit(stack: Stack, key: str, body: dict) -> str:
    response = requests.post(stack.base_url + "/v1/jobs", json=body, headers=_auth(key), timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _job(stack: Stack, job_id: str, key: str) -> dict:
    response = requests.get(f"{stack.base_url}/v1/jobs/{job_id}", headers=_auth(key), timeout=10)
    response.raise_for_status()
    return response.json()


def _wait(stack: Stack, job_id: str, key: str) -> dict:
    deadline = time.monotonic() + 60
    while (job := _job(stack, job_id, key))["status"] not in TERMINAL:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    return job


def _unsigned(job: dict) -> dict:
    """The job with its image URLs' signed query cut off."""
    images = [{**image, "url": image["url"].partition("?")[0]} for image in job["result"]["images"]]
    return {**job, "result": {**job["result"], "images": images}}


def _events_url(stack: Stack, job_id: str) -> str:
    return f"{stack.base_url}/v1/jobs/{job_id}/events"


def test_a_reconnecting_client_gets_every_event_once_in_order(served):
    stack, key, _ = served
    job_id = _submit(stack, key, GENERATE)
    first = read_events(_events_url(stack, job_id), _auth(key), stop_after=3)  # then drops the connection
    rest = read_events(_events_url(stack, job_id), _auth(key), last_event_id=first[-1]["id"])
    seen = first + rest
    history = read_events(_events_url(stack, job_id), _auth(key))  # after the end: all of it at once

    assert [event["id"] for event in seen] == [event["id"] for event in history], stack.logs()
    assert len({event["id"] for event in seen}) == len(seen)
    kinds = [event["event"] for event in seen]
    assert kinds[-1] == "completed" and kinds.count("completed") == 1
    statuses = [event["data"]["status"] for event in seen if event["event"] == "status"]
    assert statuses == ["running", "succeeded"]
    steps = [event["data"]["step"] for event in seen if event["event"] == "progress"]
    assert len(steps) >= 3 and steps == sorted(steps), steps
    completed = seen[-1]["data"]
    # Exactly as GET returns it, but for the signed URLs' expiry, which a GET a step later renews.
    assert _unsigned(completed) == _unsigned(_job(stack, job_id, key))
    assert completed["status"] == "succeeded" and len(completed["result"]["images"]) == 2


def test_an_answer_streams_as_output_events_that_end_as_the_answer(served):
    stack, key, _ = served
    # The three queue behind a job that keeps the one worker busy, so they run as one batch
    # whatever this machine's load (submitted to an idle worker, the first could start alone).
    blocker = _submit(stack, key, {**GENERATE, "num_images": 16})
    while _job(stack, blocker, key)["status"] == "queued":
        time.sleep(0.05)
    job_ids = [_submit(stack, key, UNDERSTAND) for _ in range(3)]
    requests.post(f"{stack.base_url}/v1/jobs/{blocker}/cancel", headers=_auth(key), timeout=10)
    for job_id in job_ids:
        events = read_events(_events_url(stack, job_id), _auth(key))
        texts = [event["data"]["text"] for event in events if event["event"] == "output"]
        answer = events[-1]["data"]["result"]["text"]
        assert len(texts) >= 3, [event["event"] for event in events]
        assert texts[-1] == answer
        assert all(answer.startswith(text) for text in texts) and texts == sorted(texts, key=len)
        assert [event["event"] for event in events][-3:] == ["output", "status", "completed"]
    assert events[-1]["data"]["result"]["batch"]["jobs"] >= 2  # they did run together


def test_the_stream_of_a_finished_job_is_its_history_then_completed(served):
    stack, key, _ = served
    job_id = _submit(stack, key, GENERATE)
    final = _wait(stack, job_id, key)
    events = read_events(_events_url(stack, job_id), _auth(key), timeout=5)
    assert events[-1] == {"id": "completed", "event": "completed", "data": final}
    after_last = read_events(_events_url(stack, job_id), _auth(key), last_event_id=events[-2]["id"], timeout=5)
    assert [event["event"] for event in after_last] == ["completed"]
    again = requests.get(_events_url(stack, job_id), headers={**_auth(key), "Last-Event-ID": "completed",
                                                               "Accept": "text/event-stream"}, timeout=5)
    assert again.status_code == 204  # an EventSource stops reconnecting


def test_a_canceled_queued_job_ends_its_stream(served):
    stack, key, _ = served
    blocker = _submit(stack, key, {**GENERATE, "num_images": 16})  # keeps the one worker busy
    while _job(stack, blocker, key)["status"] == "queued":
        time.sleep(0.05)
    job_id = _submit(stack, key, {**GENERATE, "num_images": 16})  # a batch of 16 images at most: it waits
    requests.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", headers=_auth(key), timeout=10)
    events = read_events(_events_url(stack, job_id), _auth(key), timeout=10)
    assert [event["event"] for event in events] == ["status", "completed"]
    assert events[0]["data"]["status"] == events[1]["data"]["status"] == "canceled"
    requests.post(f"{stack.base_url}/v1/jobs/{blocker}/cancel", headers=_auth(key), timeout=10)


def test_another_tenants_job_and_bad_requests(served):
    stack, key, other = served
    job_id = _submit(stack, key, GENERATE)
    url = _events_url(stack, job_id)
    sse = {"Accept": "text/event-stream"}
    assert requests.get(url, headers={**_auth(other), **sse}, timeout=5).status_code == 404
    assert requests.get(url, headers=sse, timeout=5).status_code == 401
    refused = requests.get(url, headers={**_auth(key), "Accept": "application/json"}, timeout=5)
    assert refused.status_code == 406 and refused.json()["error"]["code"] == "not_acceptable"
    bad_id = requests.get(url, headers={**_auth(key), **sse, "Last-Event-ID": "'; drop"}, timeout=5)
    assert bad_id.status_code == 422 and bad_id.json()["error"]["field"] == "Last-Event-ID"
    _wait(stack, job_id, key)


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory, tiny_checkpoint):
    """`make run`'s configuration (SQLite, kombu's SQLAlchemy transport, a local folder), with
    progress written every 0.1 s so that every preview of a short CPU generation goes out."""
    env = {**embedded_env(tmp_path_factory, tiny_checkpoint), "JANUS_PROGRESS_INTERVAL": "0.1"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


def test_the_embedded_stack_streams_from_its_database(embedded_stack):
    """SQLite, no Redis: the events are rows of job_events; the tiny model runs on the CPU."""
    job_id = embedded_stack.submit(type="generate", prompt="a red fox", num_images=1).json()["id"]
    first = read_events(_events_url(embedded_stack, job_id), stop_after=2)
    rest = read_events(_events_url(embedded_stack, job_id), last_event_id=first[-1]["id"])
    events = first + rest
    history = read_events(_events_url(embedded_stack, job_id))
    assert [event["id"] for event in events] == [event["id"] for event in history]
    assert [event["data"]["status"] for event in events if event["event"] == "status"] == ["running", "succeeded"]
    assert any(event["event"] == "progress" for event in events)
    assert events[-1]["data"] == embedded_stack.job(job_id)
    _check_previews(embedded_stack, job_id, [event["data"] for event in events if event["event"] == "preview"])


def _check_previews(stack: Stack, job_id: str, previews: list[dict]) -> None:
    """JPEGs that show more of the final image as the tokens come."""
    assert len(previews) >= 4, [preview["tokens"] for preview in previews]
    tokens = [preview["tokens"] for preview in previews]
    assert tokens == sorted(set(tokens)) and tokens[-1] < 576
    final = Image.open(io.BytesIO(requests.get(f"{stack.base_url}/v1/jobs/{job_id}/images/0", timeout=10).content))
    final = np.asarray(final.convert("RGB").resize((24, 24), Image.BILINEAR), dtype=float)
    distances, flat = [], []
    for preview in previews:
        [image] = preview["images"]
        assert image["index"] == 0 and image["url"].startswith("data:image/jpeg;base64,")
        jpeg = Image.open(io.BytesIO(base64.b64decode(image["url"].split(",", 1)[1])))
        assert jpeg.format == "JPEG" and jpeg.size == (192, 192)
        shown = np.asarray(jpeg.convert("RGB").resize((24, 24), Image.BILINEAR), dtype=float)
        # Rows not drawn yet are the neutral code's colour; drawn rows follow the final image's colours.
        drawn = max(1, preview["tokens"] // 24)
        distances.append(np.abs(shown[:drawn] - final[:drawn]).mean())
        undrawn = shown[drawn + 2:]  # (the row being drawn and the scaling blur its edge)
        if len(undrawn):
            flat.append(undrawn.reshape(-1, 3).std(axis=0).max())  # per channel
    print("previews: drawn rows' distance to the final image", distances, "undrawn rows' spread", flat)
    assert max(distances) < 40, distances
    assert max(flat) < 4, flat  # not drawn yet: one neutral colour, so each preview shows more

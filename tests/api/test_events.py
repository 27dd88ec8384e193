"""The event stream's API side (api/events.py) on PostgreSQL with the job_events table: a waiting
stream holds no database connection and sends heartbeats, ends when its job does, and a stream
beyond the process's cap is declined at once."""
from __future__ import annotations

import threading
import time

from tests.api.conftest import bearer

JOB = {"type": "generate", "prompt": "a lighthouse", "num_images": 1}
SSE = {"Accept": "text/event-stream"}


def _submit(api, key) -> str:
    response = api.client.post("/v1/jobs", json=JOB, headers=bearer(key))
    assert response.status_code == 202
    return response.get_json()["id"]


def test_a_waiting_stream_holds_no_connection_and_ends_with_its_job(make_api, new_key):
    api, key = make_api(events_heartbeat=0.2), new_key()
    job_id = _submit(api, key)
    response = api.client.get(f"/v1/jobs/{job_id}/events", headers={**bearer(key), **SSE}, buffered=False)
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(chunk.decode() for chunk in response.response))
    reader.start()
    time.sleep(1.0)
    pool = api.app.extensions["janus"].db.engine.pool
    assert pool.checkedout() == 0  # parked on an Event, not on the database
    assert chunks.count(": ping\n\n") >= 3
    assert api.client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(key)).status_code == 200
    reader.join(timeout=5)
    assert not reader.is_alive()
    body = "".join(chunks)
    assert 'event: status\ndata: {"status":"canceled"' in body
    assert body.rstrip().splitlines()[-3:-1] == ["id: completed", "event: completed"]


def test_a_stream_beyond_the_cap_is_declined_with_what_there_is(make_api, new_key):
    api, key = make_api(max_waiting_requests=0), new_key()
    job_id = _submit(api, key)
    body = api.client.get(f"/v1/jobs/{job_id}/events", headers={**bearer(key), **SSE}).get_data(as_text=True)
    assert ": declined" in body and "event: completed" not in body
    api.client.post(f"/v1/jobs/{job_id}/cancel", headers=bearer(key))
    body = api.client.get(f"/v1/jobs/{job_id}/events", headers={**bearer(key), **SSE}).get_data(as_text=True)
    assert "event: status" in body and body.rstrip().endswith("}") and "event: completed" in body

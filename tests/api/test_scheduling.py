"""Deadlines and priorities on create and retry (issue 13): Cancel-After, deadline_seconds, priority."""
from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import update

from jobs.lifecycle import MAX_DEADLINE_SECONDS
from jobs.models import Job
from tests.api.conftest import bearer

GENERATE = {"type": "generate", "prompt": "a fox", "num_images": 1}


@pytest.fixture
def api_and_key(make_api, new_key, tenant):
    return make_api(), bearer(new_key(tenant("sched")))


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _deadline_seconds(job: dict) -> float:
    return (_stamp(job["deadline_at"]) - _stamp(job["created_at"])).total_seconds()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _row(api, job_id: str) -> Job:
    with api.db.session() as session:
        return session.get(Job, job_id)


def test_without_either_a_job_is_normal_priority_with_no_deadline(api_and_key):
    api, key = api_and_key
    job = api.client.post("/v1/jobs", json=GENERATE, headers=key).json
    assert (job["priority"], job["deadline_at"]) == ("normal", None)
    assert "priority" not in job["params"] and "deadline_seconds" not in job["params"]
    assert _row(api, job["id"]).priority == 1


def test_priority_and_deadline_from_the_json_body(api_and_key):
    api, key = api_and_key
    response = api.client.post("/v1/jobs", json={**GENERATE, "priority": "high", "deadline_seconds": 30},
                               headers=key)
    assert response.status_code == 202, response.json
    job = response.json
    assert job["priority"] == "high" and _deadline_seconds(job) == 30
    assert _row(api, job["id"]).priority == 2
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=key).json["deadline_at"] == job["deadline_at"]


def test_deadline_from_the_cancel_after_header(api_and_key):
    api, key = api_and_key
    job = api.client.post("/v1/jobs", json={**GENERATE, "priority": "low"},
                          headers={**key, "Cancel-After": "60"}).json
    assert job["priority"] == "low" and _deadline_seconds(job) == 60
    # Both may say it, if they agree.
    same = api.client.post("/v1/jobs", json={**GENERATE, "deadline_seconds": 45},
                           headers={**key, "Cancel-After": "45"})
    assert same.status_code == 202 and _deadline_seconds(same.json) == 45


def test_priority_and_deadline_as_multipart_fields(api_and_key):
    api, key = api_and_key
    form = {"type": "understand", "question": "What is it?", "priority": "high", "deadline_seconds": "90",
            "image": (io.BytesIO(_png()), "x.png")}
    response = api.client.post("/v1/jobs", data=form, headers=key, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    assert response.json["priority"] == "high" and _deadline_seconds(response.json) == 90


BAD_BODIES = [
    ("unknown priority", {"priority": "urgent"}, "priority"),
    ("priority as a number", {"priority": 2}, "priority"),
    ("zero deadline", {"deadline_seconds": 0}, "deadline_seconds"),
    ("negative deadline", {"deadline_seconds": -5}, "deadline_seconds"),
    ("fractional deadline", {"deadline_seconds": 1.5}, "deadline_seconds"),
    ("deadline as text", {"deadline_seconds": "30"}, "deadline_seconds"),
    ("deadline as a boolean", {"deadline_seconds": True}, "deadline_seconds"),
    ("deadline over the maximum", {"deadline_seconds": MAX_DEADLINE_SECONDS + 1}, "deadline_seconds"),
]


@pytest.mark.parametrize("name, extra, field", BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_body_values_are_refused_and_create_nothing(api_and_key, name, extra, field):
    api, key = api_and_key
    count, messages = api.job_count(), api.broker_messages()
    response = api.client.post("/v1/jobs", json={**GENERATE, **extra}, headers=key)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_error" and response.json["error"]["field"] == field
    assert (api.job_count(), api.broker_messages()) == (count, messages)


@pytest.mark.parametrize("header", ["0", "-1", "1.5", "soon", "", "١٢", str(MAX_DEADLINE_SECONDS + 1),
                                    "99999999999999999999999"])
def test_bad_cancel_after_headers_are_refused_and_create_nothing(api_and_key, header):
    api, key = api_and_key
    count, messages = api.job_count(), api.broker_messages()
    response = api.client.post("/v1/jobs", json=GENERATE, headers={**key, "Cancel-After": header})
    assert response.status_code == 422, response.json
    assert response.json["error"] == {"code": "validation_error", "field": "Cancel-After",
                                      "message": response.json["error"]["message"]}
    assert "whole seconds" in response.json["error"]["message"]
    assert (api.job_count(), api.broker_messages()) == (count, messages)


def test_a_header_and_body_that_disagree_are_refused(api_and_key):
    api, key = api_and_key
    count = api.job_count()
    response = api.client.post("/v1/jobs", json={**GENERATE, "deadline_seconds": 30},
                               headers={**key, "Cancel-After": "60"})
    assert response.status_code == 422 and response.json["error"]["field"] == "Cancel-After"
    assert api.job_count() == count


def test_multipart_bad_values_are_refused(api_and_key):
    api, key = api_and_key
    count = api.job_count()
    for field, value in (("deadline_seconds", "0"), ("deadline_seconds", "ten"), ("priority", "HIGH")):
        form = {"type": "understand", "question": "q", field: value, "image": (io.BytesIO(_png()), "x.png")}
        response = api.client.post("/v1/jobs", data=form, headers=key, content_type="multipart/form-data")
        assert response.status_code == 422 and response.json["error"]["field"] == field, (field, value)
    assert api.job_count() == count


def test_an_idempotency_key_reused_with_another_priority_or_deadline_is_a_conflict(api_and_key):
    api, key = api_and_key
    keyed = {**key, "Idempotency-Key": "sched-1"}
    first = api.client.post("/v1/jobs", json={**GENERATE, "priority": "high"}, headers=keyed)
    again = api.client.post("/v1/jobs", json={**GENERATE, "priority": "high"}, headers=keyed)
    assert again.status_code == 202 and again.json["id"] == first.json["id"]
    assert api.client.post("/v1/jobs", json=GENERATE, headers=keyed).status_code == 409
    assert api.client.post("/v1/jobs", json={**GENERATE, "priority": "high"},
                           headers={**keyed, "Cancel-After": "30"}).status_code == 409


def _expire(api, job_id: str) -> None:
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="expired", error_code="deadline"))


def test_expired_jobs_are_listed_by_status_and_show_why(api_and_key):
    api, key = api_and_key
    job_id = api.client.post("/v1/jobs", json={**GENERATE, "deadline_seconds": 5}, headers=key).json["id"]
    _expire(api, job_id)
    listed = api.client.get("/v1/jobs?status=expired", headers=key).json["data"]
    assert [job["id"] for job in listed] == [job_id]
    assert listed[0]["error"]["code"] == "deadline"


def test_a_retry_keeps_the_priority_and_the_deadline_length(api_and_key):
    api, key = api_and_key
    original = api.client.post("/v1/jobs", json={**GENERATE, "priority": "low", "deadline_seconds": 20},
                               headers=key).json
    _expire(api, original["id"])
    with api.db.session() as session:  # created long ago: the retry's deadline counts from its own creation
        row = session.get(Job, original["id"])
        row.created_at -= timedelta(hours=1)
        row.deadline_at -= timedelta(hours=1)
    response = api.client.post(f"/v1/jobs/{original['id']}/retry", headers=key)
    assert response.status_code == 202, response.json
    retry = response.json
    assert retry["retry_of"] == original["id"] and retry["priority"] == "low" and _deadline_seconds(retry) == 20
    _expire(api, retry["id"])
    longer = api.client.post(f"/v1/jobs/{retry['id']}/retry", headers={**key, "Cancel-After": "300"}).json
    assert longer["priority"] == "low" and _deadline_seconds(longer) == 300


def test_a_retry_with_a_bad_cancel_after_creates_nothing(api_and_key):
    api, key = api_and_key
    job_id = api.client.post("/v1/jobs", json=GENERATE, headers=key).json["id"]
    _expire(api, job_id)
    count, messages = api.job_count(), api.broker_messages()
    response = api.client.post(f"/v1/jobs/{job_id}/retry", headers={**key, "Cancel-After": "0"})
    assert response.status_code == 422 and response.json["error"]["field"] == "Cancel-After"
    assert (api.job_count(), api.broker_messages()) == (count, messages)

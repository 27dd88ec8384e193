"""Webhook fields on POST /v1/jobs: accepted (JSON and multipart), shown on the job, kept by a
retry; refused with 422 and nothing created or queued for bad URLs and inward addresses."""
from __future__ import annotations

import threading

import pytest
from jobs import states
from jobs.models import Job
from tests.api.conftest import bearer

HOOK = "https://hooks.example.com/janus?token=abc"


@pytest.fixture
def key(new_key, tenant):
    return bearer(new_key(tenant("hooks")))


def _create(api, key, **fields):
    return api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox", **fields}, headers=key)


def _public(monkeypatch):
    """hooks.example.com resolves to a public address here (no DNS in tests)."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_json_create_with_a_webhook(make_api, key, monkeypatch):
    api = make_api()
    _public(monkeypatch)
    response = _create(api, key, webhook=HOOK, webhook_events=["start", "completed", "start"])
    assert response.status_code == 202, response.json
    job = response.json
    assert (job["webhook"], job["webhook_events"], job["webhook_deliveries"]) == (HOOK, ["start", "completed"], [])
    assert "webhook" not in job["params"] and "webhook_events" not in job["params"]
    polled = api.client.get(f"/v1/jobs/{job['id']}", headers=key).json
    assert polled["webhook_events"] == ["start", "completed"] and polled["webhook_deliveries"] == []
    with api.db.session() as session:
        assert session.get(Job, job["id"]).webhook_root == "http://localhost"  # the test client's address


def test_default_events_and_no_webhook(make_api, key, monkeypatch):
    api = make_api()
    _public(monkeypatch)
    assert _create(api, key, webhook=HOOK).json["webhook_events"] == ["completed"]
    plain = _create(api, key).json
    assert (plain["webhook"], plain["webhook_events"], plain["webhook_deliveries"]) == (None, None, None)


def test_multipart_webhook_events_are_comma_separated(make_api, key, monkeypatch):
    api = make_api()
    _public(monkeypatch)
    form = {"type": "generate", "prompt": "a fox", "webhook": HOOK, "webhook_events": "start, progress"}
    response = api.client.post("/v1/jobs", data=form, headers=key, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    assert response.json["webhook_events"] == ["start", "progress"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.7/",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://[fd00::1]/",
                                 "http://192.168.0.10:9000/x"])
def test_inward_webhooks_are_refused_and_nothing_is_created(make_api, key, url):
    api = make_api()
    jobs, messages = api.job_count(), api.broker_messages()
    response = _create(api, key, webhook=url)
    assert response.status_code == 422
    error = response.json["error"]
    assert error["field"] == "webhook" and "JANUS_WEBHOOK_ALLOW_PRIVATE" in error["message"]
    assert (api.job_count(), api.broker_messages()) == (jobs, messages)


def test_a_host_that_resolves_too_slowly_is_refused_in_bounded_time(make_api, key, monkeypatch):
    import socket
    import time

    import api.webhooks

    release = threading.Event()

    def hanging(host, *args, **kwargs):
        release.wait(10)  # a resolver that does not answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(api.webhooks, "RESOLVE_TIMEOUT_SECONDS", 0.3)
    api = make_api()
    jobs, messages = api.job_count(), api.broker_messages()
    started = time.monotonic()
    try:
        response = _create(api, key, webhook="https://slow.example.com/hook")
    finally:
        release.set()
    assert time.monotonic() - started < 5
    assert response.status_code == 422, response.json
    assert "did not resolve within 0.3 s" in response.json["error"]["message"]
    assert (api.job_count(), api.broker_messages()) == (jobs, messages)


def test_inward_webhooks_allowed_when_the_server_says_so(make_api, key):
    api = make_api(webhook_allow_private=True)
    assert _create(api, key, webhook="http://127.0.0.1:8080/hook").status_code == 202


@pytest.mark.parametrize("fields, field", [
    ({"webhook": "ftp://example.com/x"}, "webhook"),
    ({"webhook": "not a url"}, "webhook"),
    ({"webhook": "http://no-such-host.invalid/hook"}, "webhook"),
    ({"webhook": HOOK, "webhook_events": ["finished"]}, "webhook_events.0"),
    ({"webhook": HOOK, "webhook_events": []}, "webhook_events"),
    ({"webhook": HOOK, "webhook_events": "completed"}, "webhook_events"),
    ({"webhook_events": ["completed"]}, "webhook_events"),
    ({"webhook": 7}, "webhook"),
])
def test_bad_webhook_fields_create_nothing(make_api, key, monkeypatch, fields, field):
    api = make_api()
    _public(monkeypatch)
    jobs = api.job_count()
    response = _create(api, key, **fields)
    assert response.status_code == 422, response.json
    assert response.json["error"]["field"] == field
    assert api.job_count() == jobs


def test_an_idempotency_key_reused_with_another_webhook_conflicts(make_api, key, monkeypatch):
    api = make_api()
    _public(monkeypatch)
    headers = {**key, "Idempotency-Key": "hook-1"}
    first = _create(api, headers, webhook=HOOK)
    assert _create(api, headers, webhook=HOOK).json["id"] == first.json["id"]
    assert _create(api, headers, webhook=HOOK + "x").status_code == 409
    assert _create(api, headers, webhook=HOOK, webhook_events=["start"]).status_code == 409


def test_a_retry_keeps_the_webhook_and_deliveries_show_on_the_job(make_api, key, monkeypatch):
    api = make_api()
    _public(monkeypatch)
    original = _create(api, key, webhook=HOOK, webhook_events=["completed"]).json
    with api.db.session() as session:
        assert states.transition(session, original["id"], states.FAILED, only_from={states.QUEUED},
                                 error_code="model_error", error_message="boom")
    shown = api.client.get(f"/v1/jobs/{original['id']}", headers=key).json["webhook_deliveries"]
    assert [(row["event"], row["status"], row["attempts"]) for row in shown] == [("completed", "pending", 0)]
    assert shown[0]["id"].startswith("msg_") and shown[0]["next_attempt_at"]
    listed = api.client.get("/v1/jobs", headers=key).json["data"]
    assert [job["webhook_deliveries"] for job in listed if job["id"] == original["id"]] == [shown]
    retry = api.client.post(f"/v1/jobs/{original['id']}/retry", headers=key).json
    assert (retry["webhook"], retry["webhook_events"], retry["webhook_deliveries"]) == (HOOK, ["completed"], [])


def test_deleting_a_job_deletes_its_deliveries(make_api, key, monkeypatch):
    from sqlalchemy import func, select

    from jobs.models import WebhookDelivery

    api = make_api()
    _public(monkeypatch)
    job_id = _create(api, key, webhook=HOOK).json["id"]
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code in (200, 202, 204)
    with api.db.session() as session:
        count = select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        assert session.execute(count).scalar_one() == 0  # the cancel's `completed` delivery went too

"""Webhooks below the API: the outbox written with each transition, the signature, and the
deliverer against a local receiver (SQLite and PostgreSQL)."""
from __future__ import annotations

import ipaddress
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from api.webhook_body import body_renderer
from jobs import service, states
from jobs.models import WebhookDelivery, utcnow
from jobs.settings import Settings
from jobs.webhooks import outbox, signing
from jobs.webhooks.addresses import forbidden, url_problem
from jobs.webhooks.delivery import Deliverer
from tests.webhook_receiver import Receiver, readme_verifier

ROOT = "http://api.example:8000"


def _job(db, url="http://127.0.0.1:9/hook", events=("completed",), owner="acme") -> str:
    with db.session() as session:
        job = service.add_job(session, "generate", {"prompt": "p", "seed": 1}, owner=owner,
                              webhook=url, webhook_events=list(events), webhook_root=ROOT)
        return job.id


def _deliveries(db, job_id) -> list[WebhookDelivery]:
    with db.session() as session:
        return list(session.execute(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                    .order_by(WebhookDelivery.created_at)).scalars())


def _run(db, job_id, progress_writes=0):
    with db.session() as session:
        assert states.claim(session, job_id, "w1")
    for step in range(progress_writes):
        with db.session() as session:
            states.record_progress(session, job_id, (step + 1) / 10)
    with db.session() as session:
        assert states.transition(session, job_id, states.SUCCEEDED, only_from={states.RUNNING},
                                 result={"text": "done"}, progress=1.0)


def _deliverer(db, **settings) -> Deliverer:
    values = {"webhook_allow_private": True, "webhook_timeout": 2, "webhook_retry_backoff": 1, **settings}
    return Deliverer(db, Settings(**values), render=body_renderer(Settings(**values), db))


def _send_all(deliverer: Deliverer, later: float = 0.0) -> int:
    sent = deliverer.claim(50, now=utcnow() + timedelta(seconds=later))
    for due in sent:
        deliverer.deliver(due)
    return len(sent)


# --- the outbox ----------------------------------------------------------------------------


def test_each_transition_queues_the_events_asked_for(db):
    everything = _job(db, events=outbox.EVENTS)
    completed_only = _job(db)
    _run(db, everything, progress_writes=3)
    _run(db, completed_only, progress_writes=3)
    # progress: the first write, then at most one every PROGRESS_EVERY_SECONDS (the writes here are instant)
    assert [row.event for row in _deliveries(db, everything)] == ["start", "progress", "completed"]
    assert [row.event for row in _deliveries(db, completed_only)] == ["completed"]
    completed = _deliveries(db, everything)[-1]
    assert completed.snapshot["status"] == "succeeded" and completed.snapshot["result"] == {"text": "done"}
    assert _deliveries(db, everything)[0].snapshot["status"] == "running"  # the job as the event left it
    assert completed.id.startswith("msg_") and completed.status == "pending" and completed.owner == "acme"


@pytest.mark.parametrize("final", [states.FAILED, states.CANCELED, states.EXPIRED])
def test_every_terminal_status_is_completed(db, final):
    job_id = _job(db)
    with db.session() as session:
        assert states.transition(session, job_id, final, only_from={states.QUEUED})
    assert [(row.event, row.snapshot["status"]) for row in _deliveries(db, job_id)] == [("completed", final)]


def test_no_webhook_no_rows_and_a_lost_transition_none(db):
    with db.session() as session:
        plain = service.add_job(session, "generate", {"prompt": "p", "seed": 1}).id
    _run(db, plain, progress_writes=2)
    assert _deliveries(db, plain) == []
    job_id = _job(db)
    _run(db, job_id)
    with db.session() as session:  # a second finish loses: no second completed delivery
        assert not states.transition(session, job_id, states.FAILED, only_from={states.RUNNING})
    assert len(_deliveries(db, job_id)) == 1


def test_a_rolled_back_transition_leaves_no_delivery(db):
    job_id = _job(db)
    with pytest.raises(RuntimeError), db.session() as session:
        states.transition(session, job_id, states.CANCELED, only_from={states.QUEUED})
        raise RuntimeError("the transaction fails after the transition")
    assert _deliveries(db, job_id) == []


# --- signatures ----------------------------------------------------------------------------


def test_signature_is_standard_webhooks(db):
    with db.session() as session:
        secret = signing.tenant_secret(session, "acme")
        assert signing.tenant_secret(session, "acme") == secret and secret.startswith("whsec_")
    body = b'{"id": "abc", "status": "succeeded"}'
    headers = signing.headers(secret, "msg_1", int(utcnow().timestamp()), body)
    assert Webhook(secret).verify(body, headers) == {"id": "abc", "status": "succeeded"}
    assert readme_verifier()(secret, headers, body)
    assert not readme_verifier()(secret, headers, body + b" ")
    with db.session() as session:
        rotated = signing.rotate_secret(session, "acme")
    assert rotated != secret and not readme_verifier()(rotated, headers, body)


# --- the deliverer -------------------------------------------------------------------------


def test_delivered_signed_with_the_job_as_get_shows_it(db):
    with Receiver() as receiver:
        job_id = _job(db, url=receiver.url)
        _run(db, job_id)
        assert _send_all(_deliverer(db)) == 1
    [request] = receiver.received
    with db.session() as session:
        secret = signing.tenant_secret(session, "acme")
        job = service.get_job(session, job_id, owner="acme")
    assert readme_verifier()(secret, request.headers, request.body)
    Webhook(secret).verify(request.body, request.headers)
    assert request.path == "/hooks/janus?token=t1" and request.headers["content-type"] == "application/json"
    assert request.json == body_renderer(Settings(), db)(job, ROOT)  # the job as GET shows it
    assert request.json["urls"]["self"] == f"{ROOT}/v1/jobs/{job_id}" and request.json["expires_at"]
    [row] = _deliveries(db, job_id)
    assert (row.status, row.attempts, row.status_code, row.last_error) == ("delivered", 1, 200, None)
    assert request.id == row.id


def test_with_auth_on_image_urls_are_signed_for_the_receiver(db):
    from jobs.url_signing import UrlSigner

    with Receiver() as receiver:
        job_id = _job(db, url=receiver.url)
        with db.session() as session:
            assert states.claim(session, job_id, "w1")
            image = {"key": f"jobs/{job_id}/0.png", "width": 384, "height": 384, "content_type": "image/png"}
            assert states.transition(session, job_id, states.SUCCEEDED, result={"images": [image]})
        _send_all(_deliverer(db, auth="on", host="0.0.0.0", url_signing_key="k" * 32))
    url = receiver.received[0].json["result"]["images"][0]["url"]
    path, _, query = url.removeprefix(ROOT).partition("?")
    fields = dict(item.split("=", 1) for item in query.split("&"))
    UrlSigner(b"k" * 32, 900).verify(path, fields["expires"], fields["signature"])  # raises if not


def test_a_failed_attempt_is_retried_with_the_same_id(db):
    with Receiver(statuses=[500]) as receiver:
        job_id = _job(db, url=receiver.url)
        _run(db, job_id)
        deliverer = _deliverer(db)
        assert _send_all(deliverer) == 1
        [row] = _deliveries(db, job_id)
        assert (row.status, row.attempts, row.status_code) == ("pending", 1, 500)
        assert row.last_error.startswith("HTTP 500") and row.next_attempt_at > row.last_attempt_at
        assert _send_all(deliverer) == 0  # not due yet
        assert _send_all(deliverer, later=5) == 1
    first, second = receiver.received
    assert first.id == second.id and first.body == second.body
    assert first.headers["webhook-signature"] != "" and second.headers["webhook-timestamp"]
    [row] = _deliveries(db, job_id)
    assert (row.status, row.attempts, row.status_code) == ("delivered", 2, 200)


def test_redirects_are_not_followed_and_slow_receivers_time_out(db):
    with Receiver(statuses=[302], headers={"Location": "http://127.0.0.1:9/elsewhere"}) as redirecting, \
            Receiver(delay=2) as slow:
        moved, sleepy = _job(db, url=redirecting.url), _job(db, url=slow.url)
        _run(db, moved)
        _run(db, sleepy)
        _send_all(_deliverer(db, webhook_timeout=0.5))
        assert len(redirecting.received) == 1
    [row] = _deliveries(db, moved)
    assert row.status == "pending" and row.status_code == 302 and "redirect (not followed)" in row.last_error
    [row] = _deliveries(db, sleepy)
    assert row.status == "pending" and row.status_code is None and row.last_error == "no answer within 0.5 s"


def test_private_addresses_refused_at_delivery_and_given_up_after_the_retry_time(db):
    with Receiver() as receiver:
        job_id = _job(db, url=receiver.url)
        _run(db, job_id)
        _send_all(_deliverer(db, webhook_allow_private=False, webhook_retry_seconds=0))
        assert receiver.received == []
    [row] = _deliveries(db, job_id)
    assert row.status == "failed" and row.attempts == 1 and row.finished_at is not None
    assert row.last_error.startswith("refused: host '127.0.0.1' resolves to 127.0.0.1")


def test_two_deliverers_never_claim_one_row(db):
    job_ids = [_job(db) for _ in range(20)]
    for job_id in job_ids:
        _run(db, job_id)
    claimed: list[list[str]] = [[], []]

    def claim(index):
        deliverer = _deliverer(db)
        while batch := deliverer.claim(3):
            claimed[index] += [due.id for due in batch]

    threads = [threading.Thread(target=claim, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = claimed[0] + claimed[1]
    assert len(both) == len(set(both)) == 20


# --- URLs and addresses --------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1",
                                     "::ffff:127.0.0.1", "::ffff:10.0.0.1"])
def test_inward_addresses_are_forbidden(address):
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert not forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/hook", "http:///nohost", "https://a b.com/",
                                 "http://example.com:99999/", "https://example.com/#frag", "x" * 3000])
def test_bad_urls(url):
    assert url_problem(url)


def test_good_url():
    assert url_problem("https://hooks.example.com:8443/janus?token=abc") is None


def test_the_loop_sends_a_jobs_deliveries_one_at_a_time_in_order(db):
    from jobs.webhooks.delivery import DeliveryLoop

    with Receiver(delay=0.3) as receiver:
        job_id = _job(db, url=receiver.url, events=outbox.EVENTS)
        _run(db, job_id, progress_writes=1)  # start, progress and completed: all due at once
        loop = DeliveryLoop(_deliverer(db, webhook_concurrency=4), "test-loop")
        loop.start()
        try:
            received = receiver.wait_for(lambda got: len(got) == 3, timeout=30)
        finally:
            loop.stop()
    events = {row.id: row.event for row in _deliveries(db, job_id)}
    assert [events[item.id] for item in received] == ["start", "progress", "completed"]

"""verify_webhook against the server's own signer and the reference Standard Webhooks package."""
from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from janusq.client import WebhookVerificationError, verify_webhook
from jobs.webhooks import signing

BODY = json.dumps({"type": "job.completed", "data": {"id": "j1", "status": "succeeded"}}).encode()


@pytest.fixture
def secret() -> str:
    return signing.new_secret()


def test_accepts_what_the_server_signs(secret):
    now = int(time.time())
    headers = signing.headers(secret, "msg_1", now, BODY)
    assert verify_webhook(BODY, headers, secret)["data"]["status"] == "succeeded"
    # Header names are case-insensitive, as any web framework may hand them over.
    assert verify_webhook(BODY.decode(), {k.title(): v for k, v in headers.items()}, secret)


def test_accepts_what_the_reference_package_signs(secret):
    now = int(time.time())
    from datetime import datetime, timezone
    signature = Webhook(secret).sign("msg_2", datetime.fromtimestamp(now, tz=timezone.utc), BODY.decode())
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(now), "webhook-signature": f"v1,Ym9ndXM= {signature}"}
    assert verify_webhook(BODY, headers, secret)["type"] == "job.completed"
    Webhook(secret).verify(BODY, headers)  # and the reference agrees with the same headers


@pytest.mark.parametrize("change, message", [
    (lambda body, headers, secret: (body + b" ", headers, secret), "no signature matches"),
    (lambda body, headers, secret: (body, headers, signing.new_secret()), "no signature matches"),
    (lambda body, headers, secret: (body, {**headers, "webhook-id": "msg_other"}, secret), "no signature matches"),
    (lambda body, headers, secret: (body, {k: v for k, v in headers.items() if k != "webhook-id"}, secret),
     "missing header webhook-id"),
    (lambda body, headers, secret: (body, headers, "whsec_not base64!"), "not whsec_ followed by base64"),
])
def test_refuses_what_does_not_check_out(secret, change, message):
    headers = signing.headers(secret, "msg_3", int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError, match=message):
        verify_webhook(*change(BODY, headers, secret))


def test_refuses_an_old_delivery_as_a_replay(secret):
    old = int(time.time()) - 301
    headers = signing.headers(secret, "msg_4", old, BODY)
    with pytest.raises(WebhookVerificationError, match="from now"):
        verify_webhook(BODY, headers, secret)
    assert verify_webhook(BODY, headers, secret, tolerance=600)

"""verify_webhook: check a delivery's Standard Webhooks signature (as jobs/webhooks/signing.py
makes it) without the server's code, which would pull in SQLAlchemy."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Mapping

from janusq.client.errors import JanusError

SECRET_PREFIX = "whsec_"
# Standard Webhooks' tolerance: a delivery older (or newer) than this is refused as a replay.
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(JanusError):
    """The delivery's signature, timestamp or headers do not check out: do not trust its body."""

    def __init__(self, message: str):
        super().__init__(message, code="invalid_webhook")

    def __str__(self) -> str:
        return self.message


def verify_webhook(body: bytes | str, headers: Mapping[str, str], secret: str, *,
                   tolerance: float = DEFAULT_TOLERANCE_SECONDS, now: float | None = None) -> Any:
    """The delivery's JSON (`{"type": ..., "data": job}`) once its signature is checked against
    `secret` (`janusq webhooks secret`); WebhookVerificationError otherwise. `body` must be the
    raw bytes as received: re-encoded JSON would not match."""
    body = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, stamp, signatures = (lowered[name] for name in
                                         ("webhook-id", "webhook-timestamp", "webhook-signature"))
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    _check_timestamp(stamp, tolerance, time.time() if now is None else now)
    expected = _sign(secret, message_id, stamp, body)
    # Several space-separated `v1,<base64>` while a secret is being rotated; one match suffices.
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return json.loads(body)
    raise WebhookVerificationError("no signature matches: wrong secret, or the body was altered")


def _check_timestamp(stamp: str, tolerance: float, now: float) -> None:
    if not stamp.isdigit():
        raise WebhookVerificationError(f"webhook-timestamp {stamp!r} is not Unix seconds")
    if abs(now - int(stamp)) > tolerance:
        raise WebhookVerificationError(f"webhook-timestamp is more than {tolerance:g} s from now")


def _sign(secret: str, message_id: str, stamp: str, body: bytes) -> str:
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from None
    signed = f"{message_id}.{stamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()

"""Each tenant's secret and the Standard Webhooks signature made with it.

The secret is `whsec_` + base64 of 32 random bytes; the HMAC key is those bytes (the base64 part
decoded, as the spec says). A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds)
and `webhook-signature` = `v1,` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from jobs.models import WebhookSecret, utcnow

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signing_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(signing_key(secret), signed, hashlib.sha256).digest()).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body)}


def tenant_secret(session: Session, tenant: str) -> str:
    """The tenant's secret, created now if it has none (two creators at once: one wins, both
    return the winner's)."""
    found = session.execute(select(WebhookSecret.secret).where(WebhookSecret.tenant == tenant)).scalar()
    if found:
        return found
    try:
        with session.begin_nested():
            session.execute(insert(WebhookSecret).values(tenant=tenant, secret=new_secret(), created_at=utcnow()))
    except IntegrityError:
        pass  # another process created it first
    return session.execute(select(WebhookSecret.secret).where(WebhookSecret.tenant == tenant)).scalar_one()


def rotate_secret(session: Session, tenant: str) -> str:
    """A new secret for the tenant; deliveries signed from now on use it."""
    tenant_secret(session, tenant)  # the row, so the update below has one to change
    secret = new_secret()
    session.execute(update(WebhookSecret).where(WebhookSecret.tenant == tenant)
                    .values(secret=secret, created_at=utcnow()))
    return secret

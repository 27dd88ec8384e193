"""Signed image URLs: `?expires=<unix time>&signature=<HMAC-SHA256>` on an API path, like S3's
presigned URLs, so an image can be fetched without the API key (an <img> tag, a shared link)
until it expires.

The expiry is rounded up to a step of a tenth of the TTL (at most a minute), so a URL lives between
one and 1.1 TTLs and every GET within one step hands out the same URL: browsers and proxies cache
the image instead of fetching it again each time a page polls the job.

The key is JANUS_URL_SIGNING_KEY, or else a random one generated once and kept in the database
(`service_secrets`): every API process, on any machine, signs and verifies with the same key,
and a restart keeps the URLs handed out valid. A file in the data dir would not be shared.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import time
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jobs.db import Database
from jobs.models import ServiceSecret, utcnow

SIGNING_KEY_NAME = "url_signing_key"
# Unix seconds, ASCII digits only (str.isdigit takes other scripts' digits) and short enough that
# int() of anything sent stays cheap.
EXPIRES = re.compile(r"[0-9]{1,12}")
MAX_EXPIRY_STEP_SECONDS = 60


class SignatureInvalid(ValueError):
    """Not signed by this service: tampered with, for another path, or malformed."""


class SignatureExpired(ValueError):
    """Signed by this service, but past its expiry."""


class UrlSigner:
    def __init__(self, key: bytes, ttl_seconds: int):
        self.key, self.ttl_seconds = key, ttl_seconds
        self.expiry_step = max(1, min(MAX_EXPIRY_STEP_SECONDS, ttl_seconds // 10))

    def query(self, path: str, now: float | None = None) -> str:
        """The query string that makes `path` fetchable for at least ttl_seconds from now (up to
        one expiry step more)."""
        earliest = (now if now is not None else time.time()) + self.ttl_seconds
        expires = math.ceil(earliest / self.expiry_step) * self.expiry_step
        return urlencode({"expires": expires, "signature": self._signature(path, expires)})

    def verify(self, path: str, expires: str | None, signature: str | None, now: float | None = None) -> None:
        """Raises SignatureInvalid or SignatureExpired unless (expires, signature) sign `path`, unexpired."""
        if not signature or not EXPIRES.fullmatch(expires or ""):
            raise SignatureInvalid("the URL's expires or signature is missing or malformed")
        # Compared before the expiry is looked at, so an altered expiry is "invalid", not "expired".
        # As bytes: compare_digest refuses str with non-ASCII characters, which anyone can send.
        if not hmac.compare_digest(self._signature(path, int(expires)).encode(), signature.encode()):
            raise SignatureInvalid("the URL's signature does not match it")
        if int(expires) < (now if now is not None else time.time()):
            raise SignatureExpired("the signed URL has expired")

    def _signature(self, path: str, expires: int) -> str:
        digest = hmac.new(self.key, f"GET\n{path}\n{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signing_key(configured: str, db: Database) -> bytes:
    """JANUS_URL_SIGNING_KEY if set, else the key kept in the database (made on first use)."""
    return (configured or stored_secret(db, SIGNING_KEY_NAME)).encode()


def stored_secret(db: Database, name: str) -> str:
    """The named secret from `service_secrets`; the first process to ask creates it (a race between
    two is settled by the primary key: the loser reads the winner's)."""
    value = _read_secret(db, name)
    if value is not None:
        return value
    try:
        with db.session() as session:
            session.add(ServiceSecret(name=name, value=secrets.token_urlsafe(32), created_at=utcnow()))
    except IntegrityError:
        pass  # another process stored it first
    value = _read_secret(db, name)
    assert value is not None  # stored above, by this process or another
    return value


def _read_secret(db: Database, name: str) -> str | None:
    with db.session() as session:
        return session.execute(select(ServiceSecret.value).where(ServiceSecret.name == name)).scalar_one_or_none()

"""API keys: create (the key is shown once), list, revoke, and look a presented key up.

A key is `jq_<8 characters>_<43 characters>`: the first part (`jq_` and 8 characters) is its
public prefix, kept in clear to tell keys apart in listings; the rest is 256 random bits.
Only the SHA-256 of the whole key is stored. A fast hash is enough here (unlike passwords):
the keys are random with far more entropy than any guessing could cover, and one hash per
request keeps authentication cheap.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import string
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from jobs.models import ApiKey, utcnow

KEY_PREFIX = "jq_"
_PREFIX_ALPHABET = string.ascii_letters + string.digits
_PREFIX_CHARS = 8
# Longest Authorization value worth hashing; real keys are 55 characters.
MAX_KEY_LENGTH = 128
# Tenants and names: short identifiers, safe to print and to use in logs and lock names.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ApiKeyError(ValueError):
    """A key operation that cannot be done (bad name, unknown or ambiguous key); one line."""


@dataclass(frozen=True)
class NewKey:
    record: ApiKey
    secret: str  # the whole key; shown to its owner once, never stored


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.match(value or ""):
        raise ApiKeyError(f"{what} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                        f"letter or digit: {value!r}")
    return value


def create_key(session: Session, name: str, tenant: str | None = None, admin: bool = False) -> NewKey:
    """A new key for `tenant` (default: a tenant of its own, named like the key). An admin key
    works like any other for its tenant's jobs and may also see the cluster (GET /v1/workers)."""
    check_name(name, "name")
    tenant = check_name(tenant if tenant is not None else name, "tenant")
    prefix = KEY_PREFIX + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(_PREFIX_CHARS))
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(id=uuid.uuid4().hex, name=name, tenant=tenant, prefix=prefix,
                    key_hash=hash_key(secret), admin=admin, created_at=utcnow(), revoked_at=None)
    session.add(record)
    session.flush()
    return NewKey(record, secret)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).scalars())


def find_key(session: Session, id_or_prefix: str) -> ApiKey:
    """The one key with this id or display prefix; ApiKeyError if none or several match."""
    value = (id_or_prefix or "").strip()
    matches = list(session.execute(
        select(ApiKey).where(or_(ApiKey.id == value, ApiKey.prefix == value))).scalars())
    if not matches:
        raise ApiKeyError(f"no API key with id or prefix {value!r}")
    if len(matches) > 1:  # an id that is also another key's prefix; practically never
        raise ApiKeyError(f"{value!r} matches {len(matches)} keys; give the key's id")
    return matches[0]


def revoke_key(session: Session, id_or_prefix: str) -> tuple[ApiKey, bool]:
    """Revoke a key at once; returns it and whether this call revoked it (False: already was)."""
    record = find_key(session, id_or_prefix)
    if record.revoked_at is not None:
        return record, False
    record.revoked_at = utcnow()
    session.flush()
    return record, True


def authenticate(session: Session, presented: str) -> ApiKey | None:
    """The active key matching `presented`, or None (unknown, revoked, malformed alike)."""
    if not presented or len(presented) > MAX_KEY_LENGTH or not presented.startswith(KEY_PREFIX):
        return None
    query = select(ApiKey).where(ApiKey.key_hash == hash_key(presented), ApiKey.revoked_at.is_(None))
    return session.execute(query).scalar_one_or_none()

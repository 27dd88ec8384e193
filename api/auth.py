"""Who is asking: `Authorization: Bearer <key>` on every /v1 request when auth is on.

Sets `g.tenant` (the key's tenant, or "local" with auth off), `g.api_key_id` and `g.admin`,
and counts the request against the key's rate limit. An image URL the API signed needs no key
(api/signed_urls.py). /healthz, /readyz, /metrics and /openapi.json are in another blueprint
and stay open.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from flask import g, request

from api.errors import ApiError
from api.services import services
from api.signed_urls import admit_signed_request, is_signed_image_request
from jobs import keys
from jobs.models import LOCAL_OWNER

# RFC 6750: the challenge a client gets with a 401.
CHALLENGE = 'Bearer realm="janusq"'


def authenticate() -> None:
    svc = services()
    if is_signed_image_request():  # an image URL signed by the API stands in for the key
        admit_signed_request(svc)
        return
    if not svc.settings.auth_enabled:
        # Auth off means loopback only: whoever is there is the operator.
        g.tenant, g.api_key_id, g.admin = LOCAL_OWNER, None, True
        return
    key = _verified_key(svc, _bearer_token())
    g.tenant, g.api_key_id, g.admin = key.tenant, key.id, key.admin
    _count_request(svc, key.id)


@dataclass(frozen=True)
class VerifiedKey:
    id: str
    tenant: str
    admin: bool


class KeyCache:
    """Keys this process verified recently, by hash, each for `seconds` (see
    JANUS_API_KEY_CACHE_SECONDS): a revoked key keeps working here until its entry expires.
    Only valid keys are kept; an unknown key is looked up every time, so a new key works at once."""

    MAX_ENTRIES = 10_000

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._entries: dict[str, tuple[float, VerifiedKey]] = {}

    def get(self, key_hash: str) -> VerifiedKey | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, key: VerifiedKey) -> None:
        if not self.seconds:
            return
        if len(self._entries) >= self.MAX_ENTRIES:  # many keys at once: forget them all, start again
            self._entries = {}
        self._entries[key_hash] = (time.monotonic() + self.seconds, key)


def _verified_key(svc, presented: str) -> VerifiedKey:
    key_hash = keys.hash_key(presented)
    key = svc.key_cache.get(key_hash)
    if key is not None:
        return key
    with svc.db.read_session() as session:
        record = keys.authenticate(session, presented)
    if record is None:
        # Unknown and revoked keys get the same answer: nothing to learn about which keys exist.
        raise _unauthorized("the API key is not valid (unknown or revoked)", invalid=True)
    key = VerifiedKey(record.id, record.tenant, bool(record.admin))
    svc.key_cache.put(key_hash, key)
    return key


def require_admin() -> None:
    """For routes about the service rather than a tenant's jobs (after `authenticate`)."""
    if not g.admin:
        raise ApiError.of("forbidden", "this needs an admin API key (janusq keys create --admin)",
                          "Authorization")


def _bearer_token() -> str:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("an API key is required: send Authorization: Bearer <key>")
    return token


def _unauthorized(message: str, invalid: bool = False) -> ApiError:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return ApiError.of("unauthorized", message, "Authorization", headers={"WWW-Authenticate": challenge})


def _count_request(svc, key_id: str) -> None:
    if not svc.settings.rate_limit_per_minute:
        return
    decision = svc.rate_limiter.hit(key_id)
    if not decision.allowed:
        raise ApiError.of(
            "rate_limited",
            f"over {decision.limit} requests per minute for this API key; retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )

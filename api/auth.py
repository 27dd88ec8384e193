"""Who is asking: `Authorization: Bearer <key>` on every /v1 request when auth is on.

Sets `g.tenant` (the key's tenant, or "local" with auth off), `g.api_key_id` and `g.admin`,
and counts the request against the key's rate limit. /healthz, /readyz, /metrics and
/openapi.json are in another blueprint and stay open.
"""
from __future__ import annotations

from flask import g, request

from api.errors import ApiError
from api.services import services
from jobs import keys
from jobs.models import LOCAL_OWNER

# RFC 6750: the challenge a client gets with a 401.
CHALLENGE = 'Bearer realm="janusq"'


def authenticate() -> None:
    svc = services()
    if not svc.settings.auth_enabled:
        # Auth off means loopback only: whoever is there is the operator.
        g.tenant, g.api_key_id, g.admin = LOCAL_OWNER, None, True
        return
    presented = _bearer_token()
    with svc.db.session() as session:
        key = keys.authenticate(session, presented)
        if key is None:
            # Unknown and revoked keys get the same answer: nothing to learn about which keys exist.
            raise _unauthorized("the API key is not valid (unknown or revoked)", invalid=True)
        g.tenant, g.api_key_id, g.admin = key.tenant, key.id, bool(key.admin)
    _count_request(svc, key.id)


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

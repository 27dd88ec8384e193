"""Typed errors: each carries the API's error `code`, the HTTP `status` and its `message`.

The API answers every error as `{"error": {"code", "message", "field"}}`; the class follows the
status (a 404 is NotFoundError whatever its code), and `code` tells finer cases apart (e.g.
`rate_limited` and `too_many_unfinished_jobs` are both RateLimitedError).
"""
from __future__ import annotations

import json


class JanusError(Exception):
    """Base of every error this client raises."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None,
                 field: str | None = None, body: dict | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.code, self.status, self.field = message, code, status, field
        self.body = body  # the API's JSON answer, when there was one
        self.retry_after = retry_after  # seconds, from a Retry-After header

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        status = f"{self.status} " if self.status else ""
        return f"{status}{self.code}: {self.message}{where}"


class BadRequestError(JanusError):
    """400 (invalid JSON) and other 4xx without a class of their own."""


class UnauthorizedError(JanusError):
    """401: no API key, or a wrong or revoked one (JANUS_API_KEY / api_key=)."""


class ForbiddenError(JanusError):
    """403: an admin-only route, or a bad or expired image signature."""


class NotFoundError(JanusError):
    """404: no such job (another tenant's job is answered the same way)."""


class ConflictError(JanusError):
    """409: e.g. canceling a finished job, or an Idempotency-Key reused for another request."""


class GoneError(JanusError):
    """410: the job's images were deleted by retention (result_expired)."""


class ValidationError(JanusError):
    """413, 415 and 422: the request was refused as it stands (the `field` names what)."""


class RateLimitedError(JanusError):
    """429: rate_limited or too_many_unfinished_jobs, still so after the client's retries."""


class UnavailableError(JanusError):
    """503 (a dependency of the API is down) and other 5xx, still so after the client's retries."""


class ConnectionFailedError(JanusError):
    """No HTTP answer at all: connection refused, reset, DNS, a read timeout."""


class JobFailedError(JanusError):
    """The job ended failed, canceled or expired; `job` is the finished Job, `code` its error code."""

    def __init__(self, job):
        error = job.error
        code = error.code if error else job.status
        message = error.message if error else f"job {job.id} ended {job.status}"
        super().__init__(f"job {job.id} {job.status}: {message}", code=code)
        self.job = job

    def __str__(self) -> str:
        return self.message


class WaitTimeoutError(JanusError):
    """wait(timeout) ran out before the job finished; the job goes on (`job` as last seen)."""

    def __init__(self, job, timeout: float):
        super().__init__(f"job {job.id} still {job.status} after {timeout:g} s", code="timeout")
        self.job = job

    def __str__(self) -> str:
        return self.message


_BY_STATUS: dict[int, type[JanusError]] = {
    401: UnauthorizedError, 403: ForbiddenError, 404: NotFoundError, 409: ConflictError, 410: GoneError,
    413: ValidationError, 415: ValidationError, 422: ValidationError, 429: RateLimitedError,
}


def error_from_response(status: int, data: bytes, retry_after: float | None = None) -> JanusError:
    """The typed error for an HTTP error answer (its body the API's error JSON, or anything else
    a proxy in front of it may send)."""
    body = _json(data)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message, field = str(error.get("code", "error")), str(error.get("message", "")), error.get("field")
    else:  # not the API's answer: a proxy's HTML page, an empty body
        code, message, field = f"http_{status}", data[:200].decode(errors="replace").strip() or "no body", None
    cls = _BY_STATUS.get(status) or (UnavailableError if status >= 500 else BadRequestError)
    return cls(message, code=code, status=status, field=field, body=body if isinstance(body, dict) else None,
               retry_after=retry_after)


def _json(data: bytes):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None

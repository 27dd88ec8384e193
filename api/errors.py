"""The one error type the API raises; the app turns it into `{"error": {...}}` with its status."""
from __future__ import annotations

from typing import Any

# The codes clients may see, with the status each one goes out with.
STATUS_OF_CODE: dict[str, int] = {
    "invalid_json": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "invalid_signature": 403,
    "signature_expired": 403,
    "not_found": 404,
    "not_acceptable": 406,
    "conflict": 409,
    "result_expired": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "unsupported_image_format": 415,
    "validation_error": 422,
    "invalid_image": 422,
    "image_too_large": 422,
    "prompt_too_long": 422,
    "rate_limited": 429,
    "too_many_unfinished_jobs": 429,
    "internal_error": 500,
    "unavailable": 503,
}


class ApiError(Exception):
    """A client-visible error: HTTP status, a stable machine code, a message, the field at fault."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        # Response headers that belong to the error (WWW-Authenticate on 401, Retry-After on 429).
        self.headers = headers or {}

    @classmethod
    def of(cls, code: str, message: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> "ApiError":
        """Build an error whose status follows from its code (see STATUS_OF_CODE)."""
        return cls(STATUS_OF_CODE[code], code, message, field, headers)

    def to_response_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}

    def __repr__(self) -> str:
        return (
            f"ApiError(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )

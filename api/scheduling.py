"""A create or retry request's priority and deadline: the body's fields and the Cancel-After header."""
from __future__ import annotations

import re
from dataclasses import dataclass

from api.errors import ApiError
from jobs.lifecycle import MAX_DEADLINE_SECONDS, NORMAL, PRIORITIES, deadline_seconds_of

CANCEL_AFTER = "Cancel-After"
_WHOLE_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Scheduling:
    priority: int = NORMAL
    deadline_seconds: int | None = None

    def fingerprint_fields(self) -> dict:
        """What, beyond its params, makes a request differ from another with its Idempotency-Key.

        Empty for the defaults, so requests that give neither keep the fingerprints they had.
        """
        fields: dict = {}
        if self.priority != NORMAL:
            fields["priority"] = self.priority
        if self.deadline_seconds is not None:
            fields["deadline_seconds"] = self.deadline_seconds
        return fields


def for_create(job_request, header: str | None) -> Scheduling:
    """From a validated create request and its Cancel-After header; both may name the deadline."""
    from_header = cancel_after(header)
    from_body = job_request.deadline_seconds
    if from_header is not None and from_body is not None and from_header != from_body:
        raise ApiError.of("validation_error", f"{CANCEL_AFTER} ({from_header}) and deadline_seconds ({from_body}) "
                                              "disagree; give one of them", CANCEL_AFTER)
    return Scheduling(PRIORITIES[job_request.priority], from_header if from_header is not None else from_body)


def for_retry(original, header: str | None) -> Scheduling:
    """A retry keeps the original's priority and deadline length (counted from the retry's own
    creation, so a job that expired gets the same time again); Cancel-After replaces the length."""
    seconds = cancel_after(header)
    if seconds is None:
        seconds = deadline_seconds_of(original.created_at, original.deadline_at)
    return Scheduling(NORMAL if original.priority is None else original.priority, seconds)


def cancel_after(header: str | None) -> int | None:
    """Whole seconds from a Cancel-After header; None when absent; 422 for anything else."""
    if header is None:
        return None
    text = header.strip()
    if not _WHOLE_SECONDS.fullmatch(text) or not 1 <= int(text) <= MAX_DEADLINE_SECONDS:
        raise ApiError.of("validation_error", f"{CANCEL_AFTER} must be whole seconds from 1 to "
                                              f"{MAX_DEADLINE_SECONDS} (got {header[:40]!r})", CANCEL_AFTER)
    return int(text)

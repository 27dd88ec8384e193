"""A job's deadline and priority (issue 13): the names clients use and the numbers rows hold.

- Priority: `low`, `normal` (the default), `high`, stored as 0, 1, 2 (jobs.priority), so a claim
  can order by the column (higher first).
- Deadline: seconds from creation (a `Cancel-After` header or `deadline_seconds` in the body),
  stored as the instant (jobs.deadline_at). A queued job past it ends `expired` without running;
  a running one is stopped at its next checkpoint and ends `canceled` with error code `deadline`.
"""
from __future__ import annotations

from datetime import datetime

PRIORITIES: dict[str, int] = {"low": 0, "normal": 1, "high": 2}
NORMAL = PRIORITIES["normal"]
_NAMES = {value: name for name, value in PRIORITIES.items()}

# A week: longer than any queue should ever hold a job, short enough to catch a unit mistake
# (milliseconds sent as seconds).
MAX_DEADLINE_SECONDS = 7 * 24 * 3600

# The error code a job ended by its deadline carries (expired, or canceled while running).
DEADLINE = "deadline"
EXPIRED_MESSAGE = "the job's deadline passed before a worker started it"
STOPPED_MESSAGE = "the job's deadline passed while it ran; it was stopped at its next checkpoint"


def priority_name(value: int | None) -> str:
    """The client's name for a stored priority; a row from before priorities counts as normal."""
    return _NAMES.get(NORMAL if value is None else value, "normal")


def deadline_seconds_of(created_at: datetime, deadline_at: datetime | None) -> int | None:
    """The deadline a job was created with, in seconds from its creation (None: none)."""
    if deadline_at is None:
        return None
    return max(1, round((deadline_at - created_at).total_seconds()))

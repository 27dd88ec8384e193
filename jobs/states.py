"""The job state machine: every status change goes through `transition`.

Each change is one conditional UPDATE (WHERE status IN allowed sources), so two workers,
a worker and a cancel, or a redelivered message can never both win.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from jobs.models import Job, utcnow

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED})

ALLOWED = {
    QUEUED: frozenset({RUNNING, CANCELED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELED}),
}

# The timestamp each target status stamps.
STAMPS = {RUNNING: "started_at", SUCCEEDED: "finished_at", FAILED: "finished_at", CANCELED: "finished_at"}


class InvalidTransition(ValueError):
    pass


def sources_of(target: str) -> frozenset[str]:
    return frozenset(source for source, targets in ALLOWED.items() if target in targets)


def transition(session: Session, job_id: str, target: str, *, only_from=None, **fields) -> bool:
    """Move a job to `target` if its current status allows it; True when this call won."""
    sources = sources_of(target)
    if not sources:
        raise InvalidTransition(f"nothing may move to {target!r}")
    if only_from is not None:
        sources = sources & frozenset(only_from)
    now = utcnow()
    values = {"status": target, "updated_at": now, **fields}
    values.setdefault(STAMPS[target], now)
    if target in TERMINAL:
        values.setdefault("cancel_requested", False)
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sorted(sources)))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount == 1


def claim(session: Session, job_id: str, worker: str) -> bool:
    """queued -> running for exactly one worker; counts the attempt."""
    return transition(
        session, job_id, RUNNING, only_from={QUEUED}, worker=worker, attempts=Job.attempts + 1
    )


def record_progress(session: Session, job_id: str, progress: float) -> bool:
    """Write progress of a running job; returns True if a cancel was requested meanwhile."""
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(progress=progress, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    row = session.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).one_or_none()
    return row is None or row.status != RUNNING or bool(row.cancel_requested)


def request_cancel(session: Session, job_id: str) -> bool:
    """Cancel a queued job now, or flag a running one to stop at its next checkpoint.

    Returns False when the job has already finished.
    """
    if transition(session, job_id, CANCELED, only_from={QUEUED}):
        return True
    flagged = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(cancel_requested=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    return flagged == 1

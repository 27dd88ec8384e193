"""The job state machine: every status change goes through `transition`.

Each change is one conditional UPDATE (WHERE status IN allowed sources), so two workers,
a worker and a cancel, or a redelivered message can never both win.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from jobs import events
from jobs.lifecycle import DEADLINE, EXPIRED_MESSAGE
from jobs.models import Job, utcnow
from jobs.webhooks import outbox

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELED = "canceled"
# A queued job whose deadline passed before any worker started it (jobs/lifecycle.py).
EXPIRED = "expired"

STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED, EXPIRED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELED, EXPIRED})
# What POST /v1/jobs/<id>/retry accepts: jobs that ended without a result.
RETRYABLE = frozenset({FAILED, CANCELED, EXPIRED})

ALLOWED = {
    QUEUED: frozenset({RUNNING, CANCELED, FAILED, EXPIRED}),
    # running -> queued: a retry after a transient failure, or the sweeper taking the job back
    # from a worker whose lease expired.
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELED, QUEUED}),
}

# The timestamp each target status stamps.
STAMPS = {RUNNING: "started_at", SUCCEEDED: "finished_at", FAILED: "finished_at", CANCELED: "finished_at",
          EXPIRED: "finished_at", QUEUED: "updated_at"}


class InvalidTransition(ValueError):
    pass


def sources_of(target: str) -> frozenset[str]:
    return frozenset(source for source, targets in ALLOWED.items() if target in targets)


def transition(session: Session, job_id: str, target: str, *, only_from=None, holder: "Holder | None" = None,
               **fields) -> bool:
    """Move a job to `target` if its current status allows it; True when this call won.

    With `holder`, only while that worker still holds that attempt: a worker whose lease expired
    (and whose job was given to another) can no longer finish it, so one result set stands.
    """
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
    if target != RUNNING:
        values.setdefault("lease_expires_at", None)
    if target == SUCCEEDED:  # an earlier attempt's error is history once a later one succeeds
        values.setdefault("error_code", None)
        values.setdefault("error_message", None)
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status.in_(sorted(sources)), *(holder.conditions() if holder else ()))
        .values(**values)
        .returning(Job.webhook_events)
        .execution_options(synchronize_session=False)
    )
    won = session.execute(statement).one_or_none()
    if won is not None:
        status_changed(session, job_id, target, fields)
        _webhook_event(session, job_id, target, won.webhook_events)
    return won is not None


def status_changed(session: Session, job_id: str, status: str, fields: dict | None = None) -> None:
    """The `status` event of a transition that won, written with its transaction (jobs/events.py)."""
    data = {"status": status}
    if (fields or {}).get("error_code"):
        data["error"] = {"code": fields["error_code"], "message": fields.get("error_message")}
    events.record(session, job_id, events.STATUS, data)


def _webhook_event(session: Session, job_id: str, target: str, subscribed: list | None) -> None:
    """The webhook delivery of this change, if the job asked for one: in this transaction, so it
    commits (or not) with the change itself."""
    event = outbox.START if target == RUNNING else outbox.COMPLETED if target in TERMINAL else None
    if event and subscribed:
        outbox.record_event(session, job_id, event, subscribed)


class Holder:
    """A worker's hold on one attempt of a job: the fencing token of its writes."""

    def __init__(self, worker: str, attempt: int):
        self.worker, self.attempt = worker, attempt

    def conditions(self):
        return Job.worker == self.worker, Job.attempts == self.attempt


def available(now: datetime):
    """The SQL condition of a queued job that may be claimed now: its retry backoff is over and
    its deadline has not passed (an overdue job waits only for the sweeper to mark it expired)."""
    return and_(or_(Job.available_at.is_(None), Job.available_at <= now),
                or_(Job.deadline_at.is_(None), Job.deadline_at > now))


def expire_overdue(session: Session, now: datetime, limit: int) -> list[str]:
    """queued -> expired for up to `limit` queued jobs whose deadline passed; returns their ids.

    Conditional like every transition: a job a worker claimed meanwhile stays running.
    """
    overdue = list(session.execute(
        select(Job.id).where(Job.status == QUEUED, Job.deadline_at <= now).order_by(Job.deadline_at).limit(limit)
    ).scalars())
    return [job_id for job_id in overdue
            if transition(session, job_id, EXPIRED, only_from={QUEUED}, error_code=DEADLINE,
                          error_message=EXPIRED_MESSAGE)]


def claim(session: Session, job_id: str, worker: str, lease_seconds: float = 60) -> bool:
    """queued -> running for exactly one worker; counts the attempt and starts its lease."""
    now = utcnow()
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == QUEUED, available(now))
        .values(status=RUNNING, worker=worker, attempts=Job.attempts + 1, started_at=now, updated_at=now,
                lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(Job.webhook_events)
        .execution_options(synchronize_session=False)
    )
    won = session.execute(statement).one_or_none()
    if won is not None:
        status_changed(session, job_id, RUNNING)
        _webhook_event(session, job_id, RUNNING, won.webhook_events)
    return won is not None


def renew_leases(session: Session, job_ids: list[str], worker: str, lease_seconds: float) -> int:
    """Extend the leases this worker still holds; returns how many it holds."""
    if not job_ids:
        return 0
    now = utcnow()
    return session.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == RUNNING, Job.worker == worker)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    ).rowcount


def retry_later(session: Session, job_id: str, holder: Holder, delay: float, **fields) -> bool:
    """running -> queued, claimable after `delay` seconds (the sweeper publishes it then)."""
    now = utcnow()
    return transition(session, job_id, QUEUED, only_from={RUNNING}, holder=holder, worker=None,
                      available_at=now + timedelta(seconds=delay), published_at=None, progress=0.0, **fields)


def record_progress(session: Session, job_id: str, progress: float) -> bool:
    """Write progress of a running job; returns True if a cancel was requested meanwhile."""
    written = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == RUNNING)
        .values(progress=progress, updated_at=utcnow())
        .returning(Job.webhook_events)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if written is not None and written.webhook_events:
        outbox.record_event(session, job_id, outbox.PROGRESS, written.webhook_events)  # throttled there
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

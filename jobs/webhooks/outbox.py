"""The webhook outbox: a delivery row inserted in the same transaction as the job's status change.

So a committed transition always has its delivery (and a rolled-back one none), and neither a
worker nor a request waits on a receiver: the delivery loop (delivery.py) sends the rows later.
Each row keeps a snapshot of the job as the transition left it; the body is made from it.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from jobs.db import Database
from jobs.models import Job, UTCDateTime, WebhookDelivery, utcnow

START, PROGRESS, COMPLETED = "start", "progress", "completed"
EVENTS = (START, PROGRESS, COMPLETED)
DEFAULT_EVENTS = (COMPLETED,)
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
# A job's progress deliveries are at least this far apart, however often its progress is written
# (JANUS_PROGRESS_INTERVAL): a receiver gets a steady trickle, not one request per decode step.
PROGRESS_EVERY_SECONDS = 2.0
# How many of a job's deliveries GET shows (the latest).
SHOWN_PER_JOB = 20

_DATETIME_COLUMNS = frozenset(column.name for column in Job.__table__.columns if isinstance(column.type, UTCDateTime))


def record_event(session: Session, job_id: str, event: str, subscribed: list | None,
                 now: datetime | None = None) -> str | None:
    """In the caller's transaction, just after `job_id`'s change: queue a delivery of `event` if
    the job's webhook asked for it (`subscribed`, its webhook_events). Returns the delivery's id."""
    if not subscribed or event not in subscribed:
        return None
    now = now or utcnow()
    if event == PROGRESS and _progress_sent_since(session, job_id, now - timedelta(seconds=PROGRESS_EVERY_SECONDS)):
        return None
    job = session.execute(select(*Job.__table__.columns).where(Job.id == job_id)).one()
    if not job.webhook:
        return None
    delivery_id = f"msg_{uuid.uuid4().hex}"
    session.execute(insert(WebhookDelivery).values(
        id=delivery_id, job_id=job_id, owner=job.owner, event=event, url=job.webhook, snapshot=snapshot_of(job),
        status=PENDING, attempts=0, created_at=now, next_attempt_at=now))
    return delivery_id


def _progress_sent_since(session: Session, job_id: str, since: datetime) -> bool:
    latest = session.execute(select(func.max(WebhookDelivery.created_at))
                             .where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == PROGRESS)).scalar()
    return latest is not None and latest > since


def snapshot_of(job) -> dict:
    """The job's columns as JSON-ready values (timestamps as ISO 8601)."""
    return {name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in job._mapping.items()}


def job_from_snapshot(snapshot: dict) -> SimpleNamespace:
    """What snapshot_of stored, back as a row with Job's attribute names (for api/serialize)."""
    return SimpleNamespace(**{name: datetime.fromisoformat(value) if name in _DATETIME_COLUMNS and value else value
                              for name, value in snapshot.items()})


def deliveries_of(db: Database, job_ids: list[str]) -> dict[str, list]:
    """The latest SHOWN_PER_JOB deliveries of each job, oldest first (only jobs with a webhook
    need asking: the others have none)."""
    if not job_ids:
        return {}
    columns = (WebhookDelivery.id, WebhookDelivery.job_id, WebhookDelivery.event, WebhookDelivery.status,
               WebhookDelivery.attempts, WebhookDelivery.status_code, WebhookDelivery.last_error,
               WebhookDelivery.created_at, WebhookDelivery.last_attempt_at, WebhookDelivery.next_attempt_at,
               WebhookDelivery.finished_at)
    query = (select(*columns).where(WebhookDelivery.job_id.in_(job_ids))
             .order_by(WebhookDelivery.job_id, WebhookDelivery.created_at.desc()))
    if len(job_ids) == 1:
        query = query.limit(SHOWN_PER_JOB)
    found: dict[str, list] = {job_id: [] for job_id in job_ids}
    with db.autocommit() as connection:
        for row in connection.execute(query):
            if len(found[row.job_id]) < SHOWN_PER_JOB:
                found[row.job_id].append(row)
    return {job_id: rows[::-1] for job_id, rows in found.items()}

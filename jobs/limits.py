"""Per-tenant cap on unfinished (queued + running) jobs, exact under concurrent creates.

`insert_within_cap` stores a new job only while its tenant is under the cap. On PostgreSQL one
statement does it (the function of migration 0009): it takes a transaction-scoped advisory lock
for the tenant, so a tenant's creates are counted one after another, then counts and inserts.
On SQLite the job is inserted first, which takes the database's single write lock until commit,
then counted in the same transaction. Either way each count sees every job committed before it,
so concurrent requests cannot together overshoot the cap.
"""
from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from jobs import states
from jobs.db import Database
from jobs.models import Job

UNFINISHED = (states.QUEUED, states.RUNNING)


class TooManyUnfinishedJobs(Exception):
    def __init__(self, owner: str, limit: int):
        super().__init__(f"tenant {owner!r} already has {limit} unfinished jobs")
        self.owner = owner
        self.limit = limit


def count_unfinished(session: Session, owner: str) -> int:
    query = select(func.count()).select_from(Job).where(Job.owner == owner, Job.status.in_(UNFINISHED))
    return session.execute(query).scalar_one()


def insert_within_cap(db: Database, job: Job, limit: int) -> None:
    """Store `job` (from service.new_job) unless its owner already has `limit` unfinished jobs
    (0: no cap). Raises TooManyUnfinishedJobs, or IntegrityError for a reused idempotency key."""
    if db.is_postgresql:
        with db.driver_autocommit() as connection:
            inserted, = connection.execute(_INSERT_JOB, (row_json(job), limit, list(UNFINISHED))).fetchone()
        if not inserted:
            raise TooManyUnfinishedJobs(job.owner, limit)
        return
    with db.session() as session:
        session.add(job)
        if not limit:
            return
        session.flush()  # the new row, and with it SQLite's single write lock until commit
        if count_unfinished(session, job.owner) > limit:
            raise TooManyUnfinishedJobs(job.owner, limit)


_INSERT_JOB = "SELECT janusq_insert_job(%s::jsonb, %s, %s)"


def row_json(job: Job) -> str:
    """Every column of `job` as one JSON object, the form janusq_insert_job reads. A column left
    unset takes the model's default; the database's own defaults do not apply to this insert."""
    row = {}
    for column in Job.__table__.columns:
        value = getattr(job, column.key)
        if value is None and column.default is not None and column.default.is_scalar:
            value = column.default.arg
        row[column.name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(row)

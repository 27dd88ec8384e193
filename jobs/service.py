"""Job operations the API needs: create, read, list. Status changes (cancel too) go through states."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg.rows import namedtuple_row
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from jobs import lifecycle, states
from jobs.db import Database
from jobs.models import LOCAL_OWNER, Job, new_job_id, utcnow


class InvalidCursor(ValueError):
    pass


def fill_seed(params: dict) -> dict:
    """A null seed becomes a random one stored with the job, so any result can be reproduced."""
    if params.get("seed") is None:
        return {**params, "seed": secrets.randbelow(2**31)}
    return params


def request_fingerprint(job_type: str, params: dict, attachment: bytes | None = None) -> str:
    """Identifies a create request (before its seed is filled in) for idempotent retries."""
    digest = hashlib.sha256(json.dumps([job_type, params], sort_keys=True).encode())
    digest.update(hashlib.sha256(attachment or b"").digest())
    return digest.hexdigest()


def add_job(session: Session, job_type: str, params: dict, **fields) -> Job:
    """Add a new queued job to `session` (see `new_job` for the fields)."""
    job = new_job(job_type, params, **fields)
    session.add(job)
    return job


def new_job(job_type: str, params: dict, *, job_id: str | None = None, input_key: str | None = None,
            owner: str = LOCAL_OWNER, idempotency_key: str | None = None, request_hash: str | None = None,
            retry_of: str | None = None, priority: int = lifecycle.NORMAL, deadline_seconds: int | None = None,
            webhook: str | None = None, webhook_events: list | None = None, webhook_root: str | None = None) -> Job:
    """A new queued job, not yet stored: the API inserts it with limits.insert_within_cap.

    Every column is given a value here, none left to the database: the PostgreSQL insert sends
    the whole row (jobs/limits.py)."""
    now = utcnow()
    return Job(id=job_id or new_job_id(), owner=owner, type=job_type, status=states.QUEUED,
               params=fill_seed(params), random_seed=params.get("seed") is None, retry_of=retry_of,
               input_key=input_key, progress=0.0,
               cancel_requested=False, attempts=0, idempotency_key=idempotency_key,
               request_hash=request_hash, created_at=now, updated_at=now, priority=priority,
               deadline_at=now + timedelta(seconds=deadline_seconds) if deadline_seconds else None,
               webhook=webhook, webhook_events=webhook_events, webhook_root=webhook_root,
               # Published right after this commit; should that never happen (a crash, the broker
               # down), the sweeper publishes the job once this is requeue_after old.
               published_at=now)


def retry_params(job: Job) -> dict:
    """The parameters of a retry of `job`: the same, but a new seed where the service chose it."""
    return {**job.params, "seed": None} if job.random_seed else dict(job.params)


def mark_unpublished(session: Session, job_id: str) -> None:
    """The publish failed: let the sweeper publish this queued job at its next sweep."""
    session.execute(update(Job).where(Job.id == job_id, Job.status == states.QUEUED)
                    .values(published_at=None).execution_options(synchronize_session=False))


def find_by_idempotency_key(session: Session, key: str, owner: str = LOCAL_OWNER) -> Job | None:
    query = select(Job).where(Job.owner == owner, Job.idempotency_key == key)
    return session.execute(query).scalar_one_or_none()


def get_job(session: Session, job_id: str, owner: str = LOCAL_OWNER) -> Job | None:
    return session.execute(select(Job).where(Job.id == job_id, Job.owner == owner)).scalar_one_or_none()


_READ_JOB = select(*Job.__table__.columns).where(Job.id == bindparam("job_id"), Job.owner == bindparam("owner"))
_READ_JOB_SQL = (f"SELECT {', '.join(column.name for column in Job.__table__.columns)} FROM jobs "
                 "WHERE id = %(job_id)s AND owner = %(owner)s")


def read_job(db: Database, job_id: str, owner: str = LOCAL_OWNER):
    """The job as a plain row (its attributes named as Job's), or None: a poll's read, one
    autocommit statement without the ORM (and on PostgreSQL through psycopg directly, see
    Database.driver_autocommit)."""
    if db.is_postgresql:
        with db.driver_autocommit() as connection, connection.cursor(row_factory=namedtuple_row) as cursor:
            cursor.execute(_READ_JOB_SQL, {"job_id": job_id, "owner": owner})
            return cursor.fetchone()
    with db.autocommit() as connection:
        return connection.execute(_READ_JOB, {"job_id": job_id, "owner": owner}).one_or_none()


@dataclass(frozen=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


def list_jobs(session: Session, *, owner: str = LOCAL_OWNER, status: str | None = None,
              job_type: str | None = None, limit: int = 20, cursor: str | None = None) -> Page:
    """Newest first; the cursor is the (created_at, id) of the last job on the previous page."""
    query = select(Job).where(Job.owner == owner)
    if status:
        query = query.where(Job.status == status)
    if job_type:
        query = query.where(Job.type == job_type)
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created_at,
                                and_(Job.created_at == created_at, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    rows = list(session.execute(query).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1]) if more else None)


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this API returned") from exc

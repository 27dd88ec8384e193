"""Retention and deletion of a job's stored files (images, uploaded input: all under jobs/<id>/).

- Retention: a finished job's files are deleted `result_ttl` seconds after it finished, by the
  sweeper, a bounded batch per sweep (`expire_results`); the row stays, with result_expired_at.
- Deletion (DELETE /v1/jobs/<id>): `delete_job` removes the files and the row now.

A worker may still be writing a job's files when its row goes (a running job deleted, or a stale
attempt whose lease had run out). No row is ever kept as a tombstone for it; instead:
- `delete_job` deletes the files, then the row, then the files again: whatever a worker stored
  before the row went is gone after the second pass (a worker stores before it finishes, and a
  finish after the row went fails);
- a worker whose finishing write fails looks at the row, and if it is gone deletes what it stored
  itself (`clean_up_if_deleted`), after its last write.
Only a worker killed between its storage writes and its finishing write after a delete leaves
files behind; the S3 lifecycle rule in the README catches those.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from jobs import states
from jobs.db import Database
from jobs.models import DeletedJobCount, Job, WebhookDelivery, utcnow
from jobs.storage import Storage, StorageError

log = logging.getLogger(__name__)

# Jobs whose files one sweep deletes at most: each costs a listing and a delete on S3, and the
# sweep holds the sweeper lock meanwhile. A backlog (a lowered TTL) drains over several sweeps.
EXPIRE_BATCH = 100


def job_prefix(job_id: str) -> str:
    """Where every file of a job lives (worker/results.py, api/routes.py: jobs/<id>/...)."""
    return f"jobs/{job_id}/"


def expires_at(job: Job, result_ttl: int) -> datetime | None:
    """When a finished job's files are (or were) deleted; None while unfinished or kept forever."""
    if job.result_expired_at is not None:
        return job.result_expired_at
    if job.status not in states.TERMINAL or job.finished_at is None or not result_ttl:
        return None
    return job.finished_at + timedelta(seconds=result_ttl)


class Retention:
    """The sweeper's retention pass."""

    def __init__(self, db: Database, storage: Storage, result_ttl: int, batch: int = EXPIRE_BATCH):
        self.db, self.storage, self.result_ttl, self.batch = db, storage, result_ttl, batch

    def expire_results(self, now: datetime | None = None) -> list[str]:
        """Deletes the files of up to `batch` finished jobs past their TTL, oldest first; returns their ids."""
        if not self.result_ttl:
            return []
        now = now or utcnow()
        expired = []
        for job_id in self._due(now):
            try:
                self.storage.delete_prefix(job_prefix(job_id))
            except StorageError as exc:  # storage is down: the next sweep tries again
                log.warning("retention could not delete the files of job %s: %s", job_id, exc)
                break
            # Marked only once the files are gone, so a failure above leaves the job to the next sweep.
            with self.db.session() as session:
                session.execute(update(Job).where(Job.id == job_id, Job.result_expired_at.is_(None))
                                .values(result_expired_at=now).execution_options(synchronize_session=False))
            expired.append(job_id)
        return expired

    def _due(self, now: datetime) -> list[str]:
        cutoff = now - timedelta(seconds=self.result_ttl)
        with self.db.session() as session:
            # The partial index ix_jobs_retention holds exactly the rows not yet expired, by finished_at.
            return list(session.execute(
                select(Job.id).where(Job.result_expired_at.is_(None), Job.finished_at < cutoff,
                                     Job.status.in_(sorted(states.TERMINAL)))
                .order_by(Job.finished_at).limit(self.batch)
            ).scalars())


def delete_job(db: Database, storage: Storage, job_id: str) -> bool:
    """The job's files and row, now (see the module's docstring for the order). A live job is
    canceled first, so a worker running it stops at its next checkpoint. False if there is no row.
    A StorageError from the first pass leaves the row in place (canceled, if it was live)."""
    with db.session() as session:
        states.request_cancel(session, job_id)
    storage.delete_prefix(job_prefix(job_id))
    with db.session() as session:
        gone = session.execute(delete(Job).where(Job.id == job_id).returning(Job.type, Job.status)
                               .execution_options(synchronize_session=False)).one_or_none()
        deleted = gone is not None
        if deleted:
            count_deleted(session, gone.type, gone.status)
        # Its webhook deliveries hold snapshots of it (prompt, answer): they go with it, pending ones too.
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                        .execution_options(synchronize_session=False))
        if db.events is not None:  # so do its events (jobs/events.py)
            db.events.forget(session, job_id)
    try:
        storage.delete_prefix(job_prefix(job_id))
    except StorageError as exc:  # only what a worker stored in the last moments; the worker or S3's rule cleans it
        log.warning("job %s deleted, but its files could not be deleted a second time: %s", job_id, exc)
    return deleted


def count_deleted(session, job_type: str, status: str) -> None:
    """One more deleted job of this type and status (DeletedJobCount), in the deleting transaction."""
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(DeletedJobCount).values(type=job_type, status=status, count=1)
    session.execute(statement.on_conflict_do_update(index_elements=["type", "status"],
                                                    set_={"count": DeletedJobCount.count + 1}))


def clean_up_if_deleted(db: Database, storage: Storage, job_id: str) -> bool:
    """After a worker's finishing write failed: if the job was deleted meanwhile, delete what the
    worker stored for it (nobody else will). True when it did."""
    with db.session() as session:
        if session.execute(select(Job.id).where(Job.id == job_id)).first() is not None:
            return False  # another attempt holds the job: its files are that attempt's too
    try:
        storage.delete_prefix(job_prefix(job_id))
    except StorageError as exc:  # the worker goes on; S3's lifecycle rule (README) is the net
        log.warning("job %s was deleted while it ran, and its files could not be deleted: %s", job_id, exc)
        return False
    log.info("job %s was deleted while it ran; its stored files are deleted", job_id)
    return True

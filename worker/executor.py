"""Runs a batch of the type of the job a message names (in claim order), then drains the queue.

Celery's task is a thin wrapper around `Executor.run`, which tests can call directly. After the
message's batch, the executor keeps claiming batches straight from the database while jobs of
the types it serves are queued (oldest first) (no broker round trip, so back-to-back jobs start within milliseconds),
for at most `drain_seconds` after the task started so that one task never nears its time limit.
The messages of jobs taken this way are later dropped as "skipped" (and drain the queue too).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from sqlalchemy import select

from jobs.db import Database
from jobs.heartbeat import HeartbeatRow
from jobs.models import Job
from jobs.storage import Storage
from worker.batch import BatchRunner, error_code_of
from worker.claims import BatchLimits, Claimed, claim_batch, claim_oldest_batch
from worker.progress import ProgressReporter
from worker.retry import RetryPolicy

__all__ = ["BatchLimits", "Claimed", "Executor", "ProgressReporter", "error_code_of"]

log = logging.getLogger(__name__)


class Executor:
    def __init__(self, db: Database, storage: Storage, model_provider: Callable, worker_name: str,
                 progress_interval: float, *, limits: BatchLimits | None = None, drain_seconds: float = 0.0,
                 should_stop: Callable[[], bool] = lambda: False, retry: RetryPolicy = RetryPolicy(),
                 job_types: tuple[str, ...] = (), heartbeat: HeartbeatRow | None = None, previews: int = 0):
        self.db, self.worker_name = db, worker_name
        # What this worker serves (its queues); draining takes the oldest queued job of any of them.
        self.job_types = tuple(job_types)
        self.limits = limits or BatchLimits()
        self.drain_seconds, self.should_stop = drain_seconds, should_stop
        self.runner = BatchRunner(db, storage, model_provider, progress_interval, worker_name=worker_name,
                                  lease_seconds=self.limits.lease_seconds, retry=retry, heartbeat=heartbeat,
                                  previews=previews)

    def run(self, job_id: str) -> str:
        """Returns the job's status afterwards, or 'skipped' when the job was not claimable.

        The message's batch is the next of its type in claim order (worker/claims.py), so the job
        may run in a later batch of the drain, or stay queued behind jobs of higher priority.
        """
        started = time.monotonic()
        self.runner.model_provider()  # no model, no claim: a failure here leaves the job queued
        batch = self._claim(lambda session: claim_batch(session, job_id, self.worker_name, self.limits))
        if not batch:
            log.info("job %s not claimable (taken, canceled, finished or missing); dropping message", job_id)
            if job_type := self._type_of(job_id):
                # A stale message (its job rode along in an earlier batch): jobs queued since may sit
                # behind more of these on a polling broker, so take them from the database now.
                self.drain(job_type, started)
            return "skipped"
        statuses = self.runner.run(batch)
        self.drain(batch[0].type, started)
        return statuses.get(job_id) or self._status_of(job_id)

    def drain(self, job_type: str, started: float | None = None) -> int:
        """Runs batches of queued jobs (of `job_type` and the other types this worker serves, oldest
        first) until none is left or time is up; returns how many batches."""
        started = time.monotonic() if started is None else started
        types = tuple(dict.fromkeys((job_type, *self.job_types)))
        count = 0
        while time.monotonic() - started < self.drain_seconds and not self.should_stop():
            batch = self._claim(lambda session: claim_oldest_batch(session, types, self.worker_name, self.limits))
            if not batch:
                break
            self.runner.run(batch)
            count += 1
        return count

    def _claim(self, claim: Callable) -> list[Claimed]:
        with self.db.session() as session:
            return claim(session)

    def _type_of(self, job_id: str) -> str | None:
        with self.db.session() as session:
            return session.execute(select(Job.type).where(Job.id == job_id)).scalar_one_or_none()

    def _status_of(self, job_id: str) -> str | None:
        with self.db.session() as session:
            return session.execute(select(Job.status).where(Job.id == job_id)).scalar_one_or_none()

"""Per-job progress: rate-limited database writes that double as the cancel check.

The jobs of one batch share a `BatchProgress`: every `interval` seconds it writes all of their
progress and reads all of their cancel flags in one transaction, so a batch of 32 jobs costs one
commit per interval on the decode loop instead of 32.
"""
from __future__ import annotations

import time
from datetime import datetime

from jobs import states
from jobs.db import Database
from jobs.lifecycle import DEADLINE
from jobs.models import utcnow

CANCELED_ON_REQUEST = "request"


class BatchProgress:
    def __init__(self, db: Database, interval: float):
        self.db, self.interval = db, interval
        self.members: list[ProgressReporter] = []
        self._last_write = 0.0

    @classmethod
    def reporters(cls, db: Database, job_ids: list[str], interval: float,
                  deadlines: dict[str, datetime | None] | None = None) -> dict[str, "ProgressReporter"]:
        """One reporter per job id, each with its job's deadline if `deadlines` gives one."""
        group, deadlines = cls(db, interval), deadlines or {}
        return {job_id: ProgressReporter(db, job_id, interval, group=group, deadline=deadlines.get(job_id))
                for job_id in job_ids}

    def maybe_write(self) -> None:
        now = time.monotonic()
        if now - self._last_write < self.interval:
            return
        self._last_write = now
        live = [member for member in self.members if not member.stopped]
        if not live:
            return
        with self.db.session() as session:
            for member in live:
                # True when a cancel was requested or the job is no longer running.
                if states.record_progress(session, member.job_id, member.fraction()):
                    member.stop(CANCELED_ON_REQUEST)


class ProgressReporter:
    """One job's progress callback: says whether to keep going.

    The model calls it after every decode step; returning False (a cancel was requested, the job
    is no longer running, or its deadline passed) makes the model end that job alone with
    GenerationStopped. The deadline is checked on every step against this clock, with no query.
    """

    def __init__(self, db: Database, job_id: str, interval: float, group: BatchProgress | None = None,
                 deadline: datetime | None = None):
        self.job_id, self.deadline = job_id, deadline
        self.stop_reason: str | None = None
        self.group = group or BatchProgress(db, interval)
        self.group.members.append(self)
        self._started = time.monotonic()
        self.steps = 0
        self.total = 0
        self.stopped = False

    def __call__(self, done: int, total: int) -> bool:
        self.steps, self.total = done, total
        if not self.stopped and self.deadline is not None and utcnow() >= self.deadline:
            self.stop(DEADLINE)
        if not self.stopped:
            self.group.maybe_write()
        # Stays False once stopped, should the model ask again (e.g. when retrying alone).
        return not self.stopped

    def stop(self, reason: str) -> None:
        self.stopped, self.stop_reason = True, reason

    def fraction(self) -> float:
        return min(self.steps / max(self.total, 1), 0.99)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_per_step(self) -> float | None:
        return (time.monotonic() - self._started) / self.steps if self.steps else None

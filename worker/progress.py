"""Per-job progress: rate-limited database writes that double as the cancel check."""
from __future__ import annotations

import time

from jobs import states
from jobs.db import Database


class ProgressReporter:
    """Writes progress at most every `interval` seconds and says whether to keep going.

    The model calls it after every decode step; returning False (a cancel was requested, or the
    job is no longer running) makes the model end that job alone with GenerationStopped.
    """

    def __init__(self, db: Database, job_id: str, interval: float):
        self.db, self.job_id, self.interval = db, job_id, interval
        self._last_write = 0.0
        self._started = time.monotonic()
        self.steps = 0
        self.stopped = False

    def __call__(self, done: int, total: int) -> bool:
        self.steps = done
        if self.stopped:
            return False  # stays stopped, should the model ask again (e.g. when retrying alone)
        now = time.monotonic()
        if now - self._last_write < self.interval:
            return True
        self._last_write = now
        with self.db.session() as session:
            self.stopped = states.record_progress(session, self.job_id, min(done / max(total, 1), 0.99))
        return not self.stopped

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_per_step(self) -> float | None:
        return (time.monotonic() - self._started) / self.steps if self.steps else None

"""Per-job progress: rate-limited database writes that double as the cancel check.

The jobs of one batch share a `BatchProgress`: every `interval` seconds it writes all of their
progress and reads all of their cancel flags in one transaction, so a batch of 32 jobs costs one
commit per interval on the decode loop instead of 32. The same write records each job's
`progress` event and, for an answer being decoded, its `output` event (the text so far), so the
event stream moves at the pace of the progress column (jobs/events.py).
"""
from __future__ import annotations

import base64
import time
from datetime import datetime
from typing import Callable

from jobs import events, states
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
                member.record_events(session)


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
        self._steps_published = 0
        self._text_so_far: Callable[[], str] | None = None
        self.text_published: str | None = None
        self._preview: dict | None = None  # the latest preview not yet published

    def __call__(self, done: int, total: int) -> bool:
        self.steps, self.total = done, total
        if not self.stopped and self.deadline is not None and utcnow() >= self.deadline:
            self.stop(DEADLINE)
        if not self.stopped:
            self.group.maybe_write()
        # Stays False once stopped, should the model ask again (e.g. when retrying alone).
        return not self.stopped

    def partial_text(self, text_so_far: Callable[[], str]) -> None:
        """The model offers the answer so far; it is decoded only when published, at the next write."""
        self._text_so_far = text_so_far

    def record_events(self, session) -> None:
        """This job's `progress` event (when it moved) and `output` event (when the text grew)."""
        if self.steps != self._steps_published:
            self._steps_published = self.steps
            events.record(session, self.job_id, events.PROGRESS, self.progress_event())
        if self._text_so_far is not None:
            text, self._text_so_far = self._text_so_far(), None
            self.record_output(session, text)
        if self._preview is not None:
            events.record(session, self.job_id, events.PREVIEW, self._preview)
            self._preview = None

    def preview(self, images: list[tuple[int, bytes]], step: int) -> None:
        """The model's latest preview JPEGs of this job's images (after `step` of each image's
        tokens); a newer one replaces it unpublished, so only the latest goes out each write."""
        self._preview = {"tokens": step, "images": [
            {"index": index, "url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()}
            for index, jpeg in images]}

    def record_output(self, session, text: str) -> None:
        if text != self.text_published:
            self.text_published = text
            events.record(session, self.job_id, events.OUTPUT, {"text": text})

    def progress_event(self) -> dict:
        per_step = self.seconds_per_step()
        left = max(self.total - self.steps, 0)
        return {"progress": round(self.fraction(), 4), "step": self.steps, "steps": self.total,
                "eta_seconds": round(per_step * left, 2) if per_step is not None else None}

    def stop(self, reason: str) -> None:
        self.stopped, self.stop_reason = True, reason

    def fraction(self) -> float:
        return min(self.steps / max(self.total, 1), 0.99)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_per_step(self) -> float | None:
        return (time.monotonic() - self._started) / self.steps if self.steps else None

"""Requests held open until a job finishes (`Prefer: wait=N`), without starving the other routes.

Two things keep a waiting request cheap:

- A cap per API process (`Settings.waiting_capacity`): a wait beyond it is declined at once (the
  route answers 202 without Preference-Applied), so under gunicorn's gthread worker some threads
  always remain for /healthz, polls and submits, however many clients ask to wait.
- One watcher per process: a thread that asks the database, in one query every
  CHECK_INTERVAL_SECONDS, which of the awaited jobs have finished, and wakes their waiters. A
  waiting request holds no database connection and makes no query of its own until it is woken;
  with nobody waiting the watcher sleeps and queries nothing. The check loads the finished jobs
  whole and hands each to its waiters, so a batch that finishes wakes them without a query each.

Under gunicorn's gevent worker (JANUS_API_WORKER_CLASS=gevent) gunicorn monkey-patches threading,
time and sockets (psycopg 3 and redis-py cooperate): the watcher is a greenlet and each waiter a
greenlet parked on an Event, so a process holds hundreds of waits in a few kilobytes each.

The event streams (api/events.py) take their places in the same room, and park on one Event that
this watcher sets when their job finishes and the event watcher (api/event_watch.py) sets when
their job has new events.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from jobs import states
from jobs.db import Database
from jobs.models import Job
from jobs.oneline import first_line

log = logging.getLogger(__name__)
# How stale a waiter's news may be: a finished job is answered at most this much later.
CHECK_INTERVAL_SECONDS = 0.1
# After a failed check (the database away): wait longer before the next, and say so once.
RETRY_AFTER_FAILURE_SECONDS = 1.0
IDS_PER_QUERY = 500  # keeps one statement's IN list modest


class WaitRoom:
    """The waits of one API process: at most `capacity` at once, woken by one shared watcher."""

    def __init__(self, db: Database, capacity: int, interval: float = CHECK_INTERVAL_SECONDS):
        self.db, self.capacity, self.interval = db, capacity, interval
        self._lock = threading.Lock()
        self._held = 0
        self._waiters: dict[str, set[threading.Event]] = {}
        self._finished: dict[str, Job] = {}  # handed from the watcher to the waiters it wakes
        self._someone_waits = threading.Event()
        self._watcher_pid: int | None = None
        self._failing = False
        self.checks = 0  # queries the watcher has made: tests count them

    @property
    def held(self) -> int:
        """Places taken now."""
        return self._held

    @contextmanager
    def place(self) -> Iterator[bool]:
        """Yields True while this request holds a place, False (at once) when the room is full."""
        with self._lock:
            placed = self._held < self.capacity
            self._held += placed
        try:
            yield placed
        finally:
            if placed:
                with self._lock:
                    self._held -= 1

    def wait_until_finished(self, job_id: str, seconds: float) -> Job | None:
        """Parks this thread (or greenlet) until the job is finished (the job, as the watcher
        read it) or `seconds` pass (None)."""
        woken = threading.Event()
        self.watch(job_id, woken)
        woken.wait(seconds)
        return self.unwatch(job_id, woken)

    def watch(self, job_id: str, woken: threading.Event) -> None:
        """Set `woken` once the job is finished (an event stream parks on it, api/events.py)."""
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(woken)
            self._someone_waits.set()  # under the lock: the watcher clears it only under it too
            self._ensure_watcher()

    def finished(self, job_id: str) -> Job | None:
        """The job, if the watcher found it finished."""
        with self._lock:
            return self._finished.get(job_id)

    def unwatch(self, job_id: str, woken: threading.Event) -> Job | None:
        """Stop watching; the job if the watcher found it finished."""
        with self._lock:
            events = self._waiters.get(job_id, set())
            events.discard(woken)
            if not events:
                self._waiters.pop(job_id, None)
            return self._finished.pop(job_id, None) if not events else self._finished.get(job_id)

    def _ensure_watcher(self) -> None:
        # Started by the first wait, in the serving process: a thread started before gunicorn
        # forks would not exist in its workers.
        if self._watcher_pid != os.getpid():
            self._watcher_pid = os.getpid()
            threading.Thread(target=self._watch, name="janus-wait-watcher", daemon=True).start()

    def _watch(self) -> None:
        while True:
            self._someone_waits.wait()
            awaited = self._awaited()
            if not awaited:
                continue
            try:
                finished = self._finished_among(awaited)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive any failure
                self._note_failure(exc)
                time.sleep(RETRY_AFTER_FAILURE_SECONDS)
                continue
            self._wake(finished)
            time.sleep(self.interval)

    def _awaited(self) -> list[str]:
        with self._lock:
            if not self._waiters:
                self._someone_waits.clear()
            return list(self._waiters)

    def _finished_among(self, job_ids: list[str]) -> list[Job]:
        finished: list[Job] = []
        with self.db.read_session() as session:
            for start in range(0, len(job_ids), IDS_PER_QUERY):
                chunk = job_ids[start:start + IDS_PER_QUERY]
                finished.extend(session.execute(
                    select(Job).where(Job.id.in_(chunk), Job.status.in_(states.TERMINAL))).scalars())
        self.checks += 1
        if self._failing:
            self._failing = False
            log.info("waits: the database answers again")
        return finished

    def _note_failure(self, exc: Exception) -> None:
        # Waiters then run out their time and read the job themselves (a 503 if it is still down).
        if not self._failing:
            self._failing = True
            reason = first_line(exc)
            level = logging.WARNING if isinstance(exc, SQLAlchemyError) else logging.ERROR
            log.log(level, "waits: cannot check the awaited jobs (%s); retrying every %.0f s",
                    reason, RETRY_AFTER_FAILURE_SECONDS)

    def _wake(self, jobs: list[Job]) -> None:
        with self._lock:
            for job in jobs:
                if job.id in self._waiters:  # not gone meanwhile (its time ran out)
                    self._finished[job.id] = job
                    for event in self._waiters[job.id]:
                        event.set()

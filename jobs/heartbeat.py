"""Heartbeat rows: each worker says who it is, that it is alive, and which batch it runs.

Writes are few on purpose, since every worker of a fleet shares one database: one upsert when
the worker starts, one UPDATE per beat (every JANUS_HEARTBEAT_SECONDS, from a thread of the
Celery main process, as the sweeper runs), one when its model is loaded, two per batch (its
start and its end, from the process that runs it), and one when the worker stops. Nothing per
job or per decode step.
A worker that cannot write (the database is down) keeps working and tries again next beat:
visibility must never stop the work. jobs/workers.py reads the rows.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterator

from sqlalchemy import case, delete, insert, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from jobs.db import Database
from jobs.models import Worker, WorkerBatch, utcnow

log = logging.getLogger(__name__)

# starting: loading its model (takes no jobs yet); running; draining: finishing its batch before
# it stops; stopped: a clean shutdown.
STARTING, RUNNING, DRAINING, STOPPED = "starting", "running", "draining", "stopped"
# Rows of workers unheard of for this long are deleted when another worker starts: names made
# of a pid or a pod's name are never reused, and the listing would otherwise grow forever.
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class WorkerIdentity:
    """What a worker is, written when it starts."""

    name: str  # the Celery node name, e.g. gpu0@host: one row per worker process
    host: str
    pid: int
    device: str
    model: str
    queues: tuple[str, ...]
    beat_seconds: float
    started_at: datetime = field(default_factory=utcnow)


def heartbeat_database(url: str) -> Database:
    """The main process's connections for its beats: one opened per beat and closed after it.
    Holding one open would cost every worker of a fleet a server connection that is idle 99 %
    of the time (64 workers were 64 of PostgreSQL's 100), and on SQLite a connection must never
    cross the fork of the pool process, which happens while the beats run."""
    return Database(url, pooled=False)


class HeartbeatRow:
    """The writes to one worker's row. Each method is one short transaction."""

    def __init__(self, db: Database, name: str):
        self.db, self.name = db, name

    def register(self, identity: WorkerIdentity, state: str = STARTING) -> None:
        """Create the row, or take over the one an earlier process of this name left."""
        now = utcnow()
        values = {"host": identity.host[:255], "pid": identity.pid, "device": identity.device[:128],
                  "model": identity.model[:255], "queues": list(identity.queues), "state": state,
                  "beat_seconds": identity.beat_seconds, "started_at": identity.started_at,
                  "last_seen_at": now, "stopped_at": None, "batch": None}
        with self.db.session() as session:
            session.execute(delete(Worker).where(Worker.last_seen_at < now - FORGET_AFTER))
            if self._update(session, **values):
                return
        try:
            with self.db.session() as session:
                session.execute(insert(Worker).values(name=self.name, **values))
        except IntegrityError:  # another process of this name inserted first: take the row over
            with self.db.session() as session:
                self._update(session, **values)

    def beat(self, state: str = RUNNING) -> bool:
        """Alive (and running or draining); False if the row is missing, to be registered again."""
        with self.db.session() as session:
            return self._update(session, last_seen_at=utcnow(), state=state)

    def stop(self) -> None:
        now = utcnow()
        with self.db.session() as session:
            self._update(session, state=STOPPED, stopped_at=now, last_seen_at=now, batch=None)

    def report_ready(self, device: str) -> None:
        """The model is loaded, on this device (`auto` resolved): said by the process that runs
        batches. A new such process runs no batch yet, so one its predecessor left is cleared."""
        running = case((Worker.state == STARTING, RUNNING), else_=Worker.state)  # draining stays draining
        self._quietly("model", lambda session: self._update(session, device=device[:128], batch=None,
                                                            state=running))

    @contextmanager
    def batch(self, batch_id: str, job_type: str, job_ids: list[str], size: int) -> Iterator[None]:
        """Shows the batch on the row while it runs, and counts it for /metrics."""
        started = utcnow()
        shown = {"id": batch_id, "type": job_type, "jobs": list(job_ids), "size": size,
                 "started_at": started.isoformat().replace("+00:00", "Z")}

        def start(session) -> None:
            session.execute(insert(WorkerBatch).values(batch_id=batch_id, worker=self.name, type=job_type,
                                                       jobs=len(job_ids), size=size, started_at=started))
            self._update(session, batch=shown)

        self._quietly("batch start", start)
        try:
            yield
        finally:
            self._quietly("batch end", lambda session: self._update(session, batch=None))

    def _update(self, session, **values) -> bool:
        statement = (update(Worker).where(Worker.name == self.name).values(**values)
                     .execution_options(synchronize_session=False))
        return session.execute(statement).rowcount == 1

    def _quietly(self, what: str, write) -> None:
        try:
            with self.db.session() as session:
                write(session)
        except SQLAlchemyError as exc:
            log.warning("heartbeat row %s: could not record the %s (%s)", self.name, what, type(exc).__name__)


class HeartbeatLoop:
    """Registers the worker, then beats every `beat_seconds` in a daemon thread until stopped.

    It starts before the model loads (which can take minutes), so a loading worker reads as
    starting, not gone. `model_ready` says whether the process that runs batches has its model;
    a beat carries the state, so a row re-registered after it vanished is right again.
    """

    def __init__(self, row: HeartbeatRow, identity: WorkerIdentity, model_ready: Callable[[], bool] = lambda: True):
        self.row, self.identity, self.model_ready = row, identity, model_ready
        self.registered = False
        self._draining = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> str:
        if self._draining:
            return DRAINING
        return RUNNING if self.model_ready() else STARTING

    def register(self) -> bool:
        try:
            self.row.register(self.identity, self.state)
            self.registered = True
        except SQLAlchemyError as exc:  # the loop tries again at each beat
            log.warning("heartbeat row %s: could not register (%s)", self.row.name, type(exc).__name__)
        return self.registered

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="janusq-heartbeat", daemon=True)
        self._thread.start()

    def draining(self) -> None:
        """Asked to shut down: say so at once (safe from a signal handler: it only sets flags)."""
        self._draining = True
        self._wake.set()

    def stop(self) -> None:
        """A clean shutdown: the beats end and the row says stopped."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=self.identity.beat_seconds + 5)
        try:
            self.row.stop()
            log.info("heartbeat row %s: stopped", self.row.name)
        except SQLAlchemyError as exc:
            log.warning("heartbeat row %s: could not mark it stopped (%s)", self.row.name, type(exc).__name__)

    def tick(self) -> None:
        if not self.registered or not self.row.beat(self.state):
            self.registered = False  # the row vanished (e.g. forgotten or a restored database)
            self.register()

    def _run(self) -> None:
        # register() has just written the row; the first beat waits an interval, by which time
        # the pool process has forked.
        self._wake.wait(self.identity.beat_seconds)
        self._wake.clear()
        while not self._stop.is_set():
            try:
                self.tick()
            except SQLAlchemyError as exc:  # the database is down: beat again next interval
                log.warning("heartbeat row %s: database unavailable (%s)", self.row.name, type(exc).__name__)
            except Exception:  # noqa: BLE001 - never let the loop die
                log.exception("heartbeat tick failed")
            self._wake.wait(self.identity.beat_seconds)
            self._wake.clear()

"""Job events: what GET /v1/jobs/<id>/events streams (api/events.py).

Kinds: `status` (each transition, jobs/states.py), `progress` and `output` (worker/progress.py),
`preview` (generate jobs). A writer `record`s an event on the session whose transaction makes
it true; Database.session() hands the session's events to its EventLog, which keeps them where
every API process can read them:

- RedisEventLog (the production stack, whose broker is Redis): one Redis stream per job, capped
  at `events_max_length` entries and expiring `events_ttl` seconds after its last event. The
  events are appended right after the commit, so no reader sees an event before the change it
  reports; a crash in between loses them (the stream's reader then learns of the job's end from
  the database, api/events.py).
- TableEventLog (the embedded stack: SQLite, no Redis): rows of `job_events`, inserted in the
  very transaction they report; the sweeper deletes rows older than `events_ttl`.

Event ids are the log's own (a Redis stream id, a row id): ordered within a job, and what a
client sends back as Last-Event-ID to get the events after it.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from jobs.models import JobEvent, utcnow

if TYPE_CHECKING:
    from jobs.db import Database
    from jobs.settings import Settings

log = logging.getLogger(__name__)

STATUS, PROGRESS, OUTPUT, PREVIEW = "status", "progress", "output", "preview"
_PENDING = "janus_events"
MAX_REDIS_CONNECTIONS = 16  # per process  # the key of a session's recorded events in session.info


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict


class InvalidEventId(ValueError):
    pass


def record(session: Session, job_id: str, kind: str, data: dict) -> None:
    """Keep an event with `session`: written when (and only if) its transaction commits."""
    session.info.setdefault(_PENDING, []).append((job_id, kind, {**data, "at": _iso(utcnow())}))


def take_recorded(session: Session) -> list[tuple[str, str, dict]]:
    return session.info.pop(_PENDING, None) or []


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


class RedisEventLog:
    """A Redis stream per job (XADD with MAXLEN ~ and EXPIRE; XRANGE to read; XREAD to watch)."""

    START = "0-0"
    _ID = re.compile(r"^\d{1,20}-\d{1,20}$")

    def __init__(self, url: str, ttl: int, max_length: int):
        self.url, self.ttl, self.max_length = url, ttl, max_length
        self._client = None

    @property
    def client(self):
        if self._client is None:  # made on first use: after any fork, in the process that uses it
            import redis

            # A blocking pool: hundreds of streams reading at once (greenlets under gevent) queue
            # for a few connections instead of opening one each or failing with "Too many connections".
            pool = redis.BlockingConnectionPool.from_url(self.url, max_connections=MAX_REDIS_CONNECTIONS, timeout=10,
                                                         socket_timeout=10, socket_connect_timeout=5)
            self._client = redis.Redis(connection_pool=pool)
        return self._client

    @staticmethod
    def key(job_id: str) -> str:
        return f"janus:events:{job_id}"

    def write_in(self, session: Session, events: list) -> None:
        """Nothing before the commit: Redis is not part of the database's transaction."""

    def publish(self, events: list) -> None:
        """After the commit. A failure is logged, never raised: the change itself has committed."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for job_id, kind, data in events:
                pipe.xadd(self.key(job_id), {"kind": kind, "data": json.dumps(data)},
                          maxlen=self.max_length, approximate=True)
                pipe.expire(self.key(job_id), self.ttl)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - e.g. Redis restarting: the events are lost, the job is not
            log.warning("could not publish %d job events: %s", len(events), exc)

    def read(self, job_id: str, after: str | None) -> list[Event]:
        entries = self.client.xrange(self.key(job_id), f"({after}" if after else "-", "+")
        return [self._event(entry_id, fields) for entry_id, fields in entries]

    def news(self, known: dict[str, str], block_seconds: float) -> dict[str, str]:
        """{job_id: its newest event id} for the jobs with events after `known`'s ids, waiting up
        to `block_seconds` for some (one XREAD over every watched job)."""
        streams = {self.key(job_id): after for job_id, after in known.items()}
        answer = self.client.xread(streams, count=self.max_length, block=max(1, int(block_seconds * 1000)))
        return {_text(key).rsplit(":", 1)[1]: _text(entries[-1][0]) for key, entries in answer or () if entries}

    def check_id(self, text: str) -> str:
        if not self._ID.match(text):
            raise InvalidEventId(f"{text!r} is not an event id of this stream")
        return text

    def prune(self, session: Session, now: datetime) -> int:
        return 0  # each stream expires by itself

    def forget(self, session: Session, job_id: str) -> None:
        """A deleted job's events (its answer, its previews) go with it."""
        try:
            self.client.delete(self.key(job_id))
        except Exception as exc:  # noqa: BLE001 - the stream expires by itself all the same
            log.warning("could not delete job %s's events: %s", job_id, exc)

    @staticmethod
    def _event(entry_id, fields: dict) -> Event:
        return Event(_text(entry_id), _text(fields[b"kind"]), json.loads(fields[b"data"]))


class TableEventLog:
    """The `job_events` table, for the embedded stack."""

    START = "0"
    NEWS_INTERVAL = 0.1  # how often the watcher asks the table for news

    def __init__(self, db: "Database", ttl: int):
        self.db, self.ttl = db, ttl

    def write_in(self, session: Session, events: list) -> None:
        """In the transaction that makes them true: they commit, or vanish, with it."""
        now = utcnow()
        session.execute(insert(JobEvent), [{"job_id": job_id, "kind": kind, "data": data, "created_at": now}
                                           for job_id, kind, data in events])

    def publish(self, events: list) -> None:
        """Nothing after the commit: the rows went in with it."""

    def read(self, job_id: str, after: str | None) -> list[Event]:
        query = select(JobEvent.id, JobEvent.kind, JobEvent.data).where(JobEvent.job_id == job_id)
        if after:
            query = query.where(JobEvent.id > int(after))
        with self.db.autocommit() as connection:
            rows = connection.execute(query.order_by(JobEvent.id)).all()
        return [Event(str(row.id), row.kind, row.data) for row in rows]

    def news(self, known: dict[str, str], block_seconds: float) -> dict[str, str]:
        query = (select(JobEvent.job_id, func.max(JobEvent.id)).where(JobEvent.job_id.in_(list(known)))
                 .group_by(JobEvent.job_id))
        with self.db.autocommit() as connection:
            heads = {job_id: str(head) for job_id, head in connection.execute(query)}
        news = {job_id: head for job_id, head in heads.items() if int(head) > int(known[job_id])}
        if not news:
            time.sleep(min(block_seconds, self.NEWS_INTERVAL))
        return news

    def check_id(self, text: str) -> str:
        if not text.isdigit() or len(text) > 20:
            raise InvalidEventId(f"{text!r} is not an event id of this stream")
        return text

    def prune(self, session: Session, now: datetime) -> int:
        """Delete events older than the ttl (the sweeper's, once a sweep)."""
        cutoff = now - timedelta(seconds=self.ttl)
        return session.execute(delete(JobEvent).where(JobEvent.created_at < cutoff)
                               .execution_options(synchronize_session=False)).rowcount

    def forget(self, session: Session, job_id: str) -> None:
        """A deleted job's events (its answer, its previews) go with it, in the deleting transaction."""
        session.execute(delete(JobEvent).where(JobEvent.job_id == job_id).execution_options(synchronize_session=False))


EventLog = RedisEventLog | TableEventLog


def attach_event_log(db: "Database", settings: "Settings") -> "Database":
    """Give `db` the deployment's event log: what its sessions' recorded events go to."""
    if settings.events_redis:
        db.events = RedisEventLog(settings.events_redis, settings.events_ttl, settings.events_max_length)
    else:
        db.events = TableEventLog(db, settings.events_ttl)
    return db


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""Engines and sessions: one engine per process, a short session per request or task."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from jobs.events import take_recorded

# A pooled connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0


def make_engine(url: str, pooled: bool = True, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """`pooled=False`: a connection per session, closed after it (nothing open between uses).

    Pooled: up to `pool_size` connections stay open between uses, and up to `max_overflow` more
    are opened under load and closed on return. Every open connection counts against the
    server's max_connections, shared by every API and worker process of a deployment; a process
    whose threads routinely hold more sessions than `pool_size` at once opens and closes a
    connection (a PostgreSQL backend) for every extra one."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pooled)
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    if not pooled:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, connect_args=connect_args)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, without a round trip per checkout under load.

    pool_pre_ping would ping on every checkout: one extra round trip per session, a third of
    a poll's database time. A connection back in the pool less than PING_AFTER_IDLE_SECONDS
    ago was working then; an older one (where a restarted database would have cut it) is
    pinged, and a dead one is replaced before the request sees it. A database that dies under load costs
    the requests that were using it a 503, and the pool is then renewed (SQLAlchemy
    invalidates every older connection on a disconnect error).
    """
    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record):
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("returned_at", 0.0) < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"stale pooled connection: {exc}") from exc


def _sqlite_engine(url: str, pooled: bool = True) -> Engine:
    _ensure_sqlite_folder(url)
    engine = create_engine(url, connect_args={"timeout": 30}, **({} if pooled else {"poolclass": NullPool}))

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):
        # WAL lets the API read while a worker writes; busy_timeout waits instead of failing.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _ensure_sqlite_folder(url: str) -> None:
    from pathlib import Path

    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


class Database:
    """Owns one engine; created lazily so nothing connects at import or before a fork."""

    def __init__(self, url: str, pooled: bool = True, pool_size: int = 5, max_overflow: int = 5):
        self.url, self.pooled = url, pooled
        self.pool_size, self.max_overflow = pool_size, max_overflow
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._creating = threading.Lock()
        # Where the job events its sessions record go (jobs/events.py, attach_event_log); None:
        # recorded events are dropped (tools and tests that stream nothing).
        self.events = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # A fresh API process's first requests arrive on several threads at once: one builds
            # the engine and its session makers, and `_engine` is set last, so no thread sees an
            # engine whose session makers are not there yet (an AttributeError, seen under load).
            with self._creating:
                if self._engine is None:
                    engine = make_engine(self.url, self.pooled, self.pool_size, self.max_overflow)
                    self._sessions = sessionmaker(engine, expire_on_commit=False)
                    # One statement needs no transaction: no BEGIN and COMMIT round trips around it.
                    self._autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
                    self._reads = sessionmaker(self._autocommit_engine, expire_on_commit=False)
                    self._engine = engine
        return self._engine

    @property
    def is_postgresql(self) -> bool:
        return self.url.startswith("postgres")

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A Core connection in autocommit mode: each statement its own transaction, with no
        BEGIN and COMMIT round trips and none of the ORM's per-object work (the hot paths)."""
        self.engine  # noqa: B018 - create the engine on first use
        with self._autocommit_engine.connect() as connection:
            yield connection

    @contextmanager
    def driver_autocommit(self):
        """PostgreSQL only: a pooled connection's psycopg connection itself, in autocommit mode.

        For the API's two hottest statements (a poll's read, a submit's insert): SQLAlchemy's
        execution around a statement costs about twice the statement's own client-side work.
        psycopg's errors are re-raised as SQLAlchemy's (IntegrityError, OperationalError, ...),
        so callers and the API's error handlers see one family; a broken connection is dropped
        from the pool rather than handed out again."""
        import psycopg

        proxy = self.engine.raw_connection()
        connection = proxy.driver_connection
        try:
            connection.autocommit = True
            yield connection
        except psycopg.Error as exc:
            if connection.broken or connection.closed:
                proxy.invalidate()
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc
        finally:
            if not (connection.broken or connection.closed):
                connection.autocommit = False
            proxy.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for one read-only statement (a lookup by key), in autocommit mode."""
        self.engine  # noqa: B018 - create the engine on first use
        session = self._reads()
        try:
            yield session
        finally:
            session.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error and always closes."""
        self.engine  # noqa: B018 - create the engine on first use
        assert self._sessions is not None
        session = self._sessions()
        try:
            yield session
            self._commit(session)
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _commit(self, session: Session) -> None:
        """Commit, with the job events recorded on the session (jobs/events.py): a table log
        writes them in this transaction, a Redis log appends them once it has committed."""
        recorded = take_recorded(session)
        if recorded and self.events is not None:
            self.events.write_in(session, recorded)
        session.commit()
        if recorded and self.events is not None:
            self.events.publish(recorded)

    def dispose(self) -> None:
        """Drop pooled connections (call in a child after fork)."""
        if self._engine is not None:
            self._engine.dispose(close=False)

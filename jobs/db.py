"""Engines and sessions: one engine per process, a short session per request or task."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool


def make_engine(url: str, pooled: bool = True, pool_size: int = 5, max_overflow: int = 5) -> Engine:
    """`pooled=False`: a connection per session, closed after it (nothing open between uses).

    Pooled: up to `pool_size` connections stay open between uses, and up to `max_overflow` more
    are opened under load and closed on return. Every open connection counts against the
    server's max_connections, shared by every API and worker process of a deployment."""
    if url.startswith("sqlite"):
        return _sqlite_engine(url, pooled)
    # pre_ping: a restarted database costs one failed request, not a poisoned pool.
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    if not pooled:
        return create_engine(url, poolclass=NullPool, connect_args=connect_args)
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow,
                         connect_args=connect_args)


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

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url, self.pooled, self.pool_size, self.max_overflow)
            self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success, rolls back on error and always closes."""
        self.engine  # noqa: B018 - create the engine on first use
        assert self._sessions is not None
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Drop pooled connections (call in a child after fork)."""
        if self._engine is not None:
            self._engine.dispose(close=False)

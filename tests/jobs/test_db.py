"""Sessions on PostgreSQL: autocommit reads, and pooled connections that died while idle."""
from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text

from jobs import db as db_module
from jobs.db import Database
from tests.conftest import POSTGRES_ADMIN
from tests.pgdb import fresh_database
from tests.threads import all_at_once


@pytest.fixture(scope="module")
def database():
    with fresh_database("janusq_db") as url:
        database = Database(url)
        yield database
        database.dispose()


def _autocommit(session) -> bool:
    return session.connection().connection.dbapi_connection.autocommit


def test_reads_run_without_a_transaction_and_leave_pooled_connections_transactional(database):
    with database.read_session() as session:
        assert _autocommit(session)
        assert session.execute(text("SELECT 1")).scalar_one() == 1
    with database.session() as session:  # most likely the same pooled connection
        assert not _autocommit(session)


def test_a_connection_cut_while_idle_is_replaced_before_a_request_sees_it(database, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.2)
    with database.session() as session:
        backend = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:  # as a database restart would
        admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
    time.sleep(0.3)
    with database.session() as session:
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != backend


def test_a_connection_used_moments_ago_is_not_pinged(database, monkeypatch):
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 60)
    pings = []
    monkeypatch.setattr(database.engine.dialect, "do_ping", lambda connection: pings.append(connection))
    for _ in range(3):
        with database.session() as session:
            session.execute(text("SELECT 1"))
    assert len(pings) <= 1  # only a connection the pool had not handed out yet


def test_threads_that_all_start_with_a_fresh_database_share_one_engine(monkeypatch, tmp_path):
    """A new API process's first requests come on several threads at once. Building the session
    makers is slowed here so that, had `_engine` been set before them, another thread would find
    an engine without its session makers (an AttributeError, once seen as a 500 under load)."""
    real_sessionmaker, made = db_module.sessionmaker, []

    def slow_sessionmaker(*args, **kwargs):
        time.sleep(0.05)
        return real_sessionmaker(*args, **kwargs)

    real_make_engine = db_module.make_engine

    def counted_make_engine(*args, **kwargs):
        made.append(1)
        return real_make_engine(*args, **kwargs)

    monkeypatch.setattr(db_module, "sessionmaker", slow_sessionmaker)
    monkeypatch.setattr(db_module, "make_engine", counted_make_engine)
    fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")

    def read():
        with fresh.read_session() as session:
            session.execute(text("SELECT 1"))

    _, failures = all_at_once(read, 8)
    fresh.dispose()
    assert failures == [] and len(made) == 1

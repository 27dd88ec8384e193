"""KEDA's query, run as KEDA runs it, on a real migrated PostgreSQL database, counts the right jobs.

The query lives in a YAML string no other test reads: a renamed table, column or status would
otherwise only show as workers that never scale up.
"""
from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

from jobs import states
from jobs.db import Database
from jobs.models import Job, utcnow
from tests.deploy.checks import query_of
from tests.pgdb import fresh_database

# Jobs a worker must still take or finish; the others need no worker.
NEEDS_A_WORKER = {states.QUEUED: 3, states.RUNNING: 2}
FINISHED = {states.SUCCEEDED: 4, states.FAILED: 1, states.CANCELED: 1, states.EXPIRED: 1}


@pytest.fixture(scope="session")  # once, whatever the renderings
def jobs_database():
    with fresh_database("janusq_keda") as url:
        db = Database(url)
        with db.session() as session:
            for status, count in {**NEEDS_A_WORKER, **FINISHED}.items():
                session.add_all(job(status, index) for index in range(count))
            session.commit()
        db.dispose()
        yield url


def job(status: str, index: int) -> Job:
    # One queued job waits out a retry backoff: it still needs a worker, soon.
    later = utcnow() + timedelta(seconds=30) if status == states.QUEUED and index == 0 else None
    return Job(type="generate" if index % 2 else "understand", status=status, params={}, available_at=later)


def test_statuses_cover_the_state_machine():
    assert set(NEEDS_A_WORKER) | set(FINISHED) == set(states.STATUSES)


def test_keda_counts_jobs_that_need_a_worker(manifests, jobs_database):
    url = make_url(jobs_database).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), connect_timeout=5) as connection:
        rows = connection.execute(query_of(manifests)).fetchall()
    assert len(rows) == 1 and len(rows[0]) == 1, f"KEDA needs one number, got {rows}"
    assert rows[0][0] == sum(NEEDS_A_WORKER.values())

"""The job state machine and job queries on SQLite and on PostgreSQL (migrated by Alembic)."""
from __future__ import annotations

import pytest
from sqlalchemy import inspect

from jobs import service, states
from jobs.models import Job


def _new(db, job_type="generate", **params) -> str:
    with db.session() as session:
        return service.add_job(session, job_type, {"prompt": "p", "seed": None, **params}).id


def test_migration_creates_the_jobs_table(db):
    assert "jobs" in inspect(db.engine).get_table_names()


def test_null_seed_is_replaced_and_stored(db):
    job_id = _new(db)
    with db.session() as session:
        seed = service.get_job(session, job_id).params["seed"]
    assert isinstance(seed, int) and 0 <= seed < 2**31


def test_claim_wins_once(db):
    job_id = _new(db)
    with db.session() as session:
        assert states.claim(session, job_id, "w1")
    with db.session() as session:
        assert not states.claim(session, job_id, "w2")
        job = session.get(Job, job_id)
        assert (job.status, job.worker, job.attempts) == ("running", "w1", 1)
        assert job.started_at is not None


def test_terminal_states_are_final(db):
    job_id = _new(db)
    with db.session() as session:
        states.claim(session, job_id, "w")
        assert states.transition(session, job_id, states.SUCCEEDED, result={"text": "x"})
    with db.session() as session:
        for target in (states.FAILED, states.CANCELED, states.RUNNING):
            assert not states.transition(session, job_id, target)
        assert session.get(Job, job_id).finished_at is not None


def test_cancel_queued_is_immediate_and_running_is_flagged(db):
    queued, running = _new(db), _new(db)
    with db.session() as session:
        states.claim(session, running, "w")
    with db.session() as session:
        assert states.request_cancel(session, queued)
        assert states.request_cancel(session, running)
    with db.session() as session:
        assert session.get(Job, queued).status == "canceled"
        assert not states.claim(session, queued, "w")
        assert states.record_progress(session, running, 0.5)  # the worker learns it must stop
        assert session.get(Job, running).status == "running"


def test_cancel_finished_job_is_refused(db):
    job_id = _new(db)
    with db.session() as session:
        states.claim(session, job_id, "w")
        states.transition(session, job_id, states.FAILED, error_code="model_error")
    with db.session() as session:
        assert not states.request_cancel(session, job_id)


def test_only_a_running_job_goes_back_to_queued_and_nothing_leaves_a_final_state():
    assert states.sources_of(states.QUEUED) == {states.RUNNING}
    for final in states.TERMINAL:
        assert not states.ALLOWED.get(final)


def test_only_a_queued_job_expires_and_an_expired_one_is_final_and_retryable(db):
    assert states.sources_of(states.EXPIRED) == {states.QUEUED}
    assert states.EXPIRED in states.TERMINAL and states.EXPIRED in states.RETRYABLE
    job_id = _new(db)
    with db.session() as session:
        assert states.transition(session, job_id, states.EXPIRED, error_code="deadline")
    with db.session() as session:
        assert not states.request_cancel(session, job_id)
        assert not states.claim(session, job_id, "w")
        assert session.get(Job, job_id).finished_at is not None


def test_listing_pages_newest_first(db):
    ids = [_new(db) for _ in range(5)]
    seen, cursor = [], None
    while True:
        with db.session() as session:
            page = service.list_jobs(session, limit=2, cursor=cursor)
        seen += [job.id for job in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ids[::-1]


def test_listing_filters_by_status_and_type(db):
    generate, understand = _new(db), _new(db, "understand")
    with db.session() as session:
        states.claim(session, understand, "w")
    with db.session() as session:
        assert [j.id for j in service.list_jobs(session, status="running").jobs] == [understand]
        assert [j.id for j in service.list_jobs(session, job_type="generate").jobs] == [generate]


def test_bad_cursor_is_rejected():
    with pytest.raises(service.InvalidCursor):
        service.decode_cursor("not-a-cursor")

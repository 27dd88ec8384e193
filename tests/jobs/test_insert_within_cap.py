"""limits.insert_within_cap: the API's insert of a new job, with its tenant's cap checked in
the same step (one statement on PostgreSQL, migration 0009's function; a transaction on SQLite)."""
from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from jobs import limits, service, states
from jobs.models import Job


def _columns(db, job_id: str) -> dict:
    with db.session() as session:
        job = session.execute(select(Job).where(Job.id == job_id)).scalar_one()
        return {column.key: getattr(job, column.key) for column in Job.__table__.columns}


def test_stores_every_column_as_the_orm_would(db):
    params = {"prompt": "a fox", "num_images": 2, "seed": None}
    fields = {"owner": "t1", "input_key": "jobs/x/input", "idempotency_key": "k1", "request_hash": "h" * 64,
              "retry_of": "r" * 32}
    direct = service.new_job("generate", params, **fields)
    limits.insert_within_cap(db, direct, 0)
    via_orm = service.new_job("generate", params, **{**fields, "idempotency_key": "k2"})
    with db.session() as session:
        session.add(via_orm)
    stored, expected = _columns(db, direct.id), _columns(db, via_orm.id)
    differs_by_construction = {"id", "idempotency_key", "params", "created_at", "updated_at", "published_at"}
    assert {k: v for k, v in stored.items() if k not in differs_by_construction} == \
           {k: v for k, v in expected.items() if k not in differs_by_construction}
    # What the caller built is what was stored, to the microsecond and with the drawn seed.
    assert stored["params"] == direct.params and isinstance(stored["params"]["seed"], int)
    assert stored["created_at"] == direct.created_at and stored["created_at"].tzinfo is not None
    assert stored["status"] == states.QUEUED and stored["result"] is None
    assert stored["priority"] == 1  # the model's default, since new_job left it unset


def test_refuses_at_the_cap_and_stores_nothing(db):
    for _ in range(2):
        limits.insert_within_cap(db, service.new_job("generate", {"prompt": "x"}, owner="capped"), 2)
    with pytest.raises(limits.TooManyUnfinishedJobs):
        limits.insert_within_cap(db, service.new_job("generate", {"prompt": "x"}, owner="capped"), 2)
    # Another tenant is not affected; a finished job no longer counts.
    limits.insert_within_cap(db, service.new_job("generate", {"prompt": "x"}, owner="other"), 2)
    with db.session() as session:
        assert limits.count_unfinished(session, "capped") == 2
        first = session.execute(select(Job).where(Job.owner == "capped")).scalars().first()
        assert states.transition(session, first.id, states.CANCELED)
    limits.insert_within_cap(db, service.new_job("generate", {"prompt": "x"}, owner="capped"), 2)


def test_a_reused_idempotency_key_is_an_integrity_error(db):
    limits.insert_within_cap(db, service.new_job("generate", {"prompt": "x"}, owner="t", idempotency_key="same"), 0)
    with pytest.raises(IntegrityError):
        limits.insert_within_cap(db, service.new_job("generate", {"prompt": "y"}, owner="t",
                                                     idempotency_key="same"), 0)


def test_a_polls_read_shows_the_job_as_the_orm_reads_it(db):
    from api.serialize import job_to_dict

    job = service.new_job("generate", {"prompt": "x", "num_images": 1}, owner="reader")
    limits.insert_within_cap(db, job, 0)
    with db.session() as session:
        assert states.transition(session, job.id, states.RUNNING, worker="w1")
        assert states.transition(session, job.id, states.SUCCEEDED, result={
            "images": [{"key": "k", "width": 384, "height": 384, "content_type": "image/png"}],
            "batch": {"id": "b", "size": 1}})
    with db.session() as session:
        expected = job_to_dict(service.get_job(session, job.id, owner="reader"), "http://api")
    row = service.read_job(db, job.id, owner="reader")
    assert job_to_dict(row, "http://api") == expected
    assert expected["status"] == "succeeded" and expected["finished_at"].endswith("Z")
    # Another tenant's job reads as missing.
    assert service.read_job(db, job.id, owner="someone-else") is None

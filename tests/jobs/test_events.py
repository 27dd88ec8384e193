"""Job events (jobs/events.py): written with the transaction that makes them true, read in order
after an id, and watched for news; on the job_events table (SQLite and PostgreSQL) and Redis."""
from __future__ import annotations

from datetime import timedelta

import pytest
import redis as redis_lib

from jobs import events, service, states
from jobs.events import InvalidEventId, RedisEventLog, TableEventLog
from jobs.models import utcnow


@pytest.fixture(params=["table", "redis"])
def log_db(request, db):
    """`db` (SQLite or PostgreSQL) with an event log of each kind attached."""
    if request.param == "table":
        db.events = TableEventLog(db, ttl=60)
    else:
        url = request.getfixturevalue("redis_url")
        db.events = RedisEventLog(url, ttl=60, max_length=100)
    yield db
    db.events = None


def _new_job(db) -> str:
    with db.session() as session:
        return service.add_job(session, "generate", {"prompt": "p", "seed": 1}).id


def test_a_transition_writes_its_status_event_with_its_commit(log_db):
    job_id = _new_job(log_db)
    with log_db.session() as session:
        assert states.claim(session, job_id, "w1")
    with pytest.raises(RuntimeError), log_db.session() as session:
        states.transition(session, job_id, states.SUCCEEDED)
        raise RuntimeError("rolled back: its event must not appear")
    with log_db.session() as session:
        assert not states.transition(session, job_id, states.QUEUED, only_from={states.QUEUED})  # lost: no event
        assert states.transition(session, job_id, states.FAILED, error_code="model_error", error_message="boom")
    read = log_db.events.read(job_id, None)
    assert [(event.kind, event.data["status"]) for event in read] == [("status", "running"), ("status", "failed")]
    assert read[1].data["error"] == {"code": "model_error", "message": "boom"}
    assert log_db.events.read(job_id, read[0].id) == read[1:]
    assert log_db.events.read(job_id, read[1].id) == []


def test_the_watcher_hears_of_new_events_only(log_db):
    job_id, quiet = _new_job(log_db), _new_job(log_db)
    start = log_db.events.START
    assert log_db.events.news({job_id: start, quiet: start}, 0.05) == {}
    with log_db.session() as session:
        for step in (1, 2):
            events.record(session, job_id, events.PROGRESS, {"step": step})
    head = log_db.events.read(job_id, None)[-1].id
    assert log_db.events.news({job_id: start, quiet: start}, 0.05) == {job_id: head}
    assert log_db.events.news({job_id: head, quiet: start}, 0.05) == {}


def test_event_ids_are_checked(log_db):
    good = "12-0" if isinstance(log_db.events, RedisEventLog) else "12"
    assert log_db.events.check_id(good) == good
    for bad in ("", "x", "1-", "'; drop", "9" * 30):
        with pytest.raises(InvalidEventId):
            log_db.events.check_id(bad)


def test_old_events_go(log_db):
    job_id = _new_job(log_db)
    with log_db.session() as session:
        events.record(session, job_id, events.OUTPUT, {"text": "a"})
    with log_db.session() as session:
        log_db.events.prune(session, utcnow() + timedelta(seconds=61))
    if isinstance(log_db.events, TableEventLog):
        assert log_db.events.read(job_id, None) == []
    else:  # Redis expires the stream by itself
        ttl = redis_lib.Redis.from_url(log_db.events.url).ttl(RedisEventLog.key(job_id))
        assert 0 < ttl <= 60


def test_a_deleted_jobs_events_go_with_it(log_db, tmp_path):
    from jobs.retention import delete_job
    from jobs.storage import open_storage

    job_id = _new_job(log_db)
    with log_db.session() as session:
        events.record(session, job_id, events.OUTPUT, {"text": "a private answer"})
    assert log_db.events.read(job_id, None)
    assert delete_job(log_db, open_storage(f"file://{tmp_path / 'storage'}"), job_id)
    assert log_db.events.read(job_id, None) == []

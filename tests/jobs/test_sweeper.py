"""Delivery on SQLite and PostgreSQL: leases, fencing, retry backoff, the sweeper and its lock."""
from __future__ import annotations

from datetime import timedelta

from jobs import service, states
from jobs.models import Job, utcnow
from jobs.sweeper import SWEEPER_LOCK, Sweeper, SweeperLoop, hold_lock


class RecordingPublisher:
    """Stands in for the broker here: these tests are about which jobs get published."""

    def __init__(self, fail: bool = False):
        self.sent: list[tuple[str, str]] = []
        self.fail = fail

    def publish(self, job_id: str, job_type: str) -> None:
        if self.fail:
            raise RuntimeError("broker down")
        self.sent.append((job_id, job_type))


def new_job(db, published_ago: float | None = 0.0, job_type: str = "generate") -> str:
    with db.session() as session:
        job = service.add_job(session, job_type, {"prompt": "p", "seed": 1})
        job.published_at = None if published_ago is None else utcnow() - timedelta(seconds=published_ago)
        return job.id


def sweeper(db, publisher, max_attempts=3) -> Sweeper:
    return Sweeper(db, publisher, requeue_after=10, max_attempts=max_attempts)


def job(db, job_id) -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def expire_lease(db, job_id) -> None:
    with db.session() as session:
        session.get(Job, job_id).lease_expires_at = utcnow() - timedelta(seconds=1)


def test_claim_starts_a_lease_and_renewal_extends_only_the_holders(db):
    job_id = new_job(db)
    with db.session() as session:
        assert states.claim(session, job_id, "w1", lease_seconds=30)
    first = job(db, job_id).lease_expires_at
    assert timedelta(seconds=25) < first - utcnow() <= timedelta(seconds=30)
    with db.session() as session:
        assert states.renew_leases(session, [job_id], "w2", 300) == 0
        assert states.renew_leases(session, [job_id], "w1", 300) == 1
    assert job(db, job_id).lease_expires_at - first > timedelta(seconds=200)


def test_a_worker_that_lost_its_attempt_cannot_finish_the_job(db):
    job_id = new_job(db)
    with db.session() as session:
        states.claim(session, job_id, "w1")
    expire_lease(db, job_id)
    sweeper(db, RecordingPublisher()).sweep()
    with db.session() as session:
        assert states.claim(session, job_id, "w2")
    with db.session() as session:
        assert not states.transition(session, job_id, states.SUCCEEDED, holder=states.Holder("w1", 1),
                                     result={"text": "late"})
        assert states.transition(session, job_id, states.SUCCEEDED, holder=states.Holder("w2", 2),
                                 result={"text": "on time"})
    assert (job(db, job_id).result, job(db, job_id).attempts) == ({"text": "on time"}, 2)


def test_expired_lease_is_requeued_and_published_then_fails_after_max_attempts(db):
    publisher = RecordingPublisher()
    job_id = new_job(db)
    for attempt in (1, 2):
        with db.session() as session:
            assert states.claim(session, job_id, f"w{attempt}")
        expire_lease(db, job_id)
        report = sweeper(db, publisher, max_attempts=2).sweep()
        if attempt == 1:
            assert report.requeued == [job_id] and report.published == [job_id]
            assert job(db, job_id).status == "queued" and job(db, job_id).worker is None
    final = job(db, job_id)
    assert report.exhausted == [job_id]
    assert (final.status, final.error_code, final.attempts) == ("failed", "attempts_exhausted", 2)
    assert "2 attempts" in final.error_message
    assert publisher.sent == [(job_id, "generate")]


def test_a_live_lease_is_left_alone(db):
    job_id = new_job(db)
    with db.session() as session:
        states.claim(session, job_id, "w1")
    report = sweeper(db, RecordingPublisher()).sweep()
    assert report.requeued == [] and job(db, job_id).status == "running"


def test_only_queued_jobs_whose_publish_is_old_or_missing_are_published_again(db):
    publisher = RecordingPublisher()
    fresh, stale, never = new_job(db, 1), new_job(db, 60), new_job(db, None)
    report = sweeper(db, publisher).sweep()
    assert sorted(report.published) == sorted([stale, never])
    assert sweeper(db, publisher).sweep().published == []  # marked: not again until requeue_after
    assert fresh not in {job_id for job_id, _ in publisher.sent}


def test_a_retry_waits_for_its_backoff(db):
    publisher = RecordingPublisher()
    job_id = new_job(db)
    with db.session() as session:
        states.claim(session, job_id, "w1")
        assert states.retry_later(session, job_id, states.Holder("w1", 1), delay=60,
                                  error_code="storage_error", error_message="down")
    assert sweeper(db, publisher).sweep().published == []
    with db.session() as session:
        assert not states.claim(session, job_id, "w2")
        session.get(Job, job_id).available_at = utcnow() - timedelta(seconds=1)
    assert sweeper(db, publisher).sweep().published == [job_id]
    with db.session() as session:
        assert states.claim(session, job_id, "w2")
    assert job(db, job_id).error_code == "storage_error"  # the last error stays visible meanwhile


def test_a_broker_failure_leaves_jobs_for_the_next_sweep(db):
    job_id = new_job(db, None)
    assert sweeper(db, RecordingPublisher(fail=True)).sweep().published == []
    with db.session() as session:
        session.get(Job, job_id).published_at = utcnow() - timedelta(seconds=60)
    assert sweeper(db, RecordingPublisher()).sweep().published == [job_id]


def test_one_sweeper_holds_the_lock_until_it_expires(db):
    now = utcnow()
    with db.session() as session:
        assert hold_lock(session, SWEEPER_LOCK, "a", 10, now)
    with db.session() as session:
        assert not hold_lock(session, SWEEPER_LOCK, "b", 10, now)
        assert hold_lock(session, SWEEPER_LOCK, "a", 10, now)  # renewal
    with db.session() as session:
        assert hold_lock(session, SWEEPER_LOCK, "b", 10, now + timedelta(seconds=11))


def test_of_two_loops_only_the_leader_sweeps(db):
    publisher = RecordingPublisher()
    new_job(db, None)
    first = SweeperLoop(sweeper(db, publisher), "first", interval=5)
    second = SweeperLoop(sweeper(db, publisher), "second", interval=5)
    assert first.tick() is not None and second.tick() is None
    assert (first.leading, second.leading) == (True, False)
    assert len(publisher.sent) == 1


def overdue_job(db, overdue_by: float = 5.0) -> str:
    """A queued job whose 10 s deadline passed `overdue_by` seconds ago."""
    with db.session() as session:
        job = service.add_job(session, "generate", {"prompt": "p", "seed": 1}, deadline_seconds=10)
        job.created_at -= timedelta(seconds=10 + overdue_by)
        job.deadline_at -= timedelta(seconds=10 + overdue_by)
        return job.id


def test_a_queued_job_past_its_deadline_is_expired_and_never_published(db):
    overdue, timely, running = overdue_job(db), new_job(db, published_ago=None), overdue_job(db)
    with db.session() as session:  # a running job past its deadline is its worker's to stop
        session.get(Job, running).status = states.RUNNING
    with db.session() as session:
        session.get(Job, overdue).published_at = None  # its message was lost too
    publisher = RecordingPublisher()
    report = sweeper(db, publisher).sweep()
    assert report.expired == [overdue]
    assert publisher.sent == [(timely, "generate")]
    expired = job(db, overdue)
    assert expired.status == "expired" and expired.finished_at and expired.started_at is None
    assert (expired.error_code, expired.attempts) == ("deadline", 0)
    assert job(db, running).status == "running" and job(db, timely).status == "queued"
    assert sweeper(db, publisher).sweep().expired == []  # terminal: nothing moves it again


def test_expiry_goes_in_bounded_batches(db, monkeypatch):
    import jobs.sweeper

    monkeypatch.setattr(jobs.sweeper, "BATCH", 3)
    ids = {overdue_job(db, overdue_by=n) for n in range(5)}
    first, second = sweeper(db, RecordingPublisher()).sweep(), sweeper(db, RecordingPublisher()).sweep()
    assert len(first.expired) == 3 and len(second.expired) == 2
    assert set(first.expired) | set(second.expired) == ids

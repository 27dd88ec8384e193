"""Claiming batches against real SQLite and PostgreSQL databases."""
from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import select

from jobs import service, states
from jobs.db import Database
from jobs.models import Job, utcnow
from worker.claims import BatchLimits, claim_batch, claim_next_batch

LIMITS = BatchLimits(images=8, answers=3)


def add(db: Database, job_type: str = "generate", num_images: int = 1, *, age: int = 0) -> str:
    """A queued job created `age` seconds ago (older first in a batch)."""
    params = ({"prompt": "p", "num_images": num_images, "cfg_weight": 5.0, "temperature": 1.0, "seed": 1}
              if job_type == "generate" else
              {"question": "q", "max_new_tokens": 2, "temperature": 0.1, "top_p": 0.95, "seed": 1})
    with db.session() as session:
        job = service.add_job(session, job_type, params)
        job.created_at = utcnow() - timedelta(seconds=age)
        return job.id


def rows(db: Database) -> dict[str, Job]:
    with db.session() as session:
        return {job.id: job for job in session.execute(select(Job)).scalars()}


def claim(db, job_id, limits=LIMITS, worker="w1"):
    with db.session() as session:
        return [job.id for job in claim_batch(session, job_id, worker, limits)]


def claim_next(db, job_type="generate", limits=LIMITS, worker="w1"):
    with db.session() as session:
        return [job.id for job in claim_next_batch(session, job_type, worker, limits)]


def test_the_message_job_comes_first_then_the_oldest_queued_of_its_type(database):
    newest = add(database, num_images=2, age=1)
    oldest = add(database, num_images=2, age=30)
    middle = add(database, num_images=2, age=20)
    other_type = add(database, "understand", age=40)
    assert claim(database, newest) == [newest, oldest, middle]
    jobs = rows(database)
    assert {jobs[i].status for i in (newest, oldest, middle)} == {"running"}
    assert all(jobs[i].worker == "w1" and jobs[i].attempts == 1 and jobs[i].started_at for i in (newest, oldest, middle))
    assert jobs[other_type].status == "queued"


def test_images_cap_is_respected_and_smaller_later_jobs_fill_the_room(database):
    first = add(database, num_images=4, age=50)
    too_big = add(database, num_images=5, age=40)  # 4 + 5 > 8: waits for the next batch
    fits = add(database, num_images=3, age=30)
    one = add(database, num_images=1, age=20)
    extra = add(database, num_images=1, age=10)  # the batch is full (4 + 3 + 1 = 8)
    assert claim(database, first) == [first, fits, one]
    jobs = rows(database)
    assert jobs[too_big].status == jobs[extra].status == "queued"
    # The next batch starts with the oldest queued job, the one that did not fit before.
    assert claim_next(database) == [too_big, extra]


def test_a_job_larger_than_the_cap_still_runs_alone(database):
    huge = add(database, num_images=16, age=10)
    small = add(database, num_images=1, age=5)
    assert claim(database, huge) == [huge]
    assert claim_next(database) == [small]
    huge_next = add(database, num_images=12, age=3)
    add(database, num_images=1, age=2)
    assert claim_next(database)[0] == huge_next and len(claim_next(database)) == 1


def test_understand_jobs_are_counted_against_the_answers_cap(database):
    ids = [add(database, "understand", age=10 - i) for i in range(5)]
    assert claim(database, ids[4]) == [ids[4], ids[0], ids[1]]
    assert claim_next(database, "understand") == [ids[2], ids[3]]
    assert claim_next(database, "understand") == []


def test_an_unclaimable_message_job_claims_nothing(database):
    canceled = add(database, age=10)
    queued = add(database, age=5)
    with database.session() as session:
        assert states.request_cancel(session, canceled)
    assert claim(database, canceled) == []
    assert claim(database, "no-such-job") == []
    assert rows(database)[queued].status == "queued"
    assert claim(database, queued) == [queued]
    assert claim(database, queued) == []  # a redelivered message: already running


def test_concurrent_workers_never_claim_the_same_job(database):
    ids = {add(database, num_images=1 + i % 3, age=100 - i) for i in range(60)}
    claimed: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        own = Database(database.url)  # its own engine, as a separate worker process would have
        mine: list[str] = []
        while batch := claim_next(own, limits=BatchLimits(images=5, answers=1), worker=name):
            mine.extend(batch)
        claimed[name] = mine
        own.engine.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [job_id for batch in claimed.values() for job_id in batch]
    assert sorted(everything) == sorted(ids)  # each job once, none lost
    jobs = rows(database)
    assert all(jobs[i].status == "running" and jobs[i].attempts == 1 for i in ids)
    assert all(jobs[i].worker == name for name, batch in claimed.items() for i in batch)


def test_the_next_batch_is_of_the_type_of_the_oldest_queued_job(database):
    from worker.claims import claim_oldest_batch

    understand = add(database, "understand", age=30)
    generate = [add(database, age=20), add(database, age=10)]
    with database.session() as session:
        assert [j.id for j in claim_oldest_batch(session, ("generate", "understand"), "w1", LIMITS)] == [understand]
    with database.session() as session:
        assert [j.id for j in claim_oldest_batch(session, ("generate", "understand"), "w1", LIMITS)] == generate
    add(database, "understand", age=5)
    with database.session() as session:  # a worker serving only generate never takes it
        assert claim_oldest_batch(session, ("generate",), "w1", LIMITS) == []

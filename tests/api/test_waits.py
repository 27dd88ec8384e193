"""api/waits.py on a real PostgreSQL database: waits are capped per process and woken by one
watcher, which makes one query per check however many requests wait, and none while nobody does."""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from api.waits import WaitRoom
from janusq.processes import gunicorn_argv
from jobs import service, states
from jobs.db import Database
from jobs.settings import load_settings
from tests.api.conftest import bearer

INTERVAL = 0.05


@pytest.fixture
def room(pg_database):
    db = Database(pg_database)
    yield WaitRoom(db, capacity=50, interval=INTERVAL)
    db.dispose()


@pytest.fixture
def statements(room):
    """Counts the statements the room's database runs."""
    counted = []
    event.listen(room.db.engine, "before_cursor_execute", lambda *args: counted.append(1))
    return counted


def queued_jobs(db: Database, count: int) -> list[str]:
    with db.session() as session:
        return [service.add_job(session, "generate", {"prompt": "p", "num_images": 1}).id for _ in range(count)]


def cancel(db: Database, job_id: str) -> None:
    with db.session() as session:
        assert states.request_cancel(session, job_id)


class Waiting(threading.Thread):
    def __init__(self, room: WaitRoom, job_id: str, seconds: float):
        super().__init__(daemon=True)
        self.room, self.job_id, self.seconds = room, job_id, seconds
        self.finished = "not yet"

    def run(self):
        self.finished = self.room.wait_until_finished(self.job_id, self.seconds)


def test_one_query_per_check_however_many_wait(room, statements):
    waiters = [Waiting(room, job_id, 1.0) for job_id in queued_jobs(room.db, 40)]
    started = time.monotonic()
    for waiter in waiters:
        waiter.start()
    time.sleep(0.3)
    checkedout = room.db.engine.pool.checkedout()
    for waiter in waiters:
        waiter.join()
    elapsed = time.monotonic() - started
    # 40 waiters polling on their own would have made 40 queries a check.
    assert 0 < len(statements) <= elapsed / INTERVAL + 2
    assert room.checks <= len(statements) <= room.checks + 2  # + the pool's ping of a fresh connection
    assert checkedout <= 1  # the watcher's query at most: no waiter holds a connection
    assert [waiter.finished for waiter in waiters] == [None] * 40


def test_a_finished_job_wakes_its_waiters_only(room):
    first, second = queued_jobs(room.db, 2)
    waiters = [Waiting(room, first, 10), Waiting(room, first, 10), Waiting(room, second, 0.5)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.2)
    canceled_at = time.monotonic()
    cancel(room.db, first)
    waiters[0].join(5)
    waiters[1].join(5)
    assert time.monotonic() - canceled_at < 5  # woken by the watcher, not by their 10 s timeout
    # Both are handed the finished job as the watcher read it: no query of their own.
    assert waiters[0].finished.id == waiters[1].finished.id == first
    assert waiters[0].finished.status == waiters[1].finished.status == "canceled"
    waiters[2].join(2)
    assert waiters[2].finished is None
    assert room._finished == {}  # nothing kept for waiters gone


def test_a_job_finished_before_the_wait_began_is_seen(room):
    (job_id,) = queued_jobs(room.db, 1)
    cancel(room.db, job_id)
    assert room.wait_until_finished(job_id, 5).status == "canceled"


def test_the_watcher_rests_while_nobody_waits(room, statements):
    (job_id,) = queued_jobs(room.db, 1)
    statements.clear()
    room.wait_until_finished(job_id, 0.2)
    # The watcher goes to rest once it sees nobody waiting, after any check already under way (on a
    # loaded machine the first, with its fresh connection, may still be running now).
    deadline = time.monotonic() + 10
    while room._someone_waits.is_set() and time.monotonic() < deadline:
        time.sleep(INTERVAL)
    before = len(statements)
    time.sleep(10 * INTERVAL)
    assert len(statements) == before


def test_places_are_capped_and_given_back(pg_database):
    room = WaitRoom(Database(pg_database), capacity=2)
    with room.place() as first, room.place() as second:
        with room.place() as third:
            assert (first, second, third) == (True, True, False)
            assert room.held == 2
    assert room.held == 0
    with room.place() as again:
        assert again
    with WaitRoom(room.db, capacity=0).place() as none:
        assert not none


def test_a_full_room_declines_the_wait_at_once(make_api, new_key):
    api = make_api(max_waiting_requests=0)
    started = time.monotonic()
    response = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox", "num_images": 1},
                               headers={**bearer(new_key()), "Prefer": "wait=30"})
    assert time.monotonic() - started < 5
    assert response.status_code == 202 and response.json["status"] == "queued"
    assert "Preference-Applied" not in response.headers
    assert response.headers["Retry-After"] == "1"
    assert response.headers["Location"] == f"/v1/jobs/{response.json['id']}"


def test_a_held_wait_answers_when_its_job_finishes(make_api, new_key, tenant, pg):
    api, owner = make_api(), tenant()
    headers, waits = bearer(new_key(owner)), api.app.extensions["janus"].waits
    answers = []
    request = threading.Thread(target=lambda: answers.append(api.app.test_client().post(
        "/v1/jobs", json={"type": "generate", "prompt": "a fox", "num_images": 1},
        headers={**headers, "Prefer": "wait=30"})))
    request.start()
    deadline = time.monotonic() + 10
    while waits.held == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    (job,) = api.jobs_of(owner)
    cancel(pg, job.id)
    request.join(10)
    (response,) = answers
    assert response.status_code == 200 and response.json["status"] == "canceled"
    assert response.headers["Preference-Applied"] == "wait=30"
    assert waits.held == 0


@pytest.mark.parametrize("worker_class,threads,connections,cap,expected", [
    ("gthread", 8, 1000, None, 4), ("gthread", 1, 1000, None, 1), ("gevent", 8, 1000, None, 500),
    ("gevent", 8, 200, None, 100), ("gthread", 8, 1000, 0, 0), ("gevent", 8, 1000, 7, 7),
])
def test_waiting_capacity(worker_class, threads, connections, cap, expected):
    settings = load_settings(api_worker_class=worker_class, api_threads=threads, api_connections=connections,
                             max_waiting_requests=cap)
    assert settings.waiting_capacity == expected


def test_gunicorn_runs_the_worker_class_asked_for():
    gevent = gunicorn_argv(load_settings(api_worker_class="gevent", api_connections=300))
    assert gevent[gevent.index("--worker-class") + 1] == "gevent"
    assert gevent[gevent.index("--worker-connections") + 1] == "300" and "--threads" not in gevent
    threaded = gunicorn_argv(load_settings(api_threads=12))
    assert threaded[threaded.index("--worker-class") + 1] == "gthread"
    assert threaded[threaded.index("--threads") + 1] == "12"

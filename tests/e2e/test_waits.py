"""Waiting must not starve the API (issue 13, item 6).

100 requests ask to wait (`Prefer: wait=N`) at once against `janusq serve` (gunicorn, two
processes) on PostgreSQL and Redis (broker and rate-limit counts), with auth on. While they are
held, /healthz and GET /v1/jobs/<id> must keep answering at once; then half of the held jobs are
canceled through the API and their waits must answer 200 within a few watcher checks, and the
rest must run out their time and answer 202. Both worker classes: gthread, where each process's
cap (half its threads) declines the waits beyond it with an immediate 202, and gevent, which
holds all of them. Before api/waits.py, 20 such waits kept /healthz from answering for 17.9 s.

The latency figures are printed (`pytest -s`) and kept in BENCHMARKS.md; the bound asserted is
generous because this machine's two cores are shared with other work.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from sqlalchemy import select

from jobs.db import Database
from jobs.keys import create_key
from jobs.models import Job
from tests.e2e.stack import Stack
from tests.pgdb import fresh_database

WAITERS = 100
WAIT_SECONDS = 15
PROBE_SECONDS = 4.0
# What a probe may take at the 99th percentile here: an order of magnitude above what it takes
# (figures in BENCHMARKS.md), far below the seconds a starved API takes.
P99_BOUND_SECONDS = 1.0
WOKEN_WITHIN_SECONDS = 3.0  # a canceled job's wait answers after a watcher check or a few
API_WORKERS, API_THREADS = 2, 8
JOB = {"type": "generate", "prompt": "a lighthouse at dusk", "num_images": 1}


@pytest.fixture(scope="module", params=["gthread", "gevent"])
def served(request, tmp_path_factory, tiny_checkpoint, redis_url):
    """(stack, API key): `janusq serve` with the worker class under test, and no worker: the
    jobs stay queued until the test cancels them."""
    with fresh_database("janusq_e2e_waits") as database_url:
        key = _make_key(database_url)
        env = {"JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")), "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": str(tiny_checkpoint), "JANUS_AUTH": "on",
               "JANUS_RATE_LIMIT_PER_MINUTE": "1000000", "JANUS_API_WORKER_CLASS": request.param,
               "JANUS_API_WORKERS": str(API_WORKERS), "JANUS_API_THREADS": str(API_THREADS)}
        stack = Stack(env, tmp_path_factory.mktemp(f"logs-{request.param}"))
        try:
            yield stack.start(workers=0), key
        finally:
            stack.stop()
            _drop_queued_messages(redis_url)


def _make_key(database_url: str) -> str:
    db = Database(database_url, pooled=False)
    with db.session() as session:
        secret = create_key(session, f"waits-{uuid.uuid4().hex[:6]}").secret
    db.dispose()
    return secret


def _drop_queued_messages(redis_url: str) -> None:
    """The messages of the canceled jobs: no later test's worker should be handed them."""
    import redis as redis_lib

    from jobs.settings import QUEUES

    redis_lib.Redis.from_url(redis_url).delete(*QUEUES)


class Waiter(threading.Thread):
    """One client asking to wait, on a connection of its own."""

    def __init__(self, url: str, headers: dict):
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.response: requests.Response | None = None
        self.answered_at = 0.0

    def run(self):
        self.response = requests.post(self.url + "/v1/jobs", json=JOB, timeout=WAIT_SECONDS + 30,
                                      headers={**self.headers, "Prefer": f"wait={WAIT_SECONDS}"})
        self.answered_at = time.monotonic()


def test_a_hundred_waits_leave_the_api_answering(served):
    stack, key = served
    auth = {"Authorization": f"Bearer {key}"}
    polled = requests.post(stack.base_url + "/v1/jobs", json=JOB, headers=auth, timeout=10).json()["id"]
    waiters = [Waiter(stack.base_url, {**auth, "Idempotency-Key": f"wait-{n}"}) for n in range(WAITERS)]
    for waiter in waiters:
        waiter.start()
    _until(lambda: stack.job_count() == WAITERS + 1, "every waiting request's job stored")
    latencies, statuses = _probe(stack.base_url, polled, auth)
    held = [waiter for waiter in waiters if waiter.response is None]
    _report(stack.settings.api_worker_class, latencies, len(held))
    assert set(statuses) == {200}, statuses
    assert _percentile(latencies, 99) < P99_BOUND_SECONDS

    if stack.settings.api_worker_class == "gevent":
        assert len(held) == WAITERS  # every wait held: a greenlet each, no thread
    else:
        # At most half of each process's threads wait; the rest were told at once.
        assert 1 <= len(held) <= API_WORKERS * API_THREADS // 2
        for waiter in set(waiters) - set(held):
            assert waiter.response.status_code == 202
            assert "Preference-Applied" not in waiter.response.headers
            assert waiter.response.headers["Retry-After"] == "1"
            assert waiter.response.json()["status"] == "queued"

    canceled_at = time.monotonic()
    canceled = held[: (len(held) + 1) // 2]
    for waiter in canceled:
        job_id = _job_id_of(stack, waiter)
        assert requests.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", headers=auth, timeout=10).status_code == 200
    for waiter in held:
        waiter.join(WAIT_SECONDS + 30)
    for waiter in canceled:
        assert waiter.response.status_code == 200, waiter.response.text
        assert waiter.response.json()["status"] == "canceled"
        assert waiter.response.headers["Preference-Applied"] == f"wait={WAIT_SECONDS}"
        assert waiter.answered_at - canceled_at < WOKEN_WITHIN_SECONDS
    for waiter in set(held) - set(canceled):
        assert waiter.response.status_code == 202
        assert waiter.response.json()["status"] == "queued"
        assert waiter.response.headers["Preference-Applied"] == f"wait={WAIT_SECONDS}"
    assert len({waiter.response.json()["id"] for waiter in waiters}) == WAITERS


def _probe(base_url: str, job_id: str, auth: dict) -> tuple[list[float], list[int]]:
    """/healthz and GET /v1/jobs/<id> in turn for PROBE_SECONDS, one keep-alive client."""
    latencies, statuses = [], []
    paths = [("/healthz", {}), (f"/v1/jobs/{job_id}", auth)]
    with requests.Session() as session:
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline:
            path, headers = paths[len(latencies) % 2]
            started = time.monotonic()
            statuses.append(session.get(base_url + path, headers=headers, timeout=30).status_code)
            latencies.append(time.monotonic() - started)
    return latencies, statuses


def _job_id_of(stack: Stack, waiter: Waiter) -> str:
    """A held waiter has no answer yet: its job is found by the Idempotency-Key it sent."""
    with stack.engine.connect() as connection:
        return connection.execute(select(Job.id).where(
            Job.idempotency_key == waiter.headers["Idempotency-Key"])).scalar_one()


def _report(worker_class: str, latencies: list[float], held: int) -> None:
    ms = {f"p{p}": round(_percentile(latencies, p) * 1000, 1) for p in (50, 99)}
    print(f"\n{worker_class}: {WAITERS} waits asked, {held} held; {len(latencies)} probes "
          f"(/healthz and GET /v1/jobs/<id>): p50 {ms['p50']} ms, p99 {ms['p99']} ms, "
          f"max {max(latencies) * 1000:.1f} ms")


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for: {what}")
        time.sleep(0.1)

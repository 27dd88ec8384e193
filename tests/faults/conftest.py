"""Fault tests: the real service, on loopback, with one of its dependencies broken on purpose.

Each test gets its own PostgreSQL database, its own Redis server and its own storage, so a
restart or an outage here touches nothing else. Delivery runs on short clocks (3 s leases,
2 s requeue, 0.5 s sweeps) so every test ends in seconds; the figures they print are the
recovery times under those settings.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from jobs.models import Job
from tests.e2e.stack import Stack
from tests.faults.network import RedisServer
from tests.pgdb import fresh_database

FAST_DELIVERY = {
    "JANUS_LEASE_SECONDS": "3",
    "JANUS_REQUEUE_AFTER": "2",
    "JANUS_SWEEP_INTERVAL": "0.5",
    "JANUS_MAX_ATTEMPTS": "3",
    "JANUS_RETRY_BACKOFF": "0.5",
    "JANUS_PROGRESS_INTERVAL": "0.2",
    "JANUS_API_WORKERS": "1",
}


@pytest.fixture
def database_url():
    with fresh_database("janusq_fault") as url:
        yield url


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def make_stack(tmp_path, tiny_checkpoint, database_url, redis_server):
    """make_stack(workers=2, **JANUS_overrides) -> a started Stack on PostgreSQL + private Redis."""
    stacks: list[Stack] = []

    def make(workers: int = 2, worker_env: dict | None = None, **overrides) -> Stack:
        data_dir = tmp_path / f"var{len(stacks)}"
        shutil.copytree(tiny_checkpoint, data_dir / "models" / "janus-tiny")
        env = {"JANUS_DATA_DIR": str(data_dir), "JANUS_MODEL": "tiny", "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_server.url, **FAST_DELIVERY,
               **{f"JANUS_{key.upper()}": str(value) for key, value in overrides.items()}}
        logs = tmp_path / f"logs{len(stacks)}"
        logs.mkdir()
        stack = Stack(env, logs)
        stacks.append(stack)
        stack.start(workers=0)
        for _ in range(workers):
            stack.start_worker(env=worker_env)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def rows(database_url: str, job_ids) -> dict[str, Job]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(select(Job).where(Job.id.in_(list(job_ids)))).all()
            return {row.id: row for row in found}
    finally:
        engine.dispose()


def wait_rows(database_url: str, job_ids, done, timeout: float, stack: Stack | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(database_url, job_ids)
        if len(found) == len(list(job_ids)) and all(done(row) for row in found.values()):
            return found
        time.sleep(0.25)
    pending = {job_id: row.status for job_id, row in rows(database_url, job_ids).items() if not done(row)}
    raise TimeoutError(f"{len(pending)} jobs not done: {list(pending.items())[:5]}\n{stack.logs() if stack else ''}")


FIGURES: list[str] = []


def figure(text: str) -> None:
    """Record a fault test's figure; all of them are printed at the end of the run."""
    FIGURES.append(text)
    print(f"\n[fault figure] {text}", flush=True)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("fault test figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def stored_files(data_dir: Path, job_id: str) -> list[str]:
    folder = data_dir / "storage" / "jobs" / job_id
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []

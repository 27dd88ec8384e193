"""Cross-job batching with real API and worker processes: jobs queued while no worker runs are
claimed together, run as one batch, and still cancel and fail one by one."""
from __future__ import annotations

import re
import shutil
import statistics
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from jobs.models import Job
from tests.e2e.helpers import data_url, png_bytes
from tests.e2e.stack import Stack

BATCH_LINE = re.compile(r"batch (\w+) of (\d+) (\w+) jobs \((\d+) images\): ([0-9a-f ]+)$")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_checkpoint):
    """`make run`'s configuration, API only: each test starts the worker once its jobs are queued."""
    data_dir = tmp_path_factory.mktemp("var")
    shutil.copytree(tiny_checkpoint, data_dir / "models" / "janus-tiny")
    env = {"JANUS_DATA_DIR": str(data_dir), "JANUS_MODEL": "tiny"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=0) as stack:
        yield stack


@pytest.fixture(scope="module")
def two_worker_stack(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url):
    """PostgreSQL + Redis, two workers, small caps so that both keep claiming batches at once."""
    env = {"JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")), "JANUS_DATABASE_URL": postgres_url,
           "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": str(tiny_checkpoint),
           "JANUS_MAX_BATCH_IMAGES": "2", "JANUS_MAX_BATCH_ANSWERS": "2"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=2) as stack:
        yield stack


@contextmanager
def one_worker(stack: Stack, **env: str):
    worker = stack.start_worker(env=env)
    try:
        yield worker
    finally:
        stack.stop_worker(worker)


def understand(stack: Stack, **extra) -> str:
    body = {"question": "What is it?", "image": data_url(png_bytes()), "max_new_tokens": 2, "temperature": 0}
    response = stack.submit(type="understand", **{**body, **extra})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def generate(stack: Stack, num_images: int = 1, **extra) -> str:
    response = stack.submit(type="generate", prompt="a small red boat", num_images=num_images, **extra)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_all(stack: Stack, ids, timeout: float = 120) -> dict[str, dict]:
    return {job_id: stack.wait(job_id, timeout=timeout) for job_id in ids}


def rows(stack: Stack, ids) -> dict[str, Job]:
    with stack.engine.connect() as connection:
        found = connection.execute(select(Job).where(Job.id.in_(list(ids)))).all()
    return {row.id: row for row in found}


def batches_in(log: Path) -> list[tuple[str, str, list[str]]]:
    """(batch id, job type, job ids) for every batch a worker log reports."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if match := BATCH_LINE.search(line):
            found.append((match[1], match[3], match[5].split()))
    return found


def test_jobs_queued_while_no_worker_runs_are_run_as_one_batch(stack):
    ids = [generate(stack, num_images=n) for n in (1, 2, 1)]
    with one_worker(stack):
        done = wait_all(stack, ids)
    assert all(job["status"] == "succeeded" for job in done.values()), done
    assert [len(done[i]["result"]["images"]) for i in ids] == [1, 2, 1]
    [batch] = {row.result["batch"]["id"] for row in rows(stack, ids).values()}
    assert all(row.result["batch"] == {"id": batch, "jobs": 3, "images": 4} for row in rows(stack, ids).values())
    logged = [b for b in batches_in(stack.log_dir / "worker0.log") if set(b[2]) & set(ids)]
    assert len(logged) == 1 and sorted(logged[0][2]) == sorted(ids) and logged[0][1] == "generate"
    # The API shows which jobs ran together, as README documents (result.batch).
    assert all(done[i]["result"]["batch"] == {"id": batch, "jobs": 3, "images": 4} for i in ids)
    assert set(done[ids[0]]["result"]) == {"images", "batch", "model"}  # model: what the checkpoint chose


def test_canceling_one_job_of_a_running_batch_leaves_the_others_succeeding(stack):
    ids = [generate(stack, num_images=2, seed=n) for n in range(3)]
    with one_worker(stack, JANUS_PROGRESS_INTERVAL="0.05"):  # cancel checks 20 times a second
        stack.wait(ids[0], until=lambda job: job["status"] == "running" and job["progress"] > 0)
        response = requests.post(f"{stack.base_url}/v1/jobs/{ids[1]}/cancel", timeout=10)
        assert response.status_code == 202, response.text
        done = wait_all(stack, ids)
    assert [done[i]["status"] for i in ids] == ["succeeded", "canceled", "succeeded"], done
    assert done[ids[1]]["result"] is None and done[ids[1]]["progress"] < 1.0
    assert all(len(done[i]["result"]["images"]) == 2 for i in (ids[0], ids[2]))
    found = rows(stack, ids)
    assert found[ids[0]].result["batch"]["jobs"] == 3
    assert found[ids[0]].result["batch"]["id"] == found[ids[2]].result["batch"]["id"]


def test_a_job_whose_input_is_corrupt_fails_alone_in_its_batch(stack):
    ids = [understand(stack) for _ in range(3)]
    # Damage the stored upload of the middle job, as a bad disk or a partial copy would.
    (stack.settings.data_path / "storage" / "jobs" / ids[1] / "input").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with one_worker(stack):
        done = wait_all(stack, ids)
        # The messages of the jobs that rode along in the first job's batch are dropped.
        log = stack.log_dir / "worker0.log"
        deadline = time.monotonic() + 30
        while not all(f"job {i} not claimable" in log.read_text() for i in ids[1:]):
            assert time.monotonic() < deadline, stack.logs()
            time.sleep(0.2)
    assert [done[i]["status"] for i in ids] == ["succeeded", "failed", "succeeded"], done
    assert done[ids[1]]["error"]["code"] == "model_error"
    found = rows(stack, ids)
    assert found[ids[0]].result["batch"]["jobs"] == found[ids[2]].result["batch"]["jobs"] == 3
    assert found[ids[0]].result["batch"]["id"] == found[ids[2]].result["batch"]["id"]


def test_back_to_back_jobs_start_within_50_ms_of_the_previous_finishing(stack):
    ids = [understand(stack) for _ in range(12)]
    with one_worker(stack, JANUS_MAX_BATCH_ANSWERS="1"):  # one job per batch: every hop is measured
        wait_all(stack, ids)
    found = sorted(rows(stack, ids).values(), key=lambda row: row.started_at)
    assert all(row.status == "succeeded" for row in found)
    gaps = [(later.started_at - earlier.finished_at).total_seconds() * 1000
            for earlier, later in zip(found, found[1:])]
    print(f"back-to-back gaps (ms): median {statistics.median(gaps):.1f}, max {max(gaps):.1f}, "
          f"all {[round(gap, 1) for gap in gaps]}")
    assert all(gap >= 0 for gap in gaps)  # one worker, one job at a time
    assert statistics.median(gaps) < 50


def test_a_worker_asked_to_stop_finishes_its_batch_and_stops_draining(stack):
    ids = [understand(stack, max_new_tokens=64) for _ in range(12)]  # about half a second each
    worker = stack.start_worker(env={"JANUS_MAX_BATCH_ANSWERS": "1"})
    try:
        stack.wait(ids[0], until=lambda job: job["status"] != "queued")
    finally:
        started = time.monotonic()
        stack.stop_worker(worker)  # SIGTERM: a warm shutdown waits for the running task, no more
    assert time.monotonic() - started < 8
    statuses = [stack.job(i)["status"] for i in ids]
    assert statuses[0] == "succeeded" and "running" not in statuses, statuses
    assert statuses.count("queued") >= 4, statuses  # draining stopped instead of running them all
    for job_id in ids:  # leave nothing queued for the next test's worker
        requests.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)


def test_two_workers_never_run_the_same_job(two_worker_stack):
    stack = two_worker_stack
    ids = [understand(stack) for _ in range(16)]
    done = wait_all(stack, ids)
    assert all(job["status"] == "succeeded" for job in done.values()), done
    found = rows(stack, ids)
    assert all(row.attempts == 1 for row in found.values())
    seen: dict[str, str] = {}
    for log in sorted(stack.log_dir.glob("worker*.log")):
        for _batch, _type, job_ids in batches_in(log):
            for job_id in set(job_ids) & set(ids):
                assert job_id not in seen, f"{job_id} ran on {seen[job_id]} and {log.name}"
                seen[job_id] = log.name
        mine = [job_id for job_id, name in seen.items() if name == log.name]
        assert len({found[job_id].worker for job_id in mine}) <= 1  # the row names the worker that ran it
    assert set(seen) == set(ids)
    assert len(set(seen.values())) == 2, "both workers should have taken batches"
    assert len({row.worker for row in found.values()}) == 2
    assert all(isinstance(row.result["text"], str) and row.result["batch"]["jobs"] <= 2 for row in found.values())

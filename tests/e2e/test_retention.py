"""Retention, DELETE and signed image URLs on the real service: two `janusq serve` processes with
auth on (one database, one storage folder as on a shared volume), a simulated-model worker on
PostgreSQL + Redis whose sweeper runs the retention pass."""
from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from sqlalchemy import update

from jobs import keys
from jobs.db import Database
from jobs.models import Job, utcnow
from tests.e2e.stack import Stack
from tests.pgdb import fresh_database

# About 1 s per image on the simulated H200, stretched 4 times: a job runs long enough to be
# deleted while it runs, on a loaded 2-core machine too.
MODEL = "simulated:h200-janus-1.3b?scale=4"


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url):
    var = tmp_path_factory.mktemp("var")
    with fresh_database("janusq_e2e_ret") as database_url:
        env = {"JANUS_DATA_DIR": str(var), "JANUS_DATABASE_URL": database_url, "JANUS_BROKER_URL": redis_url,
               "JANUS_MODEL": MODEL, "JANUS_AUTH": "on", "JANUS_API_WORKERS": "1",
               "JANUS_SWEEP_INTERVAL": "0.5", "JANUS_PROGRESS_INTERVAL": "0.2"}
        stacks = [Stack(env, tmp_path_factory.mktemp(f"logs{i}")) for i in range(2)]
        db = Database(database_url)
        try:
            stacks[0].start(workers=1)
            stacks[1].start(workers=0)
            with db.session() as session:
                key = keys.create_key(session, "e2e-retention", "acme").secret
            yield stacks, db, key, var / "storage"
        finally:
            for stack in stacks:
                stack.stop()
            db.dispose()


def call(stack: Stack, method: str, path: str, key: str | None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.request(method, stack.base_url + path, headers=headers, timeout=30, **kwargs)


def submit(stack: Stack, key: str, num_images: int = 1) -> str:
    response = call(stack, "POST", "/v1/jobs", key, json={"type": "generate", "prompt": "a fox", "num_images": num_images})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for(stack: Stack, key: str, job_id: str, until, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = call(stack, "GET", f"/v1/jobs/{job_id}", key).json()
        if until(job):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} stuck at {job}\n{stack.logs()}")


def finished(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "canceled")


def test_a_signed_image_url_from_one_api_process_works_on_another_without_a_key(service):
    (first, second), _, key, _ = service
    job = wait_for(first, key, submit(first, key), finished)
    assert job["status"] == "succeeded"
    url = urlparse(job["result"]["images"][0]["url"])
    image = requests.get(f"{second.base_url}{url.path}?{url.query}", timeout=30)
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    tampered = requests.get(f"{second.base_url}{url.path}?{url.query[:-3]}xyz", timeout=30)
    assert tampered.status_code == 403 and tampered.json()["error"]["code"] == "invalid_signature"


def test_the_workers_sweeper_deletes_the_files_of_a_job_past_the_ttl(service):
    (first, _), db, key, storage = service
    job = wait_for(first, key, submit(first, key), finished)
    assert (storage / "jobs" / job["id"] / "0.png").is_file()
    with db.session() as session:  # finished eight days ago: past the default seven-day TTL
        session.execute(update(Job).where(Job.id == job["id"]).values(finished_at=utcnow() - timedelta(days=8)))
    started = time.monotonic()
    expired = wait_for(first, key, job["id"], lambda job: job["expired_result"], timeout=30)
    print(f"\nretention: files of a job past its TTL deleted {time.monotonic() - started:.2f} s later "
          f"(sweep interval 0.5 s)")
    assert not (storage / "jobs" / job["id"]).exists()
    image = call(first, "GET", f"/v1/jobs/{job['id']}/images/0", key)
    assert image.status_code == 410 and image.json()["error"]["code"] == "result_expired"
    assert expired["expires_at"] is not None


def test_delete_a_running_and_a_queued_job_leaves_nothing_behind(service):
    (first, _), _, key, storage = service
    running, queued = submit(first, key, num_images=2), None
    wait_for(first, key, running, lambda job: job["status"] == "running" and job["progress"] > 0)
    queued = submit(first, key)  # behind the running batch
    assert call(first, "GET", f"/v1/jobs/{queued}", key).json()["status"] == "queued"
    for job_id in (queued, running):
        assert call(first, "DELETE", f"/v1/jobs/{job_id}", key).status_code == 204
        assert call(first, "GET", f"/v1/jobs/{job_id}", key).status_code == 404
    worker_log = Path(first.log_dir / "worker0.log")
    deadline = time.monotonic() + 60
    while f"job {running} was deleted while it ran" not in worker_log.read_text(errors="replace"):
        assert time.monotonic() < deadline, first.logs()
        time.sleep(0.2)
    # The worker stopped the deleted job at a checkpoint and goes on with the next one.
    after = wait_for(first, key, submit(first, key), finished)
    assert after["status"] == "succeeded"
    assert not (storage / "jobs" / running).exists() and not (storage / "jobs" / queued).exists()


def test_another_tenants_job_cannot_be_deleted(service):
    (first, _), db, key, storage = service
    with db.session() as session:
        stranger = keys.create_key(session, "e2e-stranger", "other-tenant").secret
    job = wait_for(first, key, submit(first, key), finished)
    assert call(first, "DELETE", f"/v1/jobs/{job['id']}", stranger).status_code == 404
    assert call(first, "GET", f"/v1/jobs/{job['id']}", key).status_code == 200
    assert (storage / "jobs" / job["id"] / "0.png").is_file()

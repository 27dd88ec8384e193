"""Retention and deletion of stored files on SQLite and PostgreSQL, local storage and S3 (moto)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from jobs import service, states
from jobs.models import Job, utcnow
from jobs.retention import Retention, clean_up_if_deleted, delete_job, expires_at
from jobs.settings import Settings
from jobs.storage import open_storage
from jobs.sweeper import Sweeper
from tests.jobs.test_sweeper import RecordingPublisher
from tests.s3server import create_bucket, free_port, s3_client

DAY = 24 * 3600


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return open_storage(f"file://{tmp_path / 'store'}")
    server = request.getfixturevalue("moto_server")
    bucket = f"janus-{uuid.uuid4().hex[:12]}"
    create_bucket(server.endpoint_url, bucket)
    return open_storage(f"s3://{bucket}/results", endpoint_url=server.endpoint_url)


def stored_job(db, storage, status=states.SUCCEEDED, finished_days_ago: float | None = 8.0) -> str:
    """A job with an input and two images stored, in `status`, finished that long ago."""
    with db.session() as session:
        job = service.add_job(session, "generate", {"prompt": "p", "seed": 1})
        job.status = status
        job.input_key = f"jobs/{job.id}/input"
        if finished_days_ago is not None:
            job.finished_at = utcnow() - timedelta(days=finished_days_ago)
        job_id = job.id
    for name in ("input", "0.png", "1.png"):
        storage.put(f"jobs/{job_id}/{name}", b"bytes", "image/png")
    return job_id


def has_files(storage, job_id) -> bool:
    return any(storage.exists(f"jobs/{job_id}/{name}") for name in ("input", "0.png", "1.png"))


def row(db, job_id) -> Job | None:
    with db.session() as session:
        return session.get(Job, job_id)


def test_finished_jobs_past_the_ttl_lose_their_files_and_are_marked(db, storage):
    due = {status: stored_job(db, storage, status) for status in sorted(states.TERMINAL)}
    recent = stored_job(db, storage, finished_days_ago=6.9)
    live = [stored_job(db, storage, states.QUEUED, None), stored_job(db, storage, states.RUNNING, None)]
    before = utcnow()
    expired = Retention(db, storage, 7 * DAY).expire_results()
    assert sorted(expired) == sorted(due.values())
    for job_id in due.values():
        assert not has_files(storage, job_id)
        assert row(db, job_id).result_expired_at >= before
    for job_id in (recent, *live):
        assert has_files(storage, job_id) and row(db, job_id).result_expired_at is None
    assert Retention(db, storage, 7 * DAY).expire_results() == []  # nothing twice


def test_ttl_zero_keeps_files_forever(db, storage):
    job_id = stored_job(db, storage, finished_days_ago=3650)
    assert Retention(db, storage, 0).expire_results() == []
    assert has_files(storage, job_id) and row(db, job_id).result_expired_at is None


def test_each_sweep_expires_a_bounded_batch_oldest_first(db, storage):
    jobs = [stored_job(db, storage, finished_days_ago=30 - day) for day in range(5)]  # oldest first
    retention = Retention(db, storage, 7 * DAY, batch=2)
    sweeper = Sweeper(db, RecordingPublisher(), requeue_after=10, max_attempts=3, retention=retention)
    assert [sweeper.sweep().expired_results for _ in range(4)] == [jobs[:2], jobs[2:4], jobs[4:], []]
    assert not any(has_files(storage, job_id) for job_id in jobs)


def test_storage_down_marks_nothing_and_the_next_sweep_tries_again(db, tmp_path):
    down = open_storage("s3://bucket/results", endpoint_url=f"http://127.0.0.1:{free_port()}")
    local = open_storage(f"file://{tmp_path / 'store'}")
    job_id = stored_job(db, local)
    assert Retention(db, down, 7 * DAY).expire_results() == []
    assert row(db, job_id).result_expired_at is None
    assert Retention(db, local, 7 * DAY).expire_results() == [job_id]


def test_expires_at_is_finished_at_plus_the_ttl_then_when_it_happened(db, storage):
    job_id = stored_job(db, storage, finished_days_ago=1)
    job = row(db, job_id)
    assert expires_at(job, 7 * DAY) == job.finished_at + timedelta(days=7)
    assert expires_at(job, 0) is None
    assert expires_at(row(db, stored_job(db, storage, states.RUNNING, None)), 7 * DAY) is None
    Retention(db, storage, 1).expire_results()
    expired = row(db, job_id)
    assert expires_at(expired, 7 * DAY) == expired.result_expired_at == expires_at(expired, 0)


@pytest.mark.parametrize("status", [states.SUCCEEDED, states.FAILED, states.QUEUED, states.RUNNING])
def test_delete_job_removes_the_files_and_the_row(db, storage, status):
    job_id = stored_job(db, storage, status, None)
    neighbour = stored_job(db, storage)
    assert delete_job(db, storage, job_id)
    assert row(db, job_id) is None and not has_files(storage, job_id)
    assert row(db, neighbour) is not None and has_files(storage, neighbour)
    assert not delete_job(db, storage, job_id)  # already gone


def test_a_worker_cleans_up_after_a_job_deleted_while_it_ran(db, storage):
    job_id = stored_job(db, storage, states.RUNNING, None)
    assert not clean_up_if_deleted(db, storage, job_id)  # the row is there: the files are the job's
    assert has_files(storage, job_id)
    delete_job(db, storage, job_id)
    storage.put(f"jobs/{job_id}/0.png", b"written after the delete", "image/png")
    assert clean_up_if_deleted(db, storage, job_id)
    assert not has_files(storage, job_id)


def test_the_readmes_bucket_lifecycle_rule_is_one_s3_accepts(moto_server):
    """The safety net README documents, applied to a bucket as `aws s3api` would."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme[readme.index("**A bucket lifecycle rule"):]
    rule = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    bucket = f"janus-{uuid.uuid4().hex[:12]}"
    create_bucket(moto_server.endpoint_url, bucket)
    client = s3_client(moto_server.endpoint_url)
    client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rule)
    [stored] = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert stored["Filter"]["Prefix"] == "results/jobs/" and stored["Status"] == "Enabled"
    assert stored["Expiration"]["Days"] * DAY > Settings.model_fields["result_ttl"].default

"""Fault 5: object storage fails while results are written; retried, then done or failed clearly."""
from __future__ import annotations

import time
import uuid

import pytest

from tests.faults.conftest import figure
from tests.faults.network import TcpProxy
from tests.s3server import DUMMY_AWS_ENV, create_bucket


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    for name, value in DUMMY_AWS_ENV.items():
        monkeypatch.setenv(name, value)


def s3_stack(make_stack, s3_server):
    proxy = TcpProxy("127.0.0.1", s3_server.port).up()
    bucket = f"janus-{uuid.uuid4().hex[:8]}"
    create_bucket(s3_server.endpoint_url, bucket)
    stack = make_stack(workers=1, storage_url=f"s3://{bucket}/results",
                       s3_endpoint_url=f"http://127.0.0.1:{proxy.port}")
    return stack, proxy


def storage_down_while_running(stack, proxy, num_images: int) -> str:
    """Submit a generate job and take storage away once it runs (before its results are written)."""
    job_id = stack.submit(type="generate", prompt="a storm", num_images=num_images, seed=1).json()["id"]
    stack.wait(job_id, until=lambda job: job["status"] == "running")
    proxy.down()
    return job_id


def test_a_result_write_that_fails_is_retried_and_completes_when_storage_returns(make_stack, s3_server):
    stack, proxy = s3_stack(make_stack, s3_server)
    try:
        job_id = storage_down_while_running(stack, proxy, num_images=2)
        retrying = stack.wait(job_id, until=lambda job: job["status"] == "queued" and job["attempts"] >= 1,
                              timeout=60)
        assert retrying["error"]["code"] == "storage_error"  # why it is waiting, visible meanwhile
        proxy.up()
        back = time.monotonic()
        final = stack.wait(job_id, timeout=90)
        figure(f"storage down while writing results: retried (attempt {final['attempts']}), succeeded "
               f"{time.monotonic() - back:.1f} s after storage returned")
        assert final["status"] == "succeeded" and final["attempts"] >= 2 and final["error"] is None
        assert len(final["result"]["images"]) == 2
    finally:
        proxy.down()


def test_a_result_write_that_keeps_failing_fails_after_its_attempts(make_stack, s3_server):
    stack, proxy = s3_stack(make_stack, s3_server)
    try:
        job_id = storage_down_while_running(stack, proxy, num_images=1)
        started = time.monotonic()
        final = stack.wait(job_id, timeout=120)
        figure(f"storage down for good: failed after {final['attempts']} attempts, "
               f"{time.monotonic() - started:.1f} s, error {final['error']['code']}")
        assert final["status"] == "failed" and final["attempts"] == 3
        assert final["error"]["code"] == "storage_error" and final["error"]["message"]
    finally:
        proxy.down()

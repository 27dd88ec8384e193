"""The SDK and CLI against the production shape (PostgreSQL, Redis, S3: images come through a
307 to a presigned URL) with auth on: every call carries an API key made by `janusq keys create`,
and image URLs come signed."""
from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from janusq.client import Client, UnauthorizedError
from tests.client.e2e_cases import *  # noqa: F401,F403 - the shared cases, run against this stack
from tests.e2e.conftest import distributed_env
from tests.e2e.stack import Stack


@pytest.fixture(scope="module")
def authed_stack(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url):
    env = distributed_env(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url)
    # One worker: a second would only add its model warm-up (~20 s on a CPU).
    with Stack({**env, "JANUS_AUTH": "on"}, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


@pytest.fixture(scope="module")
def service(authed_stack):
    # A tenant of its own: its job history holds only this module's jobs.
    made = subprocess.run([sys.executable, "-m", "janusq", "keys", "create", "--name", "sdk-e2e",
                           "--tenant", f"sdk-{uuid.uuid4().hex[:8]}"],
                          capture_output=True, text=True, timeout=60, env=authed_stack.env, check=True)
    return authed_stack.base_url, made.stdout.strip()


def test_without_the_key_the_api_says_unauthorized(service):
    with pytest.raises(UnauthorizedError) as raised:
        Client(service[0], api_key="").jobs.get("anything")
    assert (raised.value.code, raised.value.status) == ("unauthorized", 401)


def test_image_urls_are_signed_and_served_without_the_key(service):
    url, key = service
    job = next(Client(url, key).jobs.list(kind="generate", status="succeeded"))  # made by the cases above
    assert "signature=" in job.image_urls[0]
    assert Client(url, api_key="").download(job.image_urls[0]).startswith(PNG)

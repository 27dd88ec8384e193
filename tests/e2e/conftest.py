from __future__ import annotations

import shutil

import pytest

from tests.e2e.stack import Stack
from tests.s3server import DUMMY_AWS_ENV


@pytest.fixture(scope="module")
def embedded_stack(tmp_path_factory, tiny_checkpoint):
    """`make run`'s configuration: SQLite, kombu's SQLAlchemy transport, a local folder."""
    env = embedded_env(tmp_path_factory, tiny_checkpoint)
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


def embedded_env(tmp_path_factory, tiny_checkpoint) -> dict:
    """embedded_stack's configuration (test_web_page.py and test_events.py add to it)."""
    data_dir = tmp_path_factory.mktemp("var")
    # Pre-place the session's tiny checkpoint where JANUS_MODEL=tiny looks, to skip a rebuild.
    shutil.copytree(tiny_checkpoint, data_dir / "models" / "janus-tiny")
    return {"JANUS_DATA_DIR": str(data_dir), "JANUS_MODEL": "tiny"}


@pytest.fixture(scope="module")
def distributed_stack(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url):
    """The production shape: PostgreSQL, Redis, S3 over HTTP, two workers sharing the queues."""
    env = distributed_env(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url)
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=2) as stack:
        yield stack


def distributed_env(tmp_path_factory, tiny_checkpoint, postgres_url, redis_url, s3_server, s3_storage_url) -> dict:
    """distributed_stack's configuration (tests/client adds JANUS_AUTH=on to it)."""
    return {
        "JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")),
        "JANUS_DATABASE_URL": postgres_url,
        "JANUS_BROKER_URL": redis_url,
        "JANUS_STORAGE_URL": s3_storage_url,
        "JANUS_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "JANUS_MODEL": str(tiny_checkpoint),
        # One 16-image job fills a batch: tests that need both workers busy (cancel a queued job)
        # would otherwise see one worker take two such jobs and the other start the job meant to wait.
        "JANUS_MAX_BATCH_IMAGES": "16",
        **DUMMY_AWS_ENV,
    }

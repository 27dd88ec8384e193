"""Shared fixtures: real PostgreSQL, Redis and S3 (moto's server), and the tiny checkpoint.

A missing PostgreSQL or Redis is a failure here, never a skip.
"""
from __future__ import annotations

import os
import uuid

import pytest

from tests.s3server import DUMMY_AWS_ENV, MotoServer, create_bucket

POSTGRES_ADMIN = os.environ.get("JANUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# JANUS_TEST_REDIS names a database outright; otherwise each run claims one of REDIS_SERVER's.
REDIS_URL = os.environ.get("JANUS_TEST_REDIS", "")
REDIS_SERVER = os.environ.get("JANUS_TEST_REDIS_SERVER", "redis://127.0.0.1:6379")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The tiny random-weight checkpoint, built once per test run, loaded like any checkpoint."""
    from janus_model import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("models") / "janus-tiny")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh database for this run, dropped at the end."""
    import psycopg  # here, not at the top: the GPU smoke test runs where no database client is installed

    name = f"janusq_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url():
    """A Redis database of this run's own (tests/redisdb.py), or JANUS_TEST_REDIS's, flushed."""
    import redis as redis_lib

    from tests.redisdb import claim_database, release_database

    if REDIS_URL:
        client = redis_lib.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.flushdb()
        yield REDIS_URL
        client.flushdb()
        return
    url = claim_database(REDIS_SERVER)
    yield url
    release_database(url)


@pytest.fixture(scope="session")
def s3_server():
    for name, value in DUMMY_AWS_ENV.items():
        os.environ.setdefault(name, value)
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def s3_storage_url(s3_server):
    bucket = f"janus-{uuid.uuid4().hex[:8]}"
    create_bucket(s3_server.endpoint_url, bucket)
    return f"s3://{bucket}/results"

"""Two test runs on one machine each get a Redis database of their own."""
from __future__ import annotations

import subprocess
import sys

import pytest
import redis as redis_lib

from tests.conftest import REDIS_SERVER
from tests.redisdb import CLAIM_KEY, claim_database, release_database


@pytest.fixture
def claims():
    taken = []

    def claim(me):
        url = claim_database(REDIS_SERVER, me)
        taken.append((url, me))
        return url

    yield claim
    for url, me in taken:
        release_database(url, me)


def test_two_runs_claim_different_databases_and_release_them(claims):
    first, second = claims("test-host-a:1"), claims("test-host-b:2")
    assert first != second
    redis_lib.Redis.from_url(first).set("some-queue", "message")
    release_database(first, "test-host-a:1")
    assert redis_lib.Redis.from_url(first).dbsize() == 0
    assert redis_lib.Redis.from_url(second).get(CLAIM_KEY) == b"test-host-b:2"


def test_a_database_holding_data_is_never_claimed(claims):
    url = claims("test-host-a:1")
    client = redis_lib.Redis.from_url(url)
    client.delete(CLAIM_KEY)
    client.set("someone-else", "data")
    try:
        assert claims("test-host-b:2") != url
        assert client.get("someone-else") == b"data"
    finally:
        client.flushdb()


def test_the_claim_of_a_process_that_exited_is_taken_over(claims):
    import socket

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    url = claims(f"{socket.gethostname()}:{exited}")
    redis_lib.Redis.from_url(url).set("left-behind", "x")
    assert claims("test-host-b:2") == url  # the highest free number again: the stale one
    assert redis_lib.Redis.from_url(url).get("left-behind") is None

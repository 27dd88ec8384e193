"""A Redis database of this test run's own, so two runs on one machine never share a broker.

Every test run used to flush and use database 13: a second run at the same time flushed the
first one's queues and took its messages. Now a run claims a database that is empty (or whose
claim names a process that no longer runs on this host) by writing a claim key with SET NX, and
flushes it when it ends. JANUS_TEST_REDIS, when set, names the database outright.
"""
from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit, urlunsplit

CLAIM_KEY = "janusq:test-run"
CANDIDATES = range(15, 0, -1)  # database 0 is the usual default of a developer's own service


class NoFreeDatabase(RuntimeError):
    pass


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim_database(server_url: str, me: str | None = None) -> str:
    """The URL of a database of `server_url`'s Redis now claimed by `me`."""
    import redis as redis_lib

    me = me or owner()
    for number in CANDIDATES:
        url = with_database(server_url, number)
        client = redis_lib.Redis.from_url(url, socket_connect_timeout=3)
        if _take(client, me):
            return url
    raise NoFreeDatabase(f"no free Redis database on {server_url}: each holds data or another test run's claim")


def release_database(url: str, me: str | None = None) -> None:
    """Flushes the database if `me` still holds it."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url, socket_connect_timeout=3)
    if client.get(CLAIM_KEY) == (me or owner()).encode():
        client.flushdb()


def with_database(server_url: str, number: int) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{number}"))


def _take(client, me: str) -> bool:
    holder = client.get(CLAIM_KEY)
    if holder is None:
        # Empty only: a database holding anything else may be someone's data.
        return client.dbsize() == 0 and bool(client.set(CLAIM_KEY, me, nx=True))
    if holder.decode() == me or _is_stale(holder.decode()):
        # Compare-and-set, so two runs that both see a stale claim do not both take it.
        with client.pipeline() as pipe:
            try:
                pipe.watch(CLAIM_KEY)
                pipe.multi()
                pipe.flushdb()
                pipe.set(CLAIM_KEY, me)
                pipe.execute()
                return True
            except redis_watch_error():
                return False
    return False


def _is_stale(holder: str) -> bool:
    """A claim of a process on this host that has exited (a run killed before it could flush)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def redis_watch_error():
    from redis.exceptions import WatchError

    return WatchError

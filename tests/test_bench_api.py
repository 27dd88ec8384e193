"""`janusq bench --api`: a tiny real run (PostgreSQL, Redis, gunicorn) and the lines it prints."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import redis

from tests.conftest import POSTGRES_ADMIN

FIELDS = {"bench", "path", "clients", "requests", "seconds", "req_per_s", "p50_ms", "p99_ms",
          "ratio_to_bare", "errors", "error_kinds", "client_cpu", "job_type", "database", "auth",
          "api_workers", "api_threads", "model", "tenants", "server_cpu_ms"}


def _bench_databases() -> set[str]:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
        rows = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 'janusq_bench_%'")
        return {name for (name,) in rows}


def test_bench_api_prints_a_line_per_path_and_client_count(tiny_checkpoint, redis_url, tmp_path):
    queued = redis.Redis.from_url(redis_url)
    databases_before, counters_before = _bench_databases(), set(queued.scan_iter("janusq:ratelimit:*"))
    bindings = ("_kombu.binding.generate", "_kombu.binding_permanent.generate")
    bindings_before = queued.exists(*bindings)  # other tests in the session may use this database
    env = {**os.environ, "JANUS_MODEL": str(tiny_checkpoint), "JANUS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "janusq", "bench", "--api", "--clients", "1,2", "--requests", "3",
                           "--seconds", "30", "--redis-url", redis_url, "--postgres-url", POSTGRES_ADMIN],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(line["path"], line["clients"]) for line in lines] == [
        (path, clients) for clients in (1, 2) for path in ("bare", "submit", "poll")]
    for line in lines:
        assert set(line) == FIELDS
        assert line["bench"] == "api" and line["errors"] == 0 and line["error_kinds"] == {}
        assert line["requests"] == 3 * line["clients"]
        assert 0 < line["p50_ms"] <= line["p99_ms"] and line["req_per_s"] > 0
        assert line["database"] == "postgresql" and line["auth"] == "on"
        assert line["server_cpu_ms"] is None or line["server_cpu_ms"] >= 0
    assert {line["ratio_to_bare"] for line in lines if line["path"] == "bare"} == {1.0}
    # The stack cleans up after itself: no database, no queued bench messages.
    assert not _bench_databases() - databases_before
    assert queued.llen("generate") == 0 and set(queued.scan_iter("janusq:ratelimit:*")) <= counters_before
    assert queued.exists(*bindings) <= bindings_before

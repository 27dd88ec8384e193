"""Keys, revocation and the rate limit across two real API processes sharing Redis and PostgreSQL."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from tests.e2e.stack import Stack
from tests.pgdb import fresh_database

RATE_LIMIT = 6


def janusq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "janusq", *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory, tiny_checkpoint, redis_url):
    """Two `janusq serve` processes (two gunicorn workers each) with auth on, one database, and
    the rate-limit counts in Redis (the broker here is the embedded one, so Redis holds only those)."""
    var = tmp_path_factory.mktemp("var")
    with fresh_database("janusq_e2e_sec") as database_url:
        env = {
            "JANUS_DATA_DIR": str(var),
            "JANUS_DATABASE_URL": database_url,
            "JANUS_BROKER_URL": f"sqla+sqlite:///{var / 'broker.db'}",
            "JANUS_MODEL": str(tiny_checkpoint),
            "JANUS_AUTH": "on",
            "JANUS_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "JANUS_RATE_LIMIT_REDIS_URL": redis_url,
        }
        stacks = [Stack(env, tmp_path_factory.mktemp(f"logs{i}")) for i in range(2)]
        try:
            for stack in stacks:
                stack.start(workers=0)
            yield stacks
        finally:
            for stack in stacks:
                stack.stop()


def _new_key(stack: Stack, name: str) -> str:
    created = janusq(stack.env, "keys", "create", "--name", name)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def _get(stack: Stack, key: str | None, path: str = "/v1/jobs") -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.get(stack.base_url + path, headers=headers, timeout=10)


def test_serve_says_auth_is_on(two_apis):
    assert "auth is on" in (two_apis[0].log_dir / "api.log").read_text()


def test_rate_limit_holds_across_api_processes(two_apis):
    first, second = two_apis
    key, other = _new_key(first, "rate"), _new_key(first, "rate-other")
    answers = [_get(stack, key).status_code for stack in (first, second) * (RATE_LIMIT // 2)]
    assert answers == [200] * RATE_LIMIT
    for stack in (first, second):
        limited = _get(stack, key)
        assert limited.status_code == 429, limited.text
        assert limited.headers["Content-Type"].startswith("application/json")
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # Creating is refused as well; the open endpoints are not counted.
        post = requests.post(stack.base_url + "/v1/jobs", json={"type": "generate", "prompt": "p"},
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert post.status_code == 429
        assert _get(stack, None, "/healthz").status_code == 200
    assert _get(first, other).status_code == _get(second, other).status_code == 200


def test_keys_are_required_and_revocation_reaches_every_api_within_the_key_cache_time(two_apis):
    first, second = two_apis
    missing = _get(first, None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "unauthorized"
    key = _new_key(first, "revoke-me")
    job = requests.post(first.base_url + "/v1/jobs", json={"type": "generate", "prompt": "p", "num_images": 1},
                        headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert job.status_code == 202, job.text
    listing = janusq(first.env, "keys", "list")
    assert key[:11] in listing.stdout and key not in listing.stdout
    revoked = janusq(first.env, "keys", "revoke", key[:11])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    # Each API process trusts a key it verified for JANUS_API_KEY_CACHE_SECONDS (5 s by default).
    deadline = time.monotonic() + first.settings.api_key_cache_seconds + 2
    for stack in (first, second):
        while (response := _get(stack, key)).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert response.status_code == 401 and 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_other_tenants_jobs_are_invisible_over_http(two_apis):
    first, second = two_apis
    alice, bob = _new_key(first, "alice"), _new_key(first, "bob")
    job = requests.post(first.base_url + "/v1/jobs", json={"type": "generate", "prompt": "p", "num_images": 1},
                        headers={"Authorization": f"Bearer {alice}"}, timeout=10).json()
    assert _get(second, alice, f"/v1/jobs/{job['id']}").status_code == 200
    theirs = _get(second, bob, f"/v1/jobs/{job['id']}")
    assert theirs.status_code == 404 and theirs.json()["error"]["message"] == f"no job {job['id']}"
    assert _get(second, bob).json()["data"] == []


def test_auth_off_beyond_loopback_refuses_to_start(tmp_path):
    env = {**os.environ, "JANUS_DATA_DIR": str(tmp_path), "JANUS_HOST": "0.0.0.0", "JANUS_AUTH": "off"}
    for command in ("serve", "run"):
        result = janusq(env, command)
        assert result.returncode == 2
        assert result.stderr.strip().startswith("janusq: invalid JANUS_AUTH") and "loopback" in result.stderr

"""Limits: per-key request rate (429 + Retry-After), per-tenant unfinished jobs (429, nothing
created), the size limits as configured, and no fetching of client-given URLs."""
from __future__ import annotations

import base64
import io
import socket
import threading
import time
import uuid

import pytest
from PIL import Image

from api.ratelimit import LocalRateLimiter, RedisRateLimiter
from tests.api.conftest import bearer
from tests.s3server import free_port

GENERATE = {"type": "generate", "prompt": "a fox", "num_images": 1}


def _png(size=(8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _assert_429(response, code: str):
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == code


# --- request rate ------------------------------------------------------------------------


def test_rate_limit_per_key_answers_429_with_retry_after(make_api, new_key, tenant):
    # The embedded broker is not Redis: this API counts in its own process.
    api = make_api(rate_limit_per_minute=3)
    assert api.settings.rate_limit_redis is None
    name = tenant()
    first, second = bearer(new_key(name)), bearer(new_key(name))
    for _ in range(3):
        assert api.client.get("/v1/jobs", headers=first).status_code == 200
    limited = api.client.get("/v1/jobs", headers=first)
    _assert_429(limited, "rate_limited")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Creating is refused too, and creates nothing.
    before = api.job_count()
    _assert_429(api.client.post("/v1/jobs", json=GENERATE, headers=first), "rate_limited")
    assert api.job_count() == before
    # Per key: another key (even of the same tenant) has its own budget; probes are not counted.
    assert api.client.get("/v1/jobs", headers=second).status_code == 200
    assert api.client.get("/healthz").status_code == 200


def test_bad_keys_do_not_spend_a_keys_budget(make_api, new_key):
    api = make_api(rate_limit_per_minute=2)
    secret = new_key()
    for _ in range(5):
        assert api.client.get("/v1/jobs", headers=bearer(secret + "x")).status_code == 401
    assert api.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200


def test_zero_turns_the_rate_limit_off(make_api, new_key):
    api = make_api(rate_limit_per_minute=0)
    key = bearer(new_key())
    assert all(api.client.get("/v1/jobs", headers=key).status_code == 200 for _ in range(20))


def test_redis_counts_are_shared_between_apps(make_api, new_key, redis_url):
    # Two apps in one process stand for two API processes here; tests/e2e runs real ones.
    one = make_api(rate_limit_per_minute=4, rate_limit_redis_url=redis_url)
    two = make_api(rate_limit_per_minute=4, rate_limit_redis_url=redis_url)
    key = bearer(new_key())
    assert [one.client.get("/v1/jobs", headers=key).status_code,
            two.client.get("/v1/jobs", headers=key).status_code,
            one.client.get("/v1/jobs", headers=key).status_code,
            two.client.get("/v1/jobs", headers=key).status_code] == [200] * 4
    _assert_429(one.client.get("/v1/jobs", headers=key), "rate_limited")
    _assert_429(two.client.get("/v1/jobs", headers=key), "rate_limited")


def test_redis_limiter_window(redis_url):
    identity = uuid.uuid4().hex
    a, b = RedisRateLimiter(redis_url, 3), RedisRateLimiter(redis_url, 3)
    decisions = [a.hit(identity), b.hit(identity), a.hit(identity), b.hit(identity)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 55 <= decisions[-1].retry_after <= 60
    ttl = a.client.pttl("janusq:ratelimit:" + identity)
    assert 0 < ttl <= 60_000  # the counter expires with its window


def test_redis_limiter_window_resets(redis_url):
    identity = uuid.uuid4().hex
    limiter = RedisRateLimiter(redis_url, 1, window_seconds=1)
    assert limiter.hit(identity).allowed and not limiter.hit(identity).allowed
    time.sleep(1.05)
    assert limiter.hit(identity).allowed


def test_redis_limiter_leases_never_exceed_the_limit(redis_url):
    # Two limiters stand for two API processes; each takes 1% of the limit per Redis round trip.
    identity = uuid.uuid4().hex
    a, b = RedisRateLimiter(redis_url, 1000), RedisRateLimiter(redis_url, 1000)
    assert a.lease == 10
    allowed = [limiter.hit(identity).allowed for _ in range(600) for limiter in (a, b)]
    # Never more than the limit; refused early by at most the leases the two hold unspent.
    assert 1000 - 2 * a.lease <= allowed.count(True) <= 1000
    assert allowed[:1000] == [True] * 1000
    # A request per lease reached Redis (the shared counter moved in whole leases), and none
    # after the budget was spent: refusals are answered locally until the window ends.
    counter = int(a.client.get("janusq:ratelimit:" + identity))
    assert counter % a.lease == 0 and counter <= 1000 + 2 * a.lease


def test_redis_limiter_leases_are_thread_safe(redis_url):
    identity = uuid.uuid4().hex
    limiter, results = RedisRateLimiter(redis_url, 500), []
    threads = [threading.Thread(target=lambda: results.extend(limiter.hit(identity).allowed for _ in range(100)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 500 - 8 * limiter.lease <= results.count(True) <= 500 and len(results) == 800


def test_redis_down_falls_back_to_counting_in_process():
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", 2)
    assert [limiter.hit("k").allowed for _ in range(3)] == [True, True, False]


def test_local_limiter_is_thread_safe():
    limiter = LocalRateLimiter(100)
    results = []
    threads = [threading.Thread(target=lambda: results.extend(limiter.hit("k").allowed for _ in range(30)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 100 and len(results) == 240


# --- unfinished jobs -------------------------------------------------------------------------


def test_unfinished_cap_answers_429_and_creates_nothing(make_api, new_key, tenant):
    api = make_api(max_unfinished_jobs=2)
    a, b = bearer(new_key(tenant("a"))), bearer(new_key(tenant("b")))
    first = api.client.post("/v1/jobs", json=GENERATE, headers={**a, "Idempotency-Key": "k1"})
    second = api.client.post("/v1/jobs", json=GENERATE, headers=a)
    assert first.status_code == second.status_code == 202
    before = (api.job_count(), api.broker_messages())
    capped = api.client.post("/v1/jobs", json=GENERATE, headers=a)
    _assert_429(capped, "too_many_unfinished_jobs")
    assert int(capped.headers["Retry-After"]) >= 1
    understand = {"type": "understand", "question": "what?", "image": _data_url(_png())}
    _assert_429(api.client.post("/v1/jobs", json=understand, headers=a), "too_many_unfinished_jobs")
    assert (api.job_count(), api.broker_messages()) == before
    assert not list((api.data_dir / "storage").glob("jobs/*/input"))  # no upload kept
    # A retry of an accepted request is not a new job: it still gets its job back.
    replay = api.client.post("/v1/jobs", json=GENERATE, headers={**a, "Idempotency-Key": "k1"})
    assert replay.status_code == 202 and replay.json["id"] == first.json["id"]
    # Per tenant: B is not affected; A gets room again once a job finishes.
    assert api.client.post("/v1/jobs", json=GENERATE, headers=b).status_code == 202
    assert api.client.post(f"/v1/jobs/{second.json['id']}/cancel", headers=a).status_code == 200
    assert api.client.post("/v1/jobs", json=GENERATE, headers=a).status_code == 202


def test_unfinished_cap_holds_under_concurrent_creates(make_api, new_key, tenant):
    api = make_api(max_unfinished_jobs=4)
    name = tenant()
    key = bearer(new_key(name))
    statuses = []
    barrier = threading.Barrier(12)

    def submit():
        client = api.app.test_client()
        barrier.wait()
        statuses.append(client.post("/v1/jobs", json=GENERATE, headers=key).status_code)

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(statuses) == [202] * 4 + [429] * 8
    assert len(api.jobs_of(name)) == 4


def test_zero_turns_the_unfinished_cap_off(make_api, new_key):
    api = make_api(max_unfinished_jobs=0)
    key = bearer(new_key())
    assert all(api.client.post("/v1/jobs", json=GENERATE, headers=key).status_code == 202 for _ in range(3))


# --- sizes, as configured ------------------------------------------------------------------


@pytest.fixture
def small_api(make_api, new_key):
    api = make_api(max_upload_bytes=4096, max_image_pixels=64 * 64, max_prompt_chars=10)
    return api, bearer(new_key())


@pytest.mark.parametrize("body,status,code,field", [
    ({**GENERATE, "prompt": "x" * 11}, 422, "prompt_too_long", "prompt"),
    ({"type": "understand", "question": "q" * 11, "image": _data_url(_png())}, 422, "prompt_too_long", "question"),
    ({"type": "understand", "question": "q", "image": _data_url(_png((65, 64)))}, 422, "image_too_large", "image"),
    ({"type": "generate", "prompt": "p", "seed": None, "pad": "y" * 5000}, 413, "payload_too_large", None),
])
def test_configured_size_limits_refuse_and_create_nothing(small_api, body, status, code, field):
    api, key = small_api
    before = (api.job_count(), api.broker_messages())
    response = api.client.post("/v1/jobs", json=body, headers=key)
    assert response.status_code == status, response.json
    assert (response.json["error"]["code"], response.json["error"]["field"]) == (code, field)
    assert (api.job_count(), api.broker_messages()) == before


def test_configured_sizes_accept_what_fits(small_api):
    api, key = small_api
    assert api.client.post("/v1/jobs", json={**GENERATE, "prompt": "x" * 10}, headers=key).status_code == 202
    fits = {"type": "understand", "question": "q" * 10, "image": _data_url(_png((64, 64)))}
    assert api.client.post("/v1/jobs", json=fits, headers=key).status_code == 202


def test_multipart_upload_over_the_byte_limit_is_413(small_api):
    api, key = small_api
    response = api.client.post("/v1/jobs", headers=key, content_type="multipart/form-data", data={
        "type": "understand", "question": "q", "image": (io.BytesIO(b"0" * 5000), "big.png")})
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


# --- URLs are never fetched ----------------------------------------------------------------


@pytest.fixture
def listener():
    """A local server that records whether anything connected to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.5)
    connections = []

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], connections
    stop.set()
    thread.join()
    server.close()


def test_image_urls_are_refused_without_being_fetched(make_api, new_key, listener):
    port, connections = listener
    api = make_api()
    key = bearer(new_key())
    for url in (f"http://127.0.0.1:{port}/x.png", f"https://127.0.0.1:{port}/x.png",
                "file:///etc/passwd", f"ftp://127.0.0.1:{port}/x.png"):
        response = api.client.post("/v1/jobs", headers=key,
                                   json={"type": "understand", "question": "q", "image": url})
        assert response.status_code == 422 and response.json["error"]["field"] == "image"
        form = api.client.post("/v1/jobs", headers=key, content_type="multipart/form-data",
                               data={"type": "understand", "question": "q", "image": url})
        assert form.status_code == 422 and form.json["error"]["field"] == "image"
    assert connections == []

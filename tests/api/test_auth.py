"""Bearer API keys on /v1: 401 JSON without a valid key; probes stay open; auth off means 'local'."""
from __future__ import annotations

import time

import pytest

from jobs import keys
from tests.api.conftest import bearer

GENERATE = {"type": "generate", "prompt": "a fox", "num_images": 1}
MISSING_ID = "0" * 32
V1_REQUESTS = [
    ("post", "/v1/jobs", GENERATE),
    ("get", "/v1/jobs", None),
    ("get", f"/v1/jobs/{MISSING_ID}", None),
    ("post", f"/v1/jobs/{MISSING_ID}/cancel", None),
    ("get", f"/v1/jobs/{MISSING_ID}/images/0", None),
]


def _call(client, method, path, body, headers=None):
    return getattr(client, method)(path, json=body, headers=headers or {})


def _assert_401(response, invalid_token: bool):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == "unauthorized"
    assert response.json["error"]["field"] == "Authorization"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert ('error="invalid_token"' in challenge) is invalid_token


@pytest.mark.parametrize("method,path,body", V1_REQUESTS, ids=[f"{m} {p}" for m, p, _ in V1_REQUESTS])
def test_every_v1_route_needs_a_key(make_api, method, path, body):
    api = make_api()
    _assert_401(_call(api.client, method, path, body), invalid_token=False)


@pytest.mark.parametrize("header", [
    "Basic dXNlcjpwdw==", "Bearer", "Bearer ", "bearer", "Token jq_abc", "jq_abc",
])
def test_malformed_authorization_is_401(make_api, header):
    api = make_api()
    _assert_401(api.client.get("/v1/jobs", headers={"Authorization": header}), invalid_token=False)


def test_unknown_and_revoked_keys_are_401_and_create_nothing(make_api, new_key, pg, tenant):
    api = make_api(api_key_cache_seconds=0)  # every request looks its key up: revocation at once
    secret = new_key(tenant())
    before = (api.job_count(), api.broker_messages())
    wrong = [secret[:-1] + ("A" if secret[-1] != "A" else "B"), "jq_" + "x" * 52, "x" * 5000,
             keys.hash_key(secret), "jq_ü_non_ascii"]
    for presented in wrong:
        _assert_401(api.client.post("/v1/jobs", json=GENERATE, headers=bearer(presented)), invalid_token=True)
    assert api.client.post("/v1/jobs", json=GENERATE, headers=bearer(secret)).status_code == 202
    with pg.session() as session:
        keys.revoke_key(session, secret[:11])
    revoked = api.client.post("/v1/jobs", json=GENERATE, headers=bearer(secret))
    _assert_401(revoked, invalid_token=True)
    # The same answer as an unknown key: a client cannot tell revoked keys from made-up ones.
    assert revoked.json == api.client.get("/v1/jobs", headers=bearer(wrong[0])).json
    assert (api.job_count(), api.broker_messages()) == (before[0] + 1, before[1] + 1)


def test_a_revoked_key_is_refused_once_its_cached_verification_expires(make_api, new_key, pg, tenant):
    api = make_api(api_key_cache_seconds=2)
    secret = new_key(tenant())
    assert api.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200  # verified, cached
    with pg.session() as session:
        keys.revoke_key(session, secret[:11])
    revoked_at = time.monotonic()
    # The documented staleness: this process still trusts its cached verification...
    assert api.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200
    while api.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200:
        assert time.monotonic() - revoked_at < 4, "a revoked key outlived the key cache"
        time.sleep(0.05)
    # ...and then refuses it like any unknown key, for good.
    _assert_401(api.client.get("/v1/jobs", headers=bearer(secret)), invalid_token=True)


def test_a_new_key_works_at_once_and_unknown_keys_are_never_cached(make_api, new_key, tenant):
    api = make_api(api_key_cache_seconds=60)
    made_up = "jq_" + "y" * 52
    _assert_401(api.client.get("/v1/jobs", headers=bearer(made_up)), invalid_token=True)
    secret = new_key(tenant())
    assert api.client.get("/v1/jobs", headers=bearer(secret)).status_code == 200
    _assert_401(api.client.get("/v1/jobs", headers=bearer(made_up)), invalid_token=True)


def test_scheme_is_case_insensitive_and_whitespace_tolerated(make_api, new_key, tenant):
    api = make_api()
    secret = new_key(tenant())
    for header in (f"bearer {secret}", f"BEARER  {secret} ", f"Bearer {secret}"):
        assert api.client.get("/v1/jobs", headers={"Authorization": header}).status_code == 200


def test_probes_metrics_and_openapi_stay_open(make_api):
    api = make_api(rate_limit_per_minute=1)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/healthz"):
        response = api.client.get(path)
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])


def test_unknown_routes_stay_plain_404(make_api):
    response = make_api().client.get("/v2/nothing")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_auth_off_on_loopback_makes_everything_tenant_local(make_api, new_key):
    api = make_api(auth="auto", host="127.0.0.1")
    created = api.client.post("/v1/jobs", json=GENERATE)
    assert created.status_code == 202, created.json
    job_id = created.json["id"]
    assert job_id in {job.id for job in api.jobs_of("local")}
    # A key of tenant 'local' sees those jobs once auth is turned on; another tenant does not.
    secured = make_api(auth="on", host="127.0.0.1")
    assert secured.client.get(f"/v1/jobs/{job_id}", headers=bearer(new_key("local"))).status_code == 200
    assert secured.client.get(f"/v1/jobs/{job_id}", headers=bearer(new_key())).status_code == 404


def test_auth_on_demands_keys_on_loopback_too(make_api):
    api = make_api(auth="on", host="127.0.0.1")
    _assert_401(api.client.get("/v1/jobs"), invalid_token=False)


def test_auth_auto_beyond_loopback_demands_keys(make_api):
    # The app is created, not bound, so any host can be named here.
    api = make_api(auth="auto", host="0.0.0.0")
    _assert_401(api.client.get("/v1/jobs"), invalid_token=False)

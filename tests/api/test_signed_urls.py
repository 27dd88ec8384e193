"""Signed image URLs: with auth on, a job's image URLs work without the key until they expire."""
from __future__ import annotations

import time
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from jobs.retention import Retention
from jobs.url_signing import SignatureExpired, UrlSigner
from jobs.settings import SettingsError, load_settings
from tests.api.conftest import bearer
from tests.api.test_retention import finish, png, submit

KEY_A = "a" * 32
KEY_B = "b" * 32


def image_url(api, key, job_id: str, index: int = 0) -> str:
    """The path and query of the image's URL, as the job's JSON gives it."""
    job = api.client.get(f"/v1/jobs/{job_id}", headers=key).json
    url = urlparse(job["result"]["images"][index]["url"])
    return f"{url.path}?{url.query}" if url.query else url.path


def with_query(url: str, **changes) -> str:
    path, _, query = url.partition("?")
    params = {name: values[0] for name, values in parse_qs(query).items()}
    params.update(changes)
    return f"{path}?{urlencode({k: v for k, v in params.items() if v is not None})}"


@pytest.fixture
def finished(make_api, new_key, tenant):
    """An API with auth on and local storage, a key, and a finished job with two images."""
    api, key = make_api(), bearer(new_key(tenant()))
    job_id = submit(api, key)
    finish(api, job_id)
    return api, key, job_id


def test_a_signed_image_url_needs_no_key_until_it_expires(finished):
    api, key, job_id = finished
    url = image_url(api, key, job_id)
    query = parse_qs(urlparse(url).query)
    assert set(query) == {"expires", "signature"}
    assert abs(int(query["expires"][0]) - (time.time() + api.settings.url_ttl)) < 60
    response = api.client.get(url)  # no Authorization header: an <img> tag, a shared link
    assert response.status_code == 200 and response.mimetype == "image/png" and response.data == png()
    assert api.client.get(f"/v1/jobs/{job_id}/images/0").status_code == 401  # unsigned still needs the key


@pytest.mark.parametrize("ttl, step", [(900, 60), (120, 12), (5, 1), (1, 1)])
def test_a_url_lives_between_one_ttl_and_one_step_more_and_is_the_same_within_a_step(ttl, step):
    signer, path, start = UrlSigner(b"k" * 32, ttl), "/v1/jobs/j/images/0", 1_800_000_000.5
    assert signer.expiry_step == step
    for now in (start + offset * 0.37 for offset in range(200)):
        expires = int(parse_qs(signer.query(path, now=now))["expires"][0])
        assert now + ttl <= expires <= now + ttl + step and expires % step == 0
    # Asked again within a step, the same URL: a browser that polls the job keeps its cached image.
    # (1.8e9 and each ttl are whole steps, so these two fall in one step.)
    assert signer.query(path, now=1_800_000_000.1) == signer.query(path, now=1_800_000_000.1 + 0.8 * step)
    assert signer.query(path, now=1_800_000_000.1) != signer.query(path, now=1_800_000_000.1 + step)
    fields = parse_qs(signer.query(path, now=start))
    signer.verify(path, fields["expires"][0], fields["signature"][0], now=start + ttl)  # still good
    with pytest.raises(SignatureExpired):
        signer.verify(path, fields["expires"][0], fields["signature"][0], now=start + ttl + step + 1)


def test_an_expired_signature_is_refused(finished):
    api, _, job_id = finished
    path = f"/v1/jobs/{job_id}/images/0"
    # Signed two TTLs ago: past even the longest life an expiry step gives.
    query = api.app.extensions["janus"].url_signer.query(path, now=time.time() - 2 * api.settings.url_ttl)
    response = api.client.get(f"{path}?{query}")
    assert response.status_code == 403
    assert response.json["error"]["code"] == "signature_expired" and response.json["error"]["field"] == "expires"


@pytest.mark.parametrize("tamper", ["signature", "expires", "index", "job", "no expires",
                                    "non-ascii signature", "non-digit expires", "huge expires"])
def test_a_tampered_url_is_refused(finished, tamper):
    api, key, job_id = finished
    url = image_url(api, key, job_id)
    other_job = submit(api, key)
    finish(api, other_job)
    signature = parse_qs(urlparse(url).query)["signature"][0]
    expires = int(parse_qs(urlparse(url).query)["expires"][0])
    tampered = {
        "signature": with_query(url, signature=signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")),
        "expires": with_query(url, expires=str(expires + 3600)),  # a longer life
        "index": with_query(url.replace("/images/0", "/images/1")),
        "job": with_query(url.replace(job_id, other_job)),
        "no expires": with_query(url, expires=None),
        "non-ascii signature": with_query(url, signature="\u00f3\u000f"),  # schemathesis found a 500 here
        "non-digit expires": with_query(url, expires="\u0661\u0662"),  # Arabic-Indic digits pass str.isdigit
        "huge expires": with_query(url, expires="9" * 5000),  # past int()'s digit limit
    }[tamper]
    for headers in ({}, key):  # judged by the signature alone, even with a valid key beside it
        response = api.client.get(tampered, headers=headers)
        assert response.status_code == 403, (tamper, response.json)
        assert response.json["error"]["code"] == "invalid_signature"


def test_without_a_signature_the_image_needs_the_key(finished):
    api, key, job_id = finished
    unsigned = with_query(image_url(api, key, job_id), signature=None)  # ?expires=... alone
    assert api.client.get(unsigned).status_code == 401
    assert api.client.get(unsigned, headers=key).status_code == 200


def test_a_signature_opens_only_the_image_route(finished):
    api, key, job_id = finished
    query = image_url(api, key, job_id).partition("?")[2]
    for path in (f"/v1/jobs/{job_id}", "/v1/jobs", f"/v1/jobs/{job_id}/cancel"):
        method = api.client.post if path.endswith("cancel") else api.client.get
        assert method(f"{path}?{query}").status_code == 401, path


def test_api_processes_sharing_the_database_verify_each_others_urls(make_api, new_key, tenant, tmp_path):
    shared = {"storage_url": f"file://{tmp_path / 'shared'}"}  # one volume, one database
    first, second = make_api(**shared), make_api(**shared)  # no JANUS_URL_SIGNING_KEY: the key in the database
    key = bearer(new_key(tenant()))
    job_id = submit(first, key)
    finish(first, job_id)
    url = image_url(first, key, job_id)
    assert second.client.get(url).status_code == 200
    assert image_url(second, key, job_id).partition("?")[2] != ""
    assert make_api(**shared).client.get(image_url(second, key, job_id)).status_code == 200  # a restart too


def test_a_configured_signing_key_is_used_and_must_match(make_api, new_key, tenant, tmp_path):
    shared = {"storage_url": f"file://{tmp_path / 'shared'}"}
    signer_a, also_a, signer_b, stored = (make_api(url_signing_key=KEY_A, **shared),
                                          make_api(url_signing_key=KEY_A, **shared),
                                          make_api(url_signing_key=KEY_B, **shared), make_api(**shared))
    key = bearer(new_key(tenant()))
    job_id = submit(signer_a, key)
    finish(signer_a, job_id)
    url = image_url(signer_a, key, job_id)
    assert also_a.client.get(url).status_code == 200
    for other in (signer_b, stored):
        assert other.client.get(url).json["error"]["code"] == "invalid_signature"


def test_a_short_signing_key_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("JANUS_URL_SIGNING_KEY", "secret")
    with pytest.raises(SettingsError, match="JANUS_URL_SIGNING_KEY") as error:
        load_settings()
    assert "\n" not in str(error.value) and "secret" not in str(error.value)  # the value is not echoed


def test_with_auth_off_image_urls_are_plain(make_api):
    api = make_api(auth="off")
    job_id = submit(api, {})
    finish(api, job_id)
    assert image_url(api, {}, job_id) == f"/v1/jobs/{job_id}/images/0"
    assert api.client.get(image_url(api, {}, job_id)).status_code == 200


def test_a_signed_url_on_s3_redirects_to_the_presigned_object(make_api, new_key, tenant, s3_server, s3_storage_url):
    api = make_api(storage_url=s3_storage_url, s3_endpoint_url=s3_server.endpoint_url)
    key = bearer(new_key(tenant()))
    job_id = submit(api, key)
    finish(api, job_id)
    response = api.client.get(image_url(api, key, job_id, 1))
    assert response.status_code == 307 and "X-Amz-Signature" in response.headers["Location"]


def test_a_signed_url_of_an_expired_or_deleted_result_says_so(make_api, new_key, tenant):
    api, key = make_api(), bearer(new_key(tenant()))
    job_id = submit(api, key)
    finish(api, job_id, days_ago=8)
    url = image_url(api, key, job_id)
    assert job_id in Retention(api.db, api.app.extensions["janus"].storage, api.settings.result_ttl).expire_results()
    assert api.client.get(url).json["error"]["code"] == "result_expired"
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code == 204
    assert api.client.get(url).status_code == 404


@pytest.mark.parametrize("value, saved", [("true", True), ("1", True), ("false", False), (None, False)])
def test_download_true_makes_the_image_an_attachment_and_keeps_the_signature_valid(finished, value, saved):
    api, key, job_id = finished
    response = api.client.get(with_query(image_url(api, key, job_id, index=1), download=value))  # no key
    assert response.status_code == 200 and response.data == png()
    disposition = response.headers.get("Content-Disposition")
    assert disposition == (f'attachment; filename="janus-{job_id[:8]}-1.png"' if saved else None)


def test_a_download_that_is_not_a_boolean_is_a_422(finished):
    api, key, job_id = finished
    response = api.client.get(with_query(image_url(api, key, job_id), download="maybe"))
    assert response.status_code == 422
    assert (response.json["error"]["code"], response.json["error"]["field"]) == ("validation_error", "download")

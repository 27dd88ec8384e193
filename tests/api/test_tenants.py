"""Tenant isolation: another tenant's job, image, cancel and listing look exactly like nothing."""
from __future__ import annotations

import base64
import io
import uuid
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from PIL import Image
from sqlalchemy import update

from jobs.models import Job, new_job_id
from jobs.storage import open_storage
from tests.api.conftest import bearer

GENERATE = {"type": "generate", "prompt": "a fox", "num_images": 1}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def two_tenants(make_api, new_key, tenant):
    """An API, two keys of tenant A (a, a2) and one of tenant B (b)."""
    api = make_api()
    name_a = tenant("a")
    return api, bearer(new_key(name_a)), bearer(new_key(name_a)), bearer(new_key(tenant("b"))), name_a


def _missing_body(job_id: str) -> dict:
    return {"error": {"code": "not_found", "message": f"no job {job_id}", "field": None}}


def _finish_with_image(api, job_id: str) -> None:
    """What a worker leaves behind: the PNG in storage and the job succeeded with its key."""
    key = f"jobs/{job_id}/0.png"
    api.app.extensions["janus"].storage.put(key, _png(), "image/png")
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            status="succeeded", progress=1.0,
            result={"images": [{"key": key, "width": 8, "height": 8, "content_type": "image/png"}]}))


def test_another_tenants_job_is_404_like_a_missing_one(two_tenants):
    api, a, a2, b, _ = two_tenants
    job_id = api.client.post("/v1/jobs", json=GENERATE, headers=a).json["id"]
    assert api.client.get(f"/v1/jobs/{job_id}", headers=a2).status_code == 200  # same tenant, other key
    for method, path in (("get", f"/v1/jobs/{job_id}"), ("post", f"/v1/jobs/{job_id}/cancel"),
                         ("get", f"/v1/jobs/{job_id}/images/0")):
        response = getattr(api.client, method)(path, headers=b)
        assert response.status_code == 404, (path, response.json)
        assert response.json == _missing_body(job_id)
    missing = new_job_id()
    assert api.client.get(f"/v1/jobs/{missing}", headers=b).json == _missing_body(missing)


def test_another_tenant_cannot_cancel(two_tenants):
    api, a, _, b, _ = two_tenants
    job_id = api.client.post("/v1/jobs", json=GENERATE, headers=a).json["id"]
    assert api.client.post(f"/v1/jobs/{job_id}/cancel", headers=b).status_code == 404
    job = api.client.get(f"/v1/jobs/{job_id}", headers=a).json
    assert job["status"] == "queued"
    assert api.client.post(f"/v1/jobs/{job_id}/cancel", headers=a).json["status"] == "canceled"


def test_another_tenants_image_is_404(two_tenants):
    api, a, _, b, _ = two_tenants
    job_id = api.client.post("/v1/jobs", json=GENERATE, headers=a).json["id"]
    _finish_with_image(api, job_id)
    mine = api.client.get(f"/v1/jobs/{job_id}/images/0", headers=a)
    assert mine.status_code == 200 and mine.data == _png()
    theirs = api.client.get(f"/v1/jobs/{job_id}/images/0", headers=b)
    assert theirs.status_code == 404 and theirs.json == _missing_body(job_id)


def test_listings_show_only_the_tenants_own_jobs(two_tenants):
    api, a, a2, b, name_a = two_tenants
    ids_a = {api.client.post("/v1/jobs", json=GENERATE, headers=key).json["id"] for key in (a, a2)}
    id_b = api.client.post("/v1/jobs", json=GENERATE, headers=b).json["id"]

    def listed(key, **query):
        return {job["id"] for job in api.client.get("/v1/jobs", query_string=query, headers=key).json["data"]}

    assert listed(a, limit=100) == listed(a2, limit=100) == ids_a
    assert listed(b, limit=100) == {id_b}
    assert listed(b, status="queued", type="generate") == {id_b}
    assert {job.id for job in api.jobs_of(name_a)} == ids_a
    # Paging through A's jobs with a cursor never reaches B's.
    first = api.client.get("/v1/jobs", query_string={"limit": 1}, headers=a).json
    second = api.client.get("/v1/jobs", query_string={"limit": 1, "cursor": first["next_cursor"]}, headers=a).json
    assert {first["data"][0]["id"], second["data"][0]["id"]} == ids_a and second["next_cursor"] is None


def test_idempotency_keys_are_scoped_per_tenant(two_tenants):
    api, a, a2, b, _ = two_tenants
    header = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    first = api.client.post("/v1/jobs", json=GENERATE, headers={**a, **header})
    # Another tenant may use the same key, even for another request: its own job, no 409.
    other = api.client.post("/v1/jobs", json={**GENERATE, "prompt": "other"}, headers={**b, **header})
    assert first.status_code == other.status_code == 202
    assert other.json["id"] != first.json["id"]
    # The same tenant (through another of its keys) gets its job back.
    replay = api.client.post("/v1/jobs", json=GENERATE, headers={**a2, **header})
    assert replay.json["id"] == first.json["id"] and replay.headers["Idempotent-Replayed"] == "true"
    conflict = api.client.post("/v1/jobs", json={**GENERATE, "prompt": "x"}, headers={**a, **header})
    assert conflict.status_code == 409
    # B's replay is B's job, never A's.
    assert api.client.post("/v1/jobs", json={**GENERATE, "prompt": "other"},
                           headers={**b, **header}).json["id"] == other.json["id"]


def test_job_ids_and_storage_keys_are_unguessable():
    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids[:50]:
        parsed = uuid.UUID(hex=job_id)
        assert parsed.version == 4 and parsed.hex == job_id  # 122 random bits, from os.urandom


def test_understand_input_is_stored_under_the_random_job_id(two_tenants):
    api, a, _, _, _ = two_tenants
    image = "data:image/png;base64," + base64.b64encode(_png()).decode()
    job = api.client.post("/v1/jobs", json={"type": "understand", "question": "what?", "image": image},
                          headers=a).json
    stored = list((api.data_dir / "storage" / "jobs").iterdir())
    assert [path.name for path in stored] == [job["id"]]
    assert uuid.UUID(hex=job["id"]).version == 4


def test_presigned_image_urls_expire_after_the_url_ttl(make_api, new_key, tenant, s3_server, s3_storage_url):
    for ttl, overrides in ((900, {}), (120, {"url_ttl": 120})):
        api = make_api(storage_url=s3_storage_url, s3_endpoint_url=s3_server.endpoint_url, **overrides)
        assert api.settings.url_ttl == ttl
        key = bearer(new_key(tenant()))
        job_id = api.client.post("/v1/jobs", json=GENERATE, headers=key).json["id"]
        _finish_with_image(api, job_id)
        response = api.client.get(f"/v1/jobs/{job_id}/images/0", headers=key)
        assert response.status_code == 307
        query = parse_qs(urlparse(response.headers["Location"]).query)
        assert query["X-Amz-Expires"] == [str(ttl)] and "X-Amz-Signature" in query
        assert job_id in urlparse(response.headers["Location"]).path


def test_a_download_from_s3_is_an_attachment_through_the_signed_redirect(make_api, new_key, tenant, s3_server,
                                                                          s3_storage_url):
    api = make_api(storage_url=s3_storage_url, s3_endpoint_url=s3_server.endpoint_url)
    key = bearer(new_key(tenant()))
    job_id = api.client.post("/v1/jobs", json=GENERATE, headers=key).json["id"]
    _finish_with_image(api, job_id)
    for download, disposition in (("true", f'attachment; filename="janus-{job_id[:8]}-0.png"'), ("false", None)):
        response = api.client.get(f"/v1/jobs/{job_id}/images/0?download={download}", headers=key)
        assert response.status_code == 307
        stored = requests.get(response.headers["Location"], timeout=10)  # S3 (moto) itself answers
        assert stored.status_code == 200 and stored.content == _png()
        assert stored.headers.get("Content-Disposition") == disposition


def test_local_storage_serves_images_only_through_the_api(tmp_path):
    # No presigned URL exists for local files: the bytes only come through the tenant check.
    assert open_storage(f"file://{tmp_path}").presigned_url("jobs/x/0.png", 900) is None

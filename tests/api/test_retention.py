"""Retention and deletion through the API: expires_at, expired_result, 410 images, DELETE /v1/jobs/<id>."""
from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import update

from jobs import states
from jobs.models import Job, utcnow
from jobs.retention import Retention
from tests.api.conftest import bearer
from tests.s3server import s3_client

GENERATE = {"type": "generate", "prompt": "a fox", "num_images": 2}
WEEK = 7 * 24 * 3600


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def finish(api, job_id: str, status: str = states.SUCCEEDED, days_ago: float = 0.0) -> None:
    """What a worker leaves behind: two PNGs stored, the job finished with their keys."""
    storage = api.app.extensions["janus"].storage
    keys = [f"jobs/{job_id}/{index}.png" for index in range(2)]
    for key in keys:
        storage.put(key, png(), "image/png")
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(
            status=status, progress=1.0, finished_at=utcnow() - timedelta(days=days_ago),
            result={"images": [{"key": key, "width": 8, "height": 8, "content_type": "image/png"} for key in keys]}))


def stored(api, job_id: str) -> bool:
    storage = api.app.extensions["janus"].storage
    return any(storage.exists(f"jobs/{job_id}/{name}") for name in ("input", "0.png", "1.png"))


@pytest.fixture
def api_and_key(make_api, new_key, tenant):
    return make_api(), bearer(new_key(tenant()))


def submit(api, key, body=GENERATE) -> str:
    response = api.client.post("/v1/jobs", json=body, headers=key)
    assert response.status_code == 202, response.json
    return response.json["id"]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_finished_job_shows_when_its_files_expire(make_api, new_key, tenant):
    for ttl, overrides in ((WEEK, {}), (60, {"result_ttl": 60})):
        api, key = make_api(**overrides), bearer(new_key(tenant()))
        job_id = submit(api, key)
        queued = api.client.get(f"/v1/jobs/{job_id}", headers=key).json
        assert queued["expires_at"] is None and queued["expired_result"] is False
        finish(api, job_id)
        job = api.client.get(f"/v1/jobs/{job_id}", headers=key).json
        assert parse(job["expires_at"]) - parse(job["finished_at"]) == timedelta(seconds=ttl)
        assert job["expired_result"] is False


def test_ttl_zero_shows_no_expiry(make_api, new_key, tenant):
    api, key = make_api(result_ttl=0), bearer(new_key(tenant()))
    job_id = submit(api, key)
    finish(api, job_id, days_ago=365)
    assert api.client.get(f"/v1/jobs/{job_id}", headers=key).json["expires_at"] is None


def test_an_expired_result_says_so_and_its_images_answer_410(api_and_key):
    api, key = api_and_key
    job_id = submit(api, key)
    finish(api, job_id, days_ago=8)
    assert job_id in Retention(api.db, api.app.extensions["janus"].storage, WEEK).expire_results()
    assert not stored(api, job_id)
    job = api.client.get(f"/v1/jobs/{job_id}", headers=key).json
    assert job["expired_result"] is True and job["status"] == "succeeded"
    assert parse(job["expires_at"]) > parse(job["finished_at"]) + timedelta(days=7)
    listed = api.client.get("/v1/jobs", headers=key).json["data"]
    assert [item["expired_result"] for item in listed] == [True]
    image = api.client.get(f"/v1/jobs/{job_id}/images/0", headers=key)
    assert image.status_code == 410 and image.json["error"]["code"] == "result_expired"
    assert "JANUS_RESULT_TTL" in image.json["error"]["message"]


@pytest.mark.parametrize("status", [states.SUCCEEDED, states.FAILED, states.CANCELED])
def test_delete_a_finished_job_removes_it_and_its_files(api_and_key, status):
    api, key = api_and_key
    job_id, other = submit(api, key), submit(api, key)
    finish(api, job_id, status)
    finish(api, other)
    response = api.client.delete(f"/v1/jobs/{job_id}", headers=key)
    assert response.status_code == 204 and response.data == b""
    assert api.client.get(f"/v1/jobs/{job_id}", headers=key).status_code == 404
    assert api.client.get(f"/v1/jobs/{job_id}/images/0", headers=key).status_code == 404
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code == 404
    assert not stored(api, job_id)
    assert stored(api, other) and api.client.get(f"/v1/jobs/{other}", headers=key).status_code == 200


def test_delete_a_queued_understand_job_removes_its_input(api_and_key):
    api, key = api_and_key
    image = "data:image/png;base64," + base64.b64encode(png()).decode()
    job_id = submit(api, key, {"type": "understand", "question": "what?", "image": image})
    assert stored(api, job_id)
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code == 204
    assert not stored(api, job_id)
    assert api.client.get(f"/v1/jobs/{job_id}", headers=key).status_code == 404


def test_delete_a_running_job_cancels_and_removes_it(api_and_key):
    api, key = api_and_key
    job_id = submit(api, key)
    with api.db.session() as session:
        assert states.claim(session, job_id, "w1")
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code == 204
    with api.db.session() as session:
        assert session.get(Job, job_id) is None
        # The worker's next checkpoint finds no row: it stops (worker/progress.py).
        assert states.record_progress(session, job_id, 0.5) is True


def test_another_tenants_job_cannot_be_deleted(make_api, new_key, tenant):
    api = make_api()
    owner, stranger = bearer(new_key(tenant("a"))), bearer(new_key(tenant("b")))
    job_id = submit(api, owner)
    finish(api, job_id)
    response = api.client.delete(f"/v1/jobs/{job_id}", headers=stranger)
    assert response.status_code == 404 and response.json["error"] == {
        "code": "not_found", "message": f"no job {job_id}", "field": None}
    assert stored(api, job_id) and api.client.get(f"/v1/jobs/{job_id}", headers=owner).status_code == 200
    assert api.client.delete(f"/v1/jobs/{job_id}").status_code == 401


def test_delete_removes_the_objects_from_s3(make_api, new_key, tenant, s3_server, s3_storage_url):
    api = make_api(storage_url=s3_storage_url, s3_endpoint_url=s3_server.endpoint_url)
    key = bearer(new_key(tenant()))
    job_id = submit(api, key)
    finish(api, job_id)
    bucket = s3_storage_url.removeprefix("s3://").split("/")[0]

    def objects() -> list[str]:
        listing = s3_client(s3_server.endpoint_url).list_objects_v2(Bucket=bucket, Prefix=f"results/jobs/{job_id}/")
        return [item["Key"] for item in listing.get("Contents", [])]

    assert len(objects()) == 2
    assert api.client.delete(f"/v1/jobs/{job_id}", headers=key).status_code == 204
    assert objects() == []

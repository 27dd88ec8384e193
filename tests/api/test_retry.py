"""POST /v1/jobs/<id>/retry: a failed or canceled job runs again as a new job pointing back at it."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from sqlalchemy import update

from jobs.models import Job
from tests.api.conftest import bearer


def _png() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture
def api_and_key(make_api, new_key, tenant):
    return make_api(), bearer(new_key(tenant("retry")))


def _end(api, job_id: str, status: str) -> None:
    with api.db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status, error_code="model_error"))


def _retry(api, key, job_id):
    return api.client.post(f"/v1/jobs/{job_id}/retry", headers=key)


def test_a_failed_job_is_retried_with_its_parameters_and_a_new_random_seed(api_and_key):
    api, key = api_and_key
    original = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox", "num_images": 2},
                               headers=key).json
    _end(api, original["id"], "failed")
    messages = api.broker_messages()
    response = _retry(api, key, original["id"])
    assert response.status_code == 202 and response.headers["Location"] == f"/v1/jobs/{response.json['id']}"
    retry = response.json
    assert retry["id"] != original["id"] and retry["status"] == "queued" and retry["retry_of"] == original["id"]
    assert {k: v for k, v in retry["params"].items() if k != "seed"} == \
           {k: v for k, v in original["params"].items() if k != "seed"}
    assert retry["params"]["seed"] != original["params"]["seed"]  # the service chose it: a new draw
    assert api.broker_messages() == messages + 1
    assert original["urls"]["retry"].endswith(f"/v1/jobs/{original['id']}/retry")


def test_a_seed_the_client_gave_is_kept(api_and_key):
    api, key = api_and_key
    original = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox", "seed": 1234},
                               headers=key).json
    _end(api, original["id"], "canceled")
    assert _retry(api, key, original["id"]).json["params"]["seed"] == 1234


def test_an_understand_retry_gets_its_own_copy_of_the_input(api_and_key):
    api, key = api_and_key
    original = api.client.post("/v1/jobs", json={"type": "understand", "question": "what?", "image": _png()},
                               headers=key).json
    _end(api, original["id"], "failed")
    retry = _retry(api, key, original["id"]).json
    storage = api.app.extensions["janus"].storage
    assert storage.get(f"jobs/{retry['id']}/input") == storage.get(f"jobs/{original['id']}/input")
    storage.delete_prefix(f"jobs/{original['id']}/")
    _end(api, retry["id"], "failed")
    assert storage.exists(f"jobs/{retry['id']}/input")
    gone = _retry(api, key, original["id"])  # the original's input was deleted: nothing to run
    assert gone.status_code == 409 and gone.json["error"]["field"] == "input"


@pytest.mark.parametrize("status", ["queued", "running", "succeeded"])
def test_only_failed_or_canceled_jobs_are_retried_and_a_refusal_creates_nothing(api_and_key, status):
    api, key = api_and_key
    job_id = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox"}, headers=key).json["id"]
    _end(api, job_id, status)
    count, messages = api.job_count(), api.broker_messages()
    response = _retry(api, key, job_id)
    assert response.status_code == 409 and response.json["error"]["code"] == "conflict"
    assert (api.job_count(), api.broker_messages()) == (count, messages)


def test_another_tenants_job_cannot_be_retried(make_api, new_key, tenant):
    api = make_api()
    mine, theirs = bearer(new_key(tenant("a"))), bearer(new_key(tenant("b")))
    job_id = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a fox"}, headers=mine).json["id"]
    _end(api, job_id, "failed")
    response = _retry(api, theirs, job_id)
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_a_retry_counts_against_the_unfinished_cap(make_api, new_key, tenant):
    api = make_api(max_unfinished_jobs=1)
    key = bearer(new_key(tenant("cap")))
    failed = api.client.post("/v1/jobs", json={"type": "generate", "prompt": "a"}, headers=key).json["id"]
    _end(api, failed, "failed")
    api.client.post("/v1/jobs", json={"type": "generate", "prompt": "b"}, headers=key)  # now at the cap
    count = api.job_count()
    response = _retry(api, key, failed)
    assert response.status_code == 429 and response.json["error"]["code"] == "too_many_unfinished_jobs"
    assert api.job_count() == count

"""The `make run` configuration end to end: real API and worker processes, nothing mocked."""
from __future__ import annotations

import requests

from tests.e2e.helpers import data_url, fetch_image, png_bytes


def test_generate_job_succeeds_with_a_384_png(embedded_stack):
    response = embedded_stack.submit(type="generate", prompt="a red fox in snow", num_images=1)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and isinstance(job["params"]["seed"], int)

    done = embedded_stack.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == 1.0
    assert done["metrics"]["queue_seconds"] >= 0 and done["metrics"]["run_seconds"] > 0
    [image_ref] = done["result"]["images"]
    assert (image_ref["width"], image_ref["height"]) == (384, 384)
    image = fetch_image(image_ref["url"])
    assert image.size == (384, 384) and image.format == "PNG"


def test_understand_job_with_multipart_upload_returns_text(embedded_stack):
    response = requests.post(
        embedded_stack.base_url + "/v1/jobs",
        data={"type": "understand", "question": "What is in the picture?", "max_new_tokens": "8",
              "temperature": "0"},
        files={"image": ("red.png", png_bytes(), "image/png")}, timeout=30)
    assert response.status_code == 202, response.text
    done = embedded_stack.wait(response.json()["id"])
    assert done["status"] == "succeeded", done
    assert isinstance(done["result"]["text"], str)
    assert done["params"]["max_new_tokens"] == 8 and done["params"]["image"]["width"] == 64
    # What the checkpoint chose beyond the params: its prompt format and image normalization.
    served = done["result"]["model"]
    assert served["prompt_format"].endswith("<|User|>: <image_placeholder>\n{question}\n\n<|Assistant|>:")
    assert served["image_mean"] == served["image_std"] == [0.5, 0.5, 0.5]


def test_understand_job_with_data_url(embedded_stack):
    response = embedded_stack.submit(type="understand", question="Describe it.",
                                     image=data_url(png_bytes((32, 32))), max_new_tokens=4, seed=7)
    assert response.status_code == 202, response.text
    done = embedded_stack.wait(response.json()["id"])
    assert done["status"] == "succeeded", done
    assert done["params"]["seed"] == 7


def test_listing_is_newest_first_with_a_cursor(embedded_stack):
    ids = [embedded_stack.submit(type="generate", prompt=f"p{i}", num_images=1).json()["id"] for i in range(3)]
    first = requests.get(embedded_stack.base_url + "/v1/jobs", params={"limit": 2}, timeout=10).json()
    assert [job["id"] for job in first["data"]] == ids[::-1][:2]
    second = requests.get(embedded_stack.base_url + "/v1/jobs",
                          params={"limit": 2, "cursor": first["next_cursor"]}, timeout=10).json()
    assert second["data"][0]["id"] == ids[0]
    for job_id in ids:
        embedded_stack.wait(job_id)
    succeeded = requests.get(embedded_stack.base_url + "/v1/jobs",
                             params={"status": "succeeded", "type": "generate", "limit": 100}, timeout=10).json()
    assert set(ids) <= {job["id"] for job in succeeded["data"]}
    assert all(job["status"] == "succeeded" for job in succeeded["data"])


def test_health_readiness_metrics_and_openapi(embedded_stack):
    base = embedded_stack.base_url
    assert requests.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(base + "/readyz", timeout=10).json()
    assert ready["checks"] == {"database": "ok", "broker": "ok", "storage": "ok", "model": "ok"}
    metrics = requests.get(base + "/metrics", timeout=10).text
    assert 'janus_jobs_submitted_total{type="generate"}' in metrics
    assert "janus_queue_depth" in metrics and "janus_job_run_seconds_bucket" in metrics
    spec = requests.get(base + "/openapi.json", timeout=5).json()
    assert spec["openapi"].startswith("3.") and "/v1/jobs" in spec["paths"]


def test_idempotency_key_returns_the_same_job_on_retry(embedded_stack):
    url, body = embedded_stack.base_url + "/v1/jobs", {"type": "generate", "prompt": "once", "num_images": 1}
    before = embedded_stack.job_count()
    first = requests.post(url, json=body, headers={"Idempotency-Key": "retry-1"}, timeout=10)
    retry = requests.post(url, json=body, headers={"Idempotency-Key": "retry-1"}, timeout=10)
    assert first.status_code == retry.status_code == 202
    assert retry.json()["id"] == first.json()["id"] and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["params"]["seed"] == first.json()["params"]["seed"]
    other = requests.post(url, json={**body, "prompt": "twice"}, headers={"Idempotency-Key": "retry-1"}, timeout=10)
    assert other.status_code == 409 and other.json()["error"]["field"] == "Idempotency-Key"
    assert embedded_stack.job_count() == before + 1
    assert embedded_stack.wait(first.json()["id"])["status"] == "succeeded"


def test_prefer_wait_returns_the_finished_job(embedded_stack):
    response = requests.post(embedded_stack.base_url + "/v1/jobs", headers={"Prefer": "wait=60"},
                             json={"type": "generate", "prompt": "quick", "num_images": 1}, timeout=90)
    assert response.status_code == 200, response.text
    assert response.headers["Preference-Applied"] == "wait=60"
    assert response.json()["status"] == "succeeded" and len(response.json()["result"]["images"]) == 1

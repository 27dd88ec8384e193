"""PostgreSQL + Redis + S3 (moto's server over HTTP) with two real worker processes."""
from __future__ import annotations

import requests

from tests.e2e.helpers import data_url, fetch_image, png_bytes

# 16 images, the distributed stack's batch cap: each keeps a worker busy on its own.
LONG_JOB = {"type": "generate", "prompt": "a long job to cancel", "num_images": 16}


def test_generate_job_stores_png_in_s3_behind_a_redirect(distributed_stack):
    job = distributed_stack.submit(type="generate", prompt="a lighthouse", num_images=2, seed=3).json()
    done = distributed_stack.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert len(done["result"]["images"]) == 2
    redirect = requests.get(done["result"]["images"][1]["url"], allow_redirects=False, timeout=10)
    assert redirect.status_code == 307
    assert redirect.headers["Location"].startswith(distributed_stack.env["JANUS_S3_ENDPOINT_URL"])
    assert fetch_image(done["result"]["images"][1]["url"]).size == (384, 384)


def test_understand_job_answers_text(distributed_stack):
    job = distributed_stack.submit(type="understand", question="What color?", image=data_url(png_bytes()),
                                   max_new_tokens=6, temperature=0).json()
    done = distributed_stack.wait(job["id"])
    assert done["status"] == "succeeded", done
    assert isinstance(done["result"]["text"], str)


def test_two_workers_share_the_queue(distributed_stack):
    ids = [distributed_stack.submit(type="generate", prompt=f"shared {i}", num_images=2).json()["id"]
           for i in range(6)]
    for job_id in ids:
        assert distributed_stack.wait(job_id)["status"] == "succeeded"
    assert len(distributed_stack.workers_of_jobs(ids)) == 2


def test_cancel_running_job_stops_it(distributed_stack):
    job_id = distributed_stack.submit(**LONG_JOB).json()["id"]
    distributed_stack.wait(job_id, until=lambda job: job["status"] == "running" and job["progress"] > 0)
    response = requests.post(f"{distributed_stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)
    assert response.status_code in (200, 202), response.text
    done = distributed_stack.wait(job_id, timeout=30)
    assert done["status"] == "canceled" and done["result"] is None
    assert done["progress"] < 1.0 and done["finished_at"] is not None
    again = requests.post(f"{distributed_stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_cancel_queued_job_never_runs(distributed_stack):
    busy = [distributed_stack.submit(**LONG_JOB).json()["id"] for _ in range(2)]
    for job_id in busy:
        distributed_stack.wait(job_id, until=lambda job: job["status"] == "running")
    queued_id = distributed_stack.submit(type="generate", prompt="never", num_images=1).json()["id"]
    response = requests.post(f"{distributed_stack.base_url}/v1/jobs/{queued_id}/cancel", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "canceled"
    for job_id in busy:
        requests.post(f"{distributed_stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)
    # Once a job queued after it has run, the canceled job's message has been delivered too.
    after = distributed_stack.submit(type="generate", prompt="after", num_images=1).json()["id"]
    assert distributed_stack.wait(after)["status"] == "succeeded"
    canceled = distributed_stack.job(queued_id)
    assert canceled["status"] == "canceled" and canceled["started_at"] is None

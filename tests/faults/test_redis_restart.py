"""Fault 2: Redis restarts (losing every queued message) during a burst of 200 jobs."""
from __future__ import annotations

import io
import time

import requests
from PIL import Image

from tests.faults.conftest import figure, wait_rows


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def submit_understand(stack, image: bytes, index: int) -> str:
    response = requests.post(stack.base_url + "/v1/jobs", timeout=30,
                             data={"type": "understand", "question": f"what is {index}?", "max_new_tokens": "4",
                                   "temperature": "0"},
                             files={"image": ("x.png", image, "image/png")})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_all_jobs_of_a_burst_finish_across_a_redis_restart(make_stack, database_url, redis_server):
    stack = make_stack(workers=2)
    workers = list(stack.workers)
    image = small_png()
    started = time.monotonic()
    job_ids = [submit_understand(stack, image, index) for index in range(100)]
    redis_server.restart(pause=1.0)  # every message still in Redis is gone
    restarted = time.monotonic()
    job_ids += [submit_understand(stack, image, index) for index in range(100, 200)]

    done = wait_rows(database_url, job_ids, lambda r: r.status in ("succeeded", "failed", "canceled"),
                     timeout=240, stack=stack)
    finished = time.monotonic()
    statuses = {row.status for row in done.values()}
    figure(f"Redis restarted during a burst of 200 jobs: all 200 final {finished - restarted:.1f} s after the "
           f"restart ({finished - started:.1f} s in all), statuses {sorted(statuses)}")
    assert len(done) == 200 and statuses == {"succeeded"}, stack.logs()
    # The same worker processes kept consuming: none was restarted to recover.
    assert all(worker.poll() is None for worker in workers)

"""Deadlines and priorities with the real API and a real worker process (PostgreSQL, Redis), on the
simulated model: a queued job past its deadline expires unrun, a running one is stopped at its
deadline, and higher priority is claimed first."""
from __future__ import annotations

import time
from datetime import datetime

import pytest
import requests

from tests.e2e.stack import Stack

# One image per batch, about 4 s each (the 1.3B H200 curve, stretched 4x): a job that keeps the
# one worker busy while the others wait queued.
ONE_IMAGE = {"type": "generate", "prompt": "a lighthouse", "num_images": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, postgres_url, redis_url):
    env = {"JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")), "JANUS_DATABASE_URL": postgres_url,
           "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": "simulated:h200-janus-1.3b?scale=4",
           "JANUS_MAX_BATCH_IMAGES": "1", "JANUS_SWEEP_INTERVAL": "0.5", "JANUS_PROGRESS_INTERVAL": "0.2"}
    with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
        yield stack


def submit(stack: Stack, headers: dict | None = None, **extra) -> dict:
    response = requests.post(stack.base_url + "/v1/jobs", json={**ONE_IMAGE, **extra}, headers=headers or {},
                             timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def cancel(stack: Stack, job_id: str) -> None:
    requests.post(f"{stack.base_url}/v1/jobs/{job_id}/cancel", timeout=10)


def running(stack: Stack, job_id: str) -> dict:
    return stack.wait(job_id, until=lambda job: job["status"] == "running", timeout=60)


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_running_job_past_its_deadline_is_stopped_and_ends_canceled_with_reason_deadline(stack):
    job = submit(stack, headers={"Cancel-After": "1"})
    done = stack.wait(job["id"], timeout=60)
    assert done["status"] == "canceled", done
    assert done["error"]["code"] == "deadline" and "while it ran" in done["error"]["message"]
    assert done["started_at"] and done["result"] is None and done["progress"] < 1
    # Stopped at a checkpoint soon after the deadline, not after the ~4 s the job needs.
    assert (stamp(done["finished_at"]) - stamp(done["deadline_at"])).total_seconds() < 2.0, done


def test_a_queued_job_past_its_deadline_expires_and_never_runs(stack):
    blocker = submit(stack)
    running(stack, blocker["id"])
    late = submit(stack, deadline_seconds=1)
    done = stack.wait(late["id"], timeout=30)
    assert done["status"] == "expired", done
    assert done["error"]["code"] == "deadline" and done["started_at"] is None and done["attempts"] == 0
    assert stack.wait(blocker["id"])["status"] == "succeeded"  # the worker is free again...
    time.sleep(1)
    after = stack.job(late["id"])  # ...and never took the expired job
    assert (after["status"], after["attempts"], after["started_at"]) == ("expired", 0, None)
    assert stack.workers_of_jobs([late["id"]]) == {None}


def test_higher_priority_is_claimed_first(stack):
    blocker = submit(stack)
    running(stack, blocker["id"])
    low, normal, high = (submit(stack, priority=name, seed=n) for n, name in enumerate(("low", "normal", "high")))
    assert (low["priority"], normal["priority"], high["priority"]) == ("low", "normal", "high")
    cancel(stack, blocker["id"])
    done = {name: stack.wait(job["id"]) for name, job in (("low", low), ("normal", normal), ("high", high))}
    assert all(job["status"] == "succeeded" for job in done.values()), done
    order = sorted(done, key=lambda name: done[name]["started_at"])
    assert order == ["high", "normal", "low"], {name: job["started_at"] for name, job in done.items()}

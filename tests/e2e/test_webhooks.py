"""Webhooks through the real service: `janusq serve` and a `janusq worker` (the simulated model)
on PostgreSQL and Redis, delivering to a local receiver that verifies each signature with the
lines README.md shows."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.stack import Stack
from tests.pgdb import fresh_database
from tests.webhook_receiver import Receiver, readme_verifier


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    with fresh_database("janusq_hooks") as database_url:
        env = {"JANUS_DATA_DIR": str(tmp_path_factory.mktemp("var")), "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": "simulated:h200-janus-1.3b?scale=3",
               "JANUS_WEBHOOK_ALLOW_PRIVATE": "true", "JANUS_WEBHOOK_RETRY_BACKOFF": "0.3",
               "JANUS_PROGRESS_INTERVAL": "0.2", "JANUS_API_WORKERS": "1"}
        with Stack(env, tmp_path_factory.mktemp("logs")).start(workers=1) as stack:
            yield stack


def _secret(stack: Stack) -> str:
    done = subprocess.run([sys.executable, "-m", "janusq", "webhooks", "secret", "--tenant", "local"],
                          env=stack.env, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def _finished(received) -> bool:
    return any(item.json["status"] == "succeeded" for item in received)


def test_start_progress_and_completed_signed_and_in_order(stack):
    with Receiver() as receiver:
        job_id = stack.submit(type="generate", prompt="a lighthouse", num_images=1, webhook=receiver.url,
                              webhook_events=["start", "progress", "completed"]).json()["id"]
        received = receiver.wait_for(_finished, timeout=90)
    job = stack.wait(job_id)
    secret = _secret(stack)
    verify = readme_verifier()
    assert all(verify(secret, item.headers, item.body) for item in received), stack.logs()
    events = {row["id"]: row["event"] for row in job["webhook_deliveries"]}
    assert [events[item.id] for item in received][0] == "start"
    assert [events[item.id] for item in received][-1] == "completed"
    progress = [item.json["progress"] for item in received if events[item.id] == "progress"]
    assert progress and progress == sorted(progress) and 0 < progress[0] < 1
    assert received[0].json["status"] == "running" and received[-1].json["status"] == "succeeded"
    assert received[-1].json == {**job, "webhook_deliveries": None}  # the job as GET shows it
    assert all((row["status"], row["attempts"], row["status_code"]) == ("delivered", 1, 200)
               for row in job["webhook_deliveries"])
    assert len(received) == len(job["webhook_deliveries"])


def test_a_receiver_error_is_retried_with_the_same_webhook_id(stack):
    with Receiver(statuses=[500]) as receiver:
        job_id = stack.submit(type="generate", prompt="a fox", num_images=1, webhook=receiver.url).json()["id"]
        first, second = receiver.wait_for(lambda received: len(received) >= 2, timeout=90)
    assert first.id == second.id and first.body == second.body
    assert first.json["status"] == "succeeded"
    job = stack.wait(job_id)
    [delivery] = job["webhook_deliveries"]
    assert (delivery["id"], delivery["event"], delivery["status"]) == (first.id, "completed", "delivered")
    assert (delivery["attempts"], delivery["status_code"], delivery["last_error"]) == (2, 200, None)


def test_private_webhooks_are_refused_by_default(tmp_path, redis_url):
    with fresh_database("janusq_hooks_private") as database_url:
        env = {"JANUS_DATA_DIR": str(tmp_path / "var"), "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_url, "JANUS_MODEL": "simulated:h200-janus-1.3b", "JANUS_API_WORKERS": "1"}
        (tmp_path / "logs").mkdir()
        stack = Stack(env, tmp_path / "logs").start(workers=0)
        try:
            response = stack.submit(type="generate", prompt="a fox", webhook="http://127.0.0.1:9/hook")
            assert response.status_code == 422 and response.json()["error"]["field"] == "webhook"
            assert stack.job_count() == 0
        finally:
            stack.stop()

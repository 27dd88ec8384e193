"""Workers are visible: real worker processes on PostgreSQL + Redis keep heartbeat rows that
GET /v1/workers (admin keys only), `janusq workers` and /metrics show, and a killed worker
shows as gone. Heartbeats every 0.5 s here, so gone means silent for 1.5 s.
"""
from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from jobs import keys
from jobs.db import Database
from tests.e2e.stack import Stack
from tests.pgdb import fresh_database

HEARTBEAT = 0.5
GONE_AFTER = 3 * HEARTBEAT
# 16 images in one batch: long enough on the tiny model to be seen running; canceled after.
LONG_JOB = {"type": "generate", "prompt": "a long job to watch", "num_images": 16}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, tiny_checkpoint, redis_url):
    with fresh_database("janusq_workers") as database_url:
        data_dir = tmp_path_factory.mktemp("var")
        shutil.copytree(tiny_checkpoint, data_dir / "models" / "janus-tiny")
        env = {"JANUS_DATA_DIR": str(data_dir), "JANUS_MODEL": "tiny", "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": redis_url, "JANUS_AUTH": "on", "JANUS_RATE_LIMIT_PER_MINUTE": "0",
               "JANUS_API_WORKERS": "1", "JANUS_HEARTBEAT_SECONDS": str(HEARTBEAT),
               "JANUS_PROGRESS_INTERVAL": "0.2"}
        stack = Stack(env, tmp_path_factory.mktemp("logs"))
        try:
            # Started together (they load side by side): one stays, one is killed, one is stopped.
            yield stack.start(workers=3)
        finally:
            stack.stop()


@pytest.fixture(scope="module")
def admin(stack) -> dict[str, str]:
    """An admin key, made the way an operator does: `janusq keys create --admin`."""
    made = subprocess.run([sys.executable, "-m", "janusq", "keys", "create", "--name", "ops", "--admin"],
                          env=stack.env, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and "admin API key" in made.stderr, made.stderr
    return {"Authorization": f"Bearer {made.stdout.strip()}"}


@pytest.fixture(scope="module")
def tenant(stack) -> dict[str, str]:
    db = Database(stack.settings.database)
    with db.session() as session:
        secret = keys.create_key(session, "someone").secret
    db.dispose()
    return {"Authorization": f"Bearer {secret}"}


def node_name(process: subprocess.Popen) -> str:
    return f"janus-{process.pid}@{socket.gethostname()}"


def workers(stack: Stack, headers: dict) -> dict[str, dict]:
    response = requests.get(f"{stack.base_url}/v1/workers", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return {worker["name"]: worker for worker in response.json()["data"]}


def wait_for(stack: Stack, headers: dict, name: str, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = workers(stack, headers).get(name)
        if last is not None and until(last):
            return last
        time.sleep(0.05)
    raise TimeoutError(f"worker {name} stuck at {last}\n{stack.logs()}")


def metrics(stack: Stack) -> dict[tuple, float]:
    text = requests.get(f"{stack.base_url}/metrics", timeout=10).text
    return {(sample.name, *sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_workers_row_appears_with_its_fields_and_beats(stack, admin):
    worker = stack.workers[0]
    first = wait_for(stack, admin, node_name(worker), lambda row: True)
    assert first["status"] in ("starting", "idle")  # starting while its model loads
    row = wait_for(stack, admin, node_name(worker), lambda row: row["device"] == "cpu")
    assert row["status"] == "idle" and row["batch"] is None and row["stopped_at"] is None
    assert (row["host"], row["pid"], row["model"]) == (socket.gethostname(), worker.pid, "tiny")
    assert row["queues"] == ["generate", "understand"] and row["heartbeat_seconds"] == HEARTBEAT
    assert row["started_at"] <= row["last_seen_at"] and row["seconds_since_seen"] < GONE_AFTER
    later = wait_for(stack, admin, node_name(worker), lambda again: again["last_seen_at"] > row["last_seen_at"],
                     timeout=10)
    assert later["status"] == "idle"


def running(stack: Stack, headers: dict, job_id: str, timeout: float = 60) -> dict:
    """The worker whose row shows `job_id` in its batch (any worker may take the job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in workers(stack, headers).values():
            if row["batch"] and job_id in row["batch"]["jobs"]:
                return row
        time.sleep(0.05)
    raise TimeoutError(f"no worker shows job {job_id}\n{stack.logs()}")


def test_the_running_batch_shows_and_the_metrics_move(stack, admin):
    wait_for(stack, admin, node_name(stack.workers[0]), lambda row: row["status"] == "idle")
    before = metrics(stack)
    job = requests.post(f"{stack.base_url}/v1/jobs", json=LONG_JOB, headers=admin, timeout=30).json()
    busy = running(stack, admin, job["id"])
    name = busy["name"]
    assert busy["status"] == "busy"
    assert busy["batch"]["jobs"] == [job["id"]] and busy["batch"]["type"] == "generate"
    assert busy["batch"]["size"] == 16
    during = metrics(stack)
    listed = subprocess.run([sys.executable, "-m", "janusq", "workers"], env=stack.env, capture_output=True,
                            text=True, timeout=60)
    requests.post(f"{stack.base_url}/v1/jobs/{job['id']}/cancel", headers=admin, timeout=10)
    idle = wait_for(stack, admin, name, lambda row: row["batch"] is None)
    after = metrics(stack)

    assert during[("janus_workers", ("status", "busy"))] >= 1
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(name))
    # The job may have ended between the two reads; if not, the listing names it too.
    assert " busy " in line and job["id"] in line or " idle " in line
    assert idle["status"] == "idle"
    batches = ("janus_batch_size_count", ("type", "generate"))
    waits = ("janus_queue_wait_seconds_count", ("type", "generate"))
    assert after[batches] == before.get(batches, 0) + 1
    assert after[("janus_batch_size_sum", ("type", "generate"))] >= 16
    assert after[waits] == before.get(waits, 0) + 1  # canceled after it started: it waited, then ran
    assert after[("janus_queue_depth", ("type", "generate"))] == 0
    assert after[("janus_queue_oldest_age_seconds", ("type", "generate"))] == 0


def test_only_admin_keys_list_workers(stack, admin, tenant):
    forbidden = requests.get(f"{stack.base_url}/v1/workers", headers=tenant, timeout=10)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden"
    assert requests.get(f"{stack.base_url}/v1/workers", timeout=10).status_code == 401
    assert node_name(stack.workers[0]) in workers(stack, admin)


def test_a_sigkilled_worker_shows_gone(stack, admin):
    victim = stack.workers[1]
    name = node_name(victim)
    wait_for(stack, admin, name, lambda row: row["status"] == "idle")
    stack.stop_worker(victim, signal.SIGKILL)  # the whole group: main process and pool child
    killed = time.monotonic()
    gone = wait_for(stack, admin, name, lambda row: row["status"] == "gone", timeout=GONE_AFTER + 10)
    took = time.monotonic() - killed
    print(f"\n[figure] SIGKILLed worker shown gone after {took:.2f} s (heartbeat {HEARTBEAT} s, gone after "
          f"{GONE_AFTER} s of silence)")
    assert took >= GONE_AFTER - HEARTBEAT - 0.1  # its last beat may have been up to one interval before
    assert gone["stopped_at"] is None and gone["seconds_since_seen"] > GONE_AFTER


def test_a_cleanly_stopped_worker_shows_stopped_and_janusq_workers_lists_it(stack, admin):
    leaving = stack.workers[-1]
    name = node_name(leaving)
    wait_for(stack, admin, name, lambda row: row["status"] == "idle")
    stack.stop_worker(leaving)  # SIGTERM: a warm shutdown
    stopped = wait_for(stack, admin, name, lambda row: row["status"] != "idle", timeout=5)
    assert stopped["status"] == "stopped" and stopped["stopped_at"] is not None and stopped["batch"] is None
    listed = subprocess.run([sys.executable, "-m", "janusq", "workers", "--json"], env=stack.env,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    by_name = {row["name"]: row for row in json.loads(listed.stdout)}
    assert by_name[name]["status"] == "stopped" and by_name[name]["pid"] == leaving.pid
    assert by_name[node_name(stack.workers[0])]["status"] == "idle"

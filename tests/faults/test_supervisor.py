"""`janusq worker --replicas N` (and `--gpus`): one supervised worker process each.

Real processes on PostgreSQL and a private Redis: both replicas take jobs; a replica killed with
SIGKILL is restarted (and its job completes elsewhere); SIGTERM lets every replica finish the
batch in hand; a second signal stops everything at once.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.conftest import rows, wait_rows


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(part) for part in path.read_text().split()] if path.exists() else []


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(condition, timeout: float, what: str, stack=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what}\n{stack.logs() if stack else ''}")


def supervised(stack, replicas: int) -> subprocess.Popen:
    supervisor = stack._spawn("supervisor", "worker", f"--replicas={replicas}")
    stack.workers.append(supervisor)  # stopped with the stack if a test fails
    return supervisor


def running(job) -> bool:
    return job["status"] == "running" and job["progress"] > 0.02


def test_replicas_share_the_queue_a_killed_one_is_restarted_and_sigterm_drains(make_stack, database_url):
    stack = make_stack(workers=0, max_batch_images=2)  # one 2-image job a batch: both replicas busy
    supervisor = supervised(stack, 2)
    jobs = [stack.submit(type="generate", prompt=f"p{index}", num_images=2, seed=index).json()["id"]
            for index in range(2)]
    for job_id in jobs:
        stack.wait(job_id, until=running, timeout=240)
    assert len({row.worker for row in rows(database_url, jobs).values()}) == 2, stack.logs()
    log = (stack.log_dir / "supervisor.log").read_text(errors="replace")
    assert "w0@" in log and "w1@" in log  # each replica is its own named Celery worker
    assert "JANUS_DEVICE=auto found no CUDA device" in log

    first = children_of(supervisor.pid)
    assert len(first) == 2
    victim = first[0]
    os.killpg(victim, signal.SIGKILL)
    replaced = wait_for(lambda: len(now := children_of(supervisor.pid)) == 2 and victim not in now and now,
                        60, "the killed replica was not restarted", stack)
    assert "exited with code -9; restarting in 1 s" in (stack.log_dir / "supervisor.log").read_text()
    wait_rows(database_url, jobs, lambda row: row.status == "succeeded", 300, stack)

    last = stack.submit(type="generate", prompt="drain me", num_images=2, seed=9).json()["id"]
    stack.wait(last, until=running, timeout=240)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=300) == 0
    assert rows(database_url, [last])[last].status == "succeeded"  # finished before its worker left
    assert not any(alive(pid) for pid in replaced)


def test_a_second_signal_stops_every_replica_at_once(make_stack):
    stack = make_stack(workers=0)
    supervisor = supervised(stack, 1)
    job_id = stack.submit(type="generate", prompt="long", num_images=8, seed=1).json()["id"]
    stack.wait(job_id, until=running, timeout=240)
    replicas = children_of(supervisor.pid)
    supervisor.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    supervisor.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert supervisor.wait(timeout=30) == 0
    assert time.monotonic() - started < 10
    assert replicas and not any(alive(pid) for pid in replicas)


def test_gpus_without_cuda_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "janusq", "worker", "--gpus", "all"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "JANUS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "janusq: --gpus needs CUDA, and no CUDA device is visible here (use --replicas N to run workers on the CPU)"]

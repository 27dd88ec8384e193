"""Fault: the worker's pool process dies mid-generation (OOM killer, segfault) while Celery's main
process lives on. Its job is taken back at once, not after its lease, and completes once."""
from __future__ import annotations

import os
import signal
import time

from tests.faults.conftest import figure, rows, stored_files, wait_rows

LEASE = 120  # far longer than the test may wait: only the pool watch can bring the job back in time


def test_a_dead_pool_process_gives_its_job_back_at_once(make_stack, database_url):
    stack = make_stack(workers=1, lease_seconds=LEASE)
    job_id = stack.submit(type="generate", prompt="a lighthouse", num_images=4, seed=5).json()["id"]
    stack.wait(job_id, until=lambda job: job["status"] == "running" and job["progress"] > 0.05)
    victim = rows(database_url, [job_id])[job_id].worker
    killed_at = time.monotonic()
    os.kill(int(victim.split(":")[1]), signal.SIGKILL)  # the pool process only

    wait_rows(database_url, [job_id], lambda row: row.attempts == 2 or row.status == "queued", timeout=LEASE / 4,
              stack=stack)
    taken_back = time.monotonic() - killed_at
    final = stack.wait(job_id, timeout=300)  # generous: a loaded machine, not the feature, sets it
    figure(f"pool process SIGKILLed mid-generation (main process alive, lease {LEASE} s): job queued again "
           f"{taken_back:.1f} s after the kill, done {time.monotonic() - killed_at:.1f} s after it")
    assert final["status"] == "succeeded", stack.logs()
    assert final["attempts"] == 2 and rows(database_url, [job_id])[job_id].worker != victim
    assert stored_files(stack.settings.data_path, job_id) == ["0.png", "1.png", "2.png", "3.png"]
    worker_logs = "".join(path.read_text(errors="replace") for path in stack.log_dir.glob("worker*.log"))
    assert "died mid-batch: 1 job(s) queued again at once" in worker_logs

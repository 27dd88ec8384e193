"""Fault 1: SIGKILL the worker running a generation; the job completes once, on the other worker,
and its webhook gets one `completed` delivery, and a client reading the job's event stream throughout
sees it taken back and one `completed`."""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from tests.e2e.sse import read_events
from tests.faults.conftest import figure, rows, stored_files
from tests.webhook_receiver import Receiver


def test_a_killed_workers_job_completes_exactly_once_elsewhere(make_stack, database_url):
    with Receiver() as receiver:
        stack = make_stack(workers=2, webhook_allow_private="true")
        _kill_mid_job(stack, database_url, receiver)


def _kill_mid_job(stack, database_url, receiver):
    job_id = stack.submit(type="generate", prompt="a lighthouse", num_images=4, seed=5,
                          webhook=receiver.url, webhook_events=["start", "completed"]).json()["id"]
    reader = ThreadPoolExecutor(1)
    streamed = reader.submit(read_events, f"{stack.base_url}/v1/jobs/{job_id}/events", timeout=120)
    running = stack.wait(job_id, until=lambda job: job["status"] == "running" and job["progress"] > 0.05)
    assert running["attempts"] == 1
    victim = rows(database_url, [job_id])[job_id].worker
    child_pid = int(victim.split(":")[1])
    killed_at, killed_wall = time.monotonic(), datetime.now(timezone.utc)
    os.killpg(os.getpgid(child_pid), signal.SIGKILL)  # the whole worker: main process and child

    final = stack.wait(job_id, timeout=90)
    recovery = time.monotonic() - killed_at
    row = rows(database_url, [job_id])[job_id]
    reclaimed = (row.started_at - killed_wall).total_seconds()
    figure(f"worker SIGKILLed mid-generation: job running again on the other worker {reclaimed:.1f} s after "
           f"the kill (lease 3 s, sweep 0.5 s), done {recovery:.1f} s after it")
    assert final["status"] == "succeeded", stack.logs()
    assert final["attempts"] == 2 and row.worker != victim
    assert len(final["result"]["images"]) == 4
    assert stored_files(stack.settings.data_path, job_id) == ["0.png", "1.png", "2.png", "3.png"]

    events = streamed.result(timeout=30)
    reader.shutdown()
    assert [event["data"]["status"] for event in events if event["event"] == "status"] == \
        ["running", "queued", "running", "succeeded"]
    assert [event["event"] for event in events].count("completed") == 1
    assert events[-1]["data"] == stack.job(job_id)
    # Both attempts started (two `start` deliveries); one `completed`, however the kill fell.
    received = receiver.wait_for(lambda got: any(item.json["status"] == "succeeded" for item in got), timeout=30)
    time.sleep(2)  # room for a duplicate to show up, were there one
    completed = {item.id for item in receiver.received if item.json["status"] == "succeeded"}
    assert len(completed) == 1, received
    assert [row["event"] for row in stack.job(job_id)["webhook_deliveries"]].count("completed") == 1

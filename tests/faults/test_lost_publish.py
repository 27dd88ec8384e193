"""Fault 3: the process dies between committing a job and publishing it; the sweeper publishes it."""
from __future__ import annotations

import time

from jobs import service
from jobs.db import Database
from tests.faults.conftest import figure, wait_rows


def test_a_committed_but_never_published_job_runs_within_the_requeue_interval(make_stack, database_url):
    stack = make_stack(workers=1, max_batch_answers=1)
    warm = stack.submit(type="generate", prompt="warm-up", num_images=1).json()["id"]
    stack.wait(warm)  # the worker is up and idle
    database = Database(database_url)
    # What the API does up to its commit, then nothing: the crash before publish.
    with database.session() as session:
        job_id = service.add_job(session, "generate", {"prompt": "orphan", "num_images": 1, "cfg_weight": 5.0,
                                                       "temperature": 1.0, "seed": 3}).id
    committed = time.monotonic()
    row = wait_rows(database_url, [job_id], lambda r: r.started_at is not None, timeout=30, stack=stack)[job_id]
    waited = time.monotonic() - committed
    database.engine.dispose()
    figure(f"publish lost after commit: job started {waited:.1f} s after its commit "
           f"(requeue after 2 s, sweep every 0.5 s)")
    assert waited < 2 + 0.5 + 3  # the interval, a sweep, and slack for a loaded machine
    assert stack.wait(job_id)["status"] == "succeeded"
    assert row.attempts == 1

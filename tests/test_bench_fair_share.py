"""bench/fair_share.py on a real stack (PostgreSQL, its own Redis, the API with auth on, a simulated
worker): with tenant A's 500 jobs queued, tenant B's single job starts within one batch of arriving."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_ADMIN

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "fair_share.py"


def test_a_burst_of_500_does_not_hold_back_another_tenants_job(tmp_path):
    env = {**os.environ, "JANUS_BENCH_POSTGRES": POSTGRES_ADMIN, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(SCRIPT), "--burst", "500", "--workers", "1", "--timeout", "60", "--json"],
                          env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stderr[-4000:]
    [figures] = [json.loads(line) for line in done.stdout.splitlines()]
    print(json.dumps(figures))
    assert figures["a_queued_at_arrival"] >= 400  # the burst was still there when B's job came
    # B's job went into the next batch the worker started: at most the batch running when it
    # arrived (plus a claim, on a loaded machine) stood before it, not the 50-odd batches of A's.
    assert figures["batches_between"] == 0, figures
    assert figures["b_wait_s"] <= figures["batch_s"] + 2, figures
    assert figures["fifo_wait_s"] > 10 * figures["batch_s"], figures

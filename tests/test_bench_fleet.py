"""`janusq bench --fleet`: a tiny real fleet run (PostgreSQL, its own Redis, moto's S3, the API
under gunicorn, two supervised simulated workers), and the figures it computes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from janusq.fleet_load import expected_job_seconds, poisson_arrivals
from janusq.fleet_report import Batch, _in_window
from janus_model.simulated_profiles import PROFILES
from tests.conftest import POSTGRES_ADMIN

FIELDS = ("workers", "offered_jobs_per_s", "completed_jobs_per_s", "ideal_jobs_per_s", "scaling_efficiency",
          "dispatch_p50_ms", "dispatch_p99_ms", "queue_wait_p50_ms", "queue_wait_p99_ms", "db_commits_per_s",
          "db_connections_peak", "lost", "duplicated", "worker_rss_mb")


def test_a_tiny_fleet_run_prints_one_json_line_and_loses_nothing(tmp_path):
    env = {**os.environ, "JANUS_BENCH_POSTGRES": POSTGRES_ADMIN, "JANUS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "janusq", "bench", "--fleet", "--workers", "2", "--duration", "5",
                           "--scale", "1", "--keep-logs", str(tmp_path / "logs")],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-4000:]
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    print(json.dumps(line))
    assert all(line[name] is not None for name in FIELDS), line
    assert line["bench"] == "fleet" and line["workers"] == 2 and line["storage"] == "s3"
    assert line["accepted"] > 5 and line["refused"] == 0
    assert line["lost"] == 0 and line["duplicated"] == 0 and line["unfinished"] == {}
    assert 0 < line["completed_jobs_per_s"] and 0 < line["scaling_efficiency"] <= 1.05
    assert line["db_commits_per_s"] > 0 and 2 <= line["db_connections_peak"] < 40
    [kept] = (tmp_path / "logs").iterdir()
    assert kept.name.startswith("w2-scale1-") and (kept / "workers.log").exists()


def test_a_bad_fleet_option_is_one_line():
    done = subprocess.run([sys.executable, "-m", "janusq", "bench", "--fleet", "--workers", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--workers" in done.stderr
    done = subprocess.run([sys.executable, "-m", "janusq", "bench", "--fleet", "--profile", "h100-janus-9b"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown simulated profile 'h100-janus-9b'" in done.stderr


def test_a_batch_counts_for_its_share_inside_the_window():
    batches = [Batch(jobs=4, start=0, end=10, model_s=8), Batch(jobs=2, start=8, end=12, model_s=4),
               Batch(jobs=1, start=20, end=21, model_s=1)]
    jobs, model = _in_window(batches, (5, 10))
    assert jobs == 4 * 0.5 + 2 * 0.5 and model == 8 * 0.5 + 4 * 0.5


def test_the_offered_stream_has_the_asked_rate_and_mix():
    arrivals = poisson_arrivals(rate=20, duration=100, seed=3)
    assert 1800 < len(arrivals) < 2200 and all(0 < a.at < 100 for a in arrivals)
    assert 0.45 < sum(a.type == "generate" for a in arrivals) / len(arrivals) < 0.55
    profile = PROFILES["h100-janus-1.3b"]
    assert expected_job_seconds(profile, 10) == 10 * expected_job_seconds(profile, 1)

"""`janusq bench --queue`: a short real run on both brokers, and the figures it computes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

from janusq.bench_queue import back_to_back_gaps, percentile

FIGURES = ("dispatch_p50_ms", "dispatch_p99_ms", "dispatch_max_ms", "gap_p50_ms", "gap_p99_ms", "gap_max_ms")


def test_bench_queue_prints_one_json_line_per_broker(tiny_checkpoint, redis_url, tmp_path):
    env = {**os.environ, "JANUS_MODEL": str(tiny_checkpoint), "JANUS_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "janusq", "bench", "--queue", "--jobs", "3", "--burst", "4",
                           "--redis-url", redis_url], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["broker"] for line in lines] == ["embedded", "redis"]
    for line in lines:
        assert line["bench"] == "queue" and line["failed_jobs"] == 0
        assert line["sequential_jobs"] == 3 and line["burst_jobs"] == 4
        assert 0 <= line["dispatch_p50_ms"] <= line["dispatch_p99_ms"] <= line["dispatch_max_ms"] < 5000
        assert all(isinstance(line[name], (int, float)) or (line[name] is None and line["gaps"] == 0)
                   for name in FIGURES)
    print("\n".join(done.stdout.splitlines()))


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(101)), 99) == 99


def _job(job_id, created, started, finished, batch=None):
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ms = lambda value: base + timedelta(milliseconds=value)  # noqa: E731
    return SimpleNamespace(id=job_id, created_at=ms(created), started_at=ms(started), finished_at=ms(finished),
                           result={"batch": {"id": batch}} if batch else None)


def test_gaps_run_from_a_batch_finishing_to_the_next_one_starting():
    rows = [_job("a", 0, 10, 50, "b1"), _job("b", 1, 10, 52, "b1"),  # one batch of two
            _job("c", 2, 55, 90), _job("d", 3, 91, 120),  # then one at a time
            _job("e", 200, 260, 300)]  # submitted after the worker went idle: dispatch, not a gap
    assert [round(gap, 3) for gap in back_to_back_gaps(rows)] == [3.0, 1.0]


def test_bench_help_shows_every_mode_and_the_model_benchmarks_options(capsys):
    import pytest

    from janusq.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(option in out for option in ("--queue", "--api", "--fleet", "--images", "--answer-tokens"))

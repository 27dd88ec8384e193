"""A small run of the loopback load test (bench/load_test.py) against `make run`'s configuration."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD_TEST = Path(__file__).resolve().parents[2] / "bench" / "load_test.py"


def test_load_test_loses_no_job(embedded_stack):
    result = subprocess.run(
        [sys.executable, str(LOAD_TEST), "--url", embedded_stack.base_url, "--clients", "3",
         "--duration", "2", "--max-jobs", "9", "--type", "understand", "--drain-timeout", "120"],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr + embedded_stack.logs()
    print(result.stdout)  # the figures, with -s
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["accepted"] == figures["submitted"] == 9
    assert figures["errors"] == 0 and figures["lost"] == 0
    assert figures["outcomes"] == {"succeeded": 9}
    assert figures["submit_latency_ms"]["p50"] > 0 and "p99" in result.stdout

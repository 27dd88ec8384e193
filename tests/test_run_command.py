"""`janusq run` (what `make run` starts): serves jobs, and Ctrl-C stops every process it started."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.s3server import free_port


def _processes_with_env(marker: str) -> list[int]:
    """PIDs whose environment holds `marker` (the run's unique data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _wait_ready(base: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "janusq run exited early"
        try:
            if requests.get(base + "/readyz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise TimeoutError("janusq run did not become ready")


def test_run_serves_a_job_and_ctrl_c_stops_everything(tmp_path, tiny_checkpoint):
    data_dir = tmp_path / "var"
    shutil.copytree(tiny_checkpoint, data_dir / "models" / "janus-tiny")
    port = free_port()
    env = {**os.environ, "JANUS_DATA_DIR": str(data_dir), "JANUS_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "run.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "janusq", "run"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        assert "auth is OFF" in (tmp_path / "run.log").read_text()  # loopback: said at start
        _assert_start_up_is_short_and_true((tmp_path / "run.log").read_text())
        job = requests.post(base + "/v1/jobs", json={"type": "generate", "prompt": "hi", "num_images": 1},
                            timeout=30).json()
        deadline = time.monotonic() + 120
        while requests.get(f"{base}/v1/jobs/{job['id']}", timeout=5).json()["status"] != "succeeded":
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()
            time.sleep(0.3)
        assert (data_dir / "janus.db").exists() and (data_dir / "broker.db").exists()
        assert list((data_dir / "storage" / "jobs" / job["id"]).glob("*.png"))
        assert len(_processes_with_env(str(data_dir))) >= 3  # runner, gunicorn, celery
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    deadline = time.monotonic() + 15
    while _processes_with_env(str(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _processes_with_env(str(data_dir)) == []


def _assert_start_up_is_short_and_true(log: str) -> None:
    """No progress bars, Alembic chatter or Celery banner; "serving on" only once gunicorn listens."""
    lines = log.splitlines()
    assert not [line for line in lines if "Loading weights" in line or "model shards" in line or "alembic" in line]
    assert not [line for line in lines if "[config]" in line or "[queues]" in line]
    serving = next(index for index, line in enumerate(lines) if "serving on http://" in line)
    assert any("Listening at" in line for line in lines[:serving])
    assert len(lines) < 40, log

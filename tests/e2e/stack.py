"""Start the real service for end-to-end tests: `janusq serve` and `janusq worker` processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, select

from janusq.processes import stop_all
from jobs.migrate import upgrade
from jobs.models import Job
from jobs.settings import load_settings
from tests.s3server import free_port

TERMINAL = {"succeeded", "failed", "canceled", "expired"}


class Stack:
    """An API process plus worker processes sharing one configuration (JANUS_* env)."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.env.setdefault("JANUS_PORT", str(free_port()))
        self.env.setdefault("JANUS_API_WORKERS", "2")
        self.settings = load_settings(**_settings_from(self.env))
        self.base_url = f"http://127.0.0.1:{self.env['JANUS_PORT']}"
        self.log_dir = log_dir
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self._engine = None

    # -- processes -------------------------------------------------------------------------
    # `with Stack(env, logs).start(workers=1) as stack: yield stack` is a fixture's whole body:
    # the processes are stopped however the tests went.
    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
    def start(self, workers: int = 1, queues: str | None = None) -> "Stack":
        upgrade(self.settings.database)
        try:
            self.api = self._spawn("api", "serve")
            for _ in range(workers):
                self.start_worker(queues)
            self.wait_ready()
        except BaseException:
            # A stack that failed to start must not leave workers behind: they would take the
            # messages of every later test that shares the broker.
            self.stop()
            raise
        return self

    def start_worker(self, queues: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`env` adds worker-only settings (e.g. JANUS_MAX_BATCH_IMAGES) to the stack's."""
        args = ["worker"] + ([f"--queues={queues}"] if queues else [])
        worker = self._spawn(f"worker{len(self.workers)}", *args, env=env)
        self.workers.append(worker)
        return worker

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "janusq", *args], env={**self.env, **(env or {})},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.base_url + "/readyz", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass  # not listening yet, or slow while the workers load the model beside it
            time.sleep(0.3)
        raise TimeoutError(f"API not ready; logs in {self.log_dir}")

    def stop_worker(self, worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        _stop(worker, sig)
        self.workers.remove(worker)

    def stop(self) -> None:
        for process in [*self.workers, self.api]:
            if process is not None:
                _stop(process, signal.SIGTERM)
        self.workers = []
        if self._engine is not None:
            self._engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
                         for path in sorted(self.log_dir.glob("*.log")))

    # -- HTTP --------------------------------------------------------------------------------
    def submit(self, **body) -> requests.Response:
        return requests.post(self.base_url + "/v1/jobs", json=body, timeout=30)

    def job(self, job_id: str) -> dict:
        response = requests.get(f"{self.base_url}/v1/jobs/{job_id}", timeout=10)
        response.raise_for_status()
        return response.json()

    def wait(self, job_id: str, until=lambda job: job["status"] in TERMINAL, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if until(job):
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} stuck at {job}\n{self.logs()}")

    # -- database (to check what the API must not have created) -----------------------------
    @property
    def engine(self):
        if self._engine is None:
            self._engine = create_engine(self.settings.database)
        return self._engine

    def job_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(Job)).scalar_one()

    def workers_of_jobs(self, job_ids) -> set[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(Job.worker).where(Job.id.in_(list(job_ids))))
            return {row.worker for row in rows}


def _settings_from(env: dict[str, str]) -> dict:
    return {key[len("JANUS_"):].lower(): value for key, value in env.items()
            if key.startswith("JANUS_") and not key.startswith("JANUS_TEST_")}


def _stop(process: subprocess.Popen, sig: int) -> None:
    """SIGTERM goes the way `janusq run` stops its children; other signals hit the whole group."""
    if sig == signal.SIGTERM:
        stop_all([process])
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait()

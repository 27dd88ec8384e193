"""The stack `janusq bench --fleet` runs against, started fresh and torn down after each run.

- its own PostgreSQL database on the server JANUS_BENCH_POSTGRES names (dropped at the end);
- its own redis-server on a free port, so a fault run can restart it;
- S3 through moto's server with a versioned bucket (a second write of an image is a second
  version: that is how duplicated results are seen), or a local folder;
- the API under gunicorn, as `janusq serve` starts it;
- W simulated workers under one supervisor, as `janusq worker --replicas W` starts them.
Every child runs in its own process group and is killed with it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from janusq.processes import free_port, janusq_argv, listening
from jobs.migrate import scratch_database

log = logging.getLogger("janusq.bench")

POSTGRES_ADMIN = os.environ.get("JANUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "janus-fleet"



@dataclass
class StackOptions:
    workers: int
    model: str
    storage: str = "s3"  # s3 (moto, versioned) or local
    worker_env: dict[str, str] = field(default_factory=dict)  # extra JANUS_* for the workers only


class FleetStack:
    def __init__(self, options: StackOptions, folder: Path):
        self.options, self.folder = options, folder
        self.database_url = ""  # a scratch database of this run's, made on entering
        self._database = contextlib.ExitStack()
        self.redis_port, self.api_port = free_port(), free_port()
        self.s3_port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.killed: list[int] = []  # worker pids a fault run SIGKILLed

    # -- what the bench reads ------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def supervisor(self) -> subprocess.Popen:
        return self.processes["workers"]

    def env(self) -> dict[str, str]:
        storage = (f"s3://{BUCKET}/results" if self.options.storage == "s3"
                   else f"file://{self.folder / 'storage'}")
        return {**os.environ, **DUMMY_AWS, "JANUS_DATA_DIR": str(self.folder), "JANUS_MODEL": self.options.model,
                "JANUS_DATABASE_URL": self.database_url, "JANUS_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "JANUS_STORAGE_URL": storage, "JANUS_S3_ENDPOINT_URL": self.s3_endpoint,
                "JANUS_HOST": "127.0.0.1", "JANUS_PORT": str(self.api_port), "JANUS_AUTH": "off",
                "JANUS_RATE_LIMIT_PER_MINUTE": "0", "JANUS_MAX_UNFINISHED_JOBS": "0"}

    # -- start and stop ------------------------------------------------------------------------
    def __enter__(self) -> "FleetStack":
        try:
            self.database_url = self._database.enter_context(scratch_database(POSTGRES_ADMIN, "janusq_fleet"))
            self.start_redis()
            if self.options.storage == "s3":
                self._start_s3()
            self._spawn("api", janusq_argv("serve"), self.env())
            self._spawn("workers", janusq_argv("worker", "--replicas", str(self.options.workers)),
                        {**self.env(), **self.options.worker_env})
            self._wait_for_api()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc) -> None:
        # The supervisor stops its workers on SIGTERM; any it could not (it was killed after its
        # grace period) are killed here, each with its pool process: nothing outlives the run.
        workers = children_of(self.supervisor.pid) if "workers" in self.processes else []
        for name in ("api", "workers", "s3", "redis"):
            process = self.processes.pop(name, None)
            if process is not None:
                _kill_group(process)
        for pid in workers:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._database.close()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        with open(self.folder / f"{name}.log", "ab") as output:
            self.processes[name] = subprocess.Popen(argv, env=env, stdout=output, stderr=subprocess.STDOUT,
                                                    start_new_session=True, cwd=self.folder)
        return self.processes[name]

    def start_redis(self) -> None:
        # No persistence: a restart loses every queued message, the worst case the sweeper must mend.
        self._spawn("redis", [shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], os.environ.copy())
        _wait_until(lambda: listening("127.0.0.1", self.redis_port), 10, "redis-server did not start")

    def restart_redis(self, down_seconds: float = 2.0) -> None:
        _kill_group(self.processes.pop("redis"))
        time.sleep(down_seconds)
        self.start_redis()

    def _start_s3(self) -> None:
        self._spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)],
                    {**os.environ, **DUMMY_AWS})
        _wait_until(lambda: listening("127.0.0.1", self.s3_port), 30, "moto's S3 server did not start")
        client = self.s3_client()
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id="bench",
                            aws_secret_access_key="bench", region_name="us-east-1")

    def _wait_for_api(self) -> None:
        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{self.api_url}/readyz", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait_until(ready, 60, f"the API did not get ready (see {self.folder / 'api.log'})")

    def admin_connection(self):
        """A plain connection to the bench database, for the statistics views."""
        import psycopg

        return psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://", 1),
                               autocommit=True, connect_timeout=5)


def children_of(pid: int) -> list[int]:
    try:
        return [int(part) for part in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass



def _wait_until(check, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(message)
        time.sleep(0.2)

"""moto's standalone S3 server in a subprocess, reachable over HTTP, for tests.

    with MotoServer() as s3:
        create_bucket(s3.endpoint_url, "janus")
        # JANUS_S3_ENDPOINT_URL=s3.endpoint_url, JANUS_STORAGE_URL=s3://janus/results

Being a separate process on a real port, it serves worker processes started by tests too.
moto accepts presigned URLs forever, unlike S3 and MinIO; by default the server therefore runs
behind a small WSGI layer (this file run as a script) that answers 403 to expired presigned
requests, as S3 does. `MotoServer(enforce_expiry=False)` runs plain `python -m moto.server`.
"""
from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from urllib.parse import parse_qs

DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MotoServer:
    """A moto S3 server subprocess on a free port; `.endpoint_url` once started."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        enforce_expiry: bool = True,
        startup_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self.enforce_expiry = enforce_expiry
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint_url(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoServer is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "MotoServer":
        if self.running:
            return self
        fixed_port = self.port is not None
        # A port picked free may be taken before the server binds it; pick again then.
        for _ in range(1 if fixed_port else 3):
            if not fixed_port:
                self.port = free_port(self.host)
            self._spawn()
            if self._wait_until_up():
                atexit.register(self.stop)
                return self
        log = self._read_log()
        self.stop()
        raise RuntimeError(f"moto server did not start on {self.endpoint_url}:\n{log}")

    def _spawn(self) -> None:
        self.stop()
        if self.enforce_expiry:
            command = [sys.executable, os.path.abspath(__file__)]
        else:
            command = [sys.executable, "-m", "moto.server"]
        command += ["-H", self.host, "-p", str(self.port)]
        env = {**os.environ}
        for name, value in DUMMY_AWS_ENV.items():
            env.setdefault(name, value)
        # A file, not a pipe: nobody reads the server's request log, and a full pipe blocks it.
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def _wait_until_up(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True  # it answered
            except OSError:
                time.sleep(0.05)
        return False

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def reset(self) -> None:
        """Forget all buckets and objects."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def s3_client(endpoint_url: str):
    """A plain boto3 S3 client for the server (dummy credentials unless the env has some)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=os.environ.get("AWS_DEFAULT_REGION", DUMMY_AWS_ENV["AWS_DEFAULT_REGION"]),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", DUMMY_AWS_ENV["AWS_ACCESS_KEY_ID"]),
        aws_secret_access_key=os.environ.get(
            "AWS_SECRET_ACCESS_KEY", DUMMY_AWS_ENV["AWS_SECRET_ACCESS_KEY"]
        ),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def create_bucket(endpoint_url: str, bucket: str) -> None:
    s3_client(endpoint_url).create_bucket(Bucket=bucket)


# ---- the server side, run as `python tests/s3server.py -H HOST -p PORT` ----

_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)


def _presigned_expired(query_string: str, now: datetime | None = None) -> bool:
    query = parse_qs(query_string)
    now = now or datetime.now(timezone.utc)
    if "X-Amz-Date" in query and "X-Amz-Expires" in query:  # SigV4
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        age = (now - signed.replace(tzinfo=timezone.utc)).total_seconds()
        return age > int(query["X-Amz-Expires"][0])
    if "Expires" in query and "Signature" in query:  # SigV2: an absolute epoch
        return now.timestamp() > int(query["Expires"][0])
    return False


def expire_presigned(app):
    """WSGI middleware: 403 for presigned requests past their expiry, as S3 does."""

    def wrapped(environ, start_response):
        try:
            expired = _presigned_expired(environ.get("QUERY_STRING", ""))
        except ValueError:
            expired = False  # malformed: let moto answer it
        if expired:
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(_EXPIRED)))],
            )
            return [_EXPIRED]
        return app(environ, start_response)

    return wrapped


def _serve(argv: list[str]) -> None:
    import argparse

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description="moto server that expires presigned URLs")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))
    app = expire_presigned(DomainDispatcherApplication(create_backend_app))
    run_simple(
        args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    # Run as a script, this file's folder heads sys.path; tests/jobs must not shadow `jobs`.
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    _serve(sys.argv[1:])

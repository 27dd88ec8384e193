"""Child processes of `janusq run`: the API and one worker, stopped together."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

from jobs.settings import Settings

log = logging.getLogger("janusq")
STOP_GRACE_SECONDS = 10


# warm: each gunicorn worker reads the model's tokenizer before it takes requests, so no client's
# first submit pays the 3-6 s of importing transformers and reading it.
API_APP = "api.app:create_app(warm=True)"


def gunicorn_argv(settings: Settings, app: str = API_APP) -> list[str]:
    """What `janusq serve` runs; `janusq bench --api` serves its bare Flask ceiling with the same."""
    return [sys.executable, "-m", "gunicorn", "--workers", str(settings.api_workers), *_concurrency(settings),
            "--timeout", str(settings.max_wait_seconds + 30),
            "--bind", f"{settings.host}:{settings.port}", "--access-logfile", "-",
            "--graceful-timeout", "10", app]


def _concurrency(settings: Settings) -> list[str]:
    """How each gunicorn process serves requests side by side (README, "Waiting without starving the API")."""
    if settings.api_worker_class == "gevent":
        # A greenlet per request: a request held open (Prefer: wait) costs memory, not a thread.
        return ["--worker-class", "gevent", "--worker-connections", str(settings.api_connections)]
    return ["--worker-class", "gthread", "--threads", str(settings.api_threads)]


def janusq_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "janusq", *args]


def run_all_in_one(settings: Settings) -> int:
    children = [_spawn(janusq_argv("serve")), _spawn(janusq_argv("worker"))]
    if settings.is_tiny_model:
        log.info("model: tiny, random weights: images are noise and answers gibberish; "
                 "set JANUS_MODEL to a real checkpoint for real output")
    announced, stopping = False, False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and all(child.poll() is None for child in children):
            if not announced and listening(settings.host, settings.port):
                # Said once the API accepts connections, not when its process starts.
                log.info("serving on http://%s:%s with one worker (Ctrl-C stops everything)",
                         settings.host, settings.port)
                announced = True
            time.sleep(0.3)
    finally:
        stop_all(children)
    failed = [child.returncode for child in children if child.returncode not in (0, -15, None)]
    return 0 if stopping or not failed else 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now, for the benchmarks' own servers."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def listening(host: str, port: int) -> bool:
    address = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def _spawn(argv: list[str]) -> subprocess.Popen:
    # Its own session, so Ctrl-C reaches us once and we stop each whole process group in order.
    return subprocess.Popen(argv, start_new_session=True, env=os.environ.copy())


def stop_all(children: list[subprocess.Popen]) -> None:
    # SIGTERM to each leader only: gunicorn's master and Celery's main process stop their own
    # children in order (a pool child killed first would just be replaced). The whole group is
    # killed only if the leader overruns its grace period.
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass

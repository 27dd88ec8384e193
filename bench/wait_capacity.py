#!/usr/bin/env python3
"""How many requests held open (`Prefer: wait=N`) one API process holds, and what they cost.

Starts `janusq serve` with ONE gunicorn process (the worker class given), on a scratch
PostgreSQL database (dropped at the end), Redis as the broker, a simulated model (no tokenizer
to load) and no worker, so the jobs stay queued. For each count N it opens N connections, each
submitting a job with `Prefer: wait=--wait-seconds`, and once all N jobs are stored:

- probes /healthz and GET /v1/jobs/<id> one after the other for --probe-seconds (p50, p99, max);
- reads the gunicorn worker's resident memory (RSS), and its CPU use over HOLD_SECONDS of
  holding them (the watcher's checks) with no other request;
- cancels every job in one statement and times until the last of the N answers has arrived
  (all N woken by the process's one watcher, then each reads its job once).

With --streams the N requests are event streams (GET /v1/jobs/<id>/events) of N queued jobs
instead: held counts the streams not declined; the drain ends each stream through the wait
room's watcher (the jobs are canceled in the database, so no final status event comes and each
stream waits api/events.py's FINAL_EVENT_GRACE, 2 s, before sending `completed`).

One JSON line per N: held (waits that were still open when the probing ended: the rest were
declined at once), probe latencies in ms, rss_mb and rss_kb_per_wait (over the process idle),
hold_cpu_pct (of one core), drain_s, answers by status ("declined": no Preference-Applied). With gthread the cap (JANUS_MAX_WAITING_REQUESTS, by default half the threads)
is what holds; pass --max-waiting to lift it.

    flock /work/notes/bench.lock python bench/wait_capacity.py --worker-class gevent --waits 250,1000,2000

Needs the repository's virtualenv (it runs `python -m janusq serve`), PostgreSQL and Redis.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from janusq.processes import free_port, stop_all  # noqa: E402
from jobs.migrate import scratch_database  # noqa: E402
from jobs.models import Job  # noqa: E402

HOST = "127.0.0.1"
HOLD_SECONDS = 3.0
BODY = json.dumps({"type": "generate", "prompt": "a lighthouse at dusk", "num_images": 1}).encode()


def main() -> int:
    args = _arguments()
    counts = [int(n) for n in args.waits.split(",")]
    with scratch_database(args.postgres_url, "janusq_bench_waits") as database_url, \
            tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        env = {**os.environ, "JANUS_DATA_DIR": data_dir, "JANUS_DATABASE_URL": database_url,
               "JANUS_BROKER_URL": args.redis_url, "JANUS_MODEL": "simulated:h100-janus-1.3b",
               "JANUS_PORT": str(port), "JANUS_API_WORKERS": "1", "JANUS_API_WORKER_CLASS": args.worker_class,
               "JANUS_API_CONNECTIONS": str(max(counts) + 100), "JANUS_MAX_UNFINISHED_JOBS": "0",
               "JANUS_MAX_WAIT_SECONDS": str(args.wait_seconds), "JANUS_RATE_LIMIT_PER_MINUTE": "0"}
        if args.max_waiting is not None:
            env["JANUS_MAX_WAITING_REQUESTS"] = str(args.max_waiting)
        log = open(Path(data_dir) / "api.log", "wb")
        server = subprocess.Popen([sys.executable, "-m", "janusq", "serve"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        engine = create_engine(database_url)
        try:
            base = f"http://{HOST}:{port}"
            _until_ready(base)
            worker = _gunicorn_worker(server.pid)
            idle_rss = _rss_kb(worker)
            for count in counts:
                print(json.dumps(_measure(args, base, engine, worker, idle_rss, count)), flush=True)
        finally:
            stop_all([server])
            engine.dispose()
            import redis

            redis.Redis.from_url(args.redis_url).delete("generate", "understand")
    return 0


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker-class", choices=("gthread", "gevent"), default="gevent")
    parser.add_argument("--waits", default="250,1000", help="comma-separated counts of concurrent waits")
    parser.add_argument("--max-waiting", type=int, help="JANUS_MAX_WAITING_REQUESTS (default: the setting's)")
    parser.add_argument("--wait-seconds", type=int, default=120, help="what each request asks to wait")
    parser.add_argument("--streams", action="store_true", help="hold event streams instead of waits")
    parser.add_argument("--probe-seconds", type=float, default=3.0)
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                        help="a Redis database no real worker uses (its queue lists are deleted at the end)")
    return parser.parse_args()


def _measure(args, base: str, engine, worker: int, idle_rss: int, count: int) -> dict:
    before = _job_count(engine)
    cpu_before = _cpu_seconds(worker)
    started = time.monotonic()
    if args.streams:
        sockets = [_open_stream(base, _submit(base)) for _ in range(count)]
    else:
        sockets = [_send_wait(base, args.wait_seconds) for _ in range(count)]
    _until(lambda: _job_count(engine) >= before + count, timeout=600)
    submitted_s = time.monotonic() - started
    time.sleep(0.5)  # the last ones reach their wait
    probe_id = _newest_job(engine)
    cpu_held = _cpu_seconds(worker)
    time.sleep(HOLD_SECONDS)  # nothing but the held waits and their watcher
    hold_cpu = (_cpu_seconds(worker) - cpu_held) / HOLD_SECONDS
    latencies, errors = _probe(base, probe_id, args.probe_seconds)
    answered_early = sum((_declined_stream if args.streams else _has_answer)(sock) for sock in sockets)
    rss = _rss_kb(worker)
    held = count - answered_early
    drain_started = time.monotonic()
    with engine.begin() as connection:
        connection.execute(update(Job).where(Job.status == "queued").values(status="canceled"))
    answers = [(_read_stream if args.streams else _read_answer)(sock) for sock in sockets]
    drain_s = time.monotonic() - drain_started
    statuses = {status: answers.count(status) for status in set(answers)}
    return {"worker_class": args.worker_class, "streams" if args.streams else "waits": count, "held": held, "submit_s": round(submitted_s, 2),
            "probes": len(latencies), "probe_p50_ms": _ms(latencies, 50), "probe_p99_ms": _ms(latencies, 99),
            "probe_max_ms": round(max(latencies) * 1000, 1), "probe_errors": errors,
            "rss_mb": round(rss / 1024, 1), "rss_kb_per_wait": round((rss - idle_rss) / max(held, 1), 1),
            "hold_cpu_pct": round(hold_cpu * 100, 1), "drain_s": round(drain_s, 2), "answers": statuses,
            "server_cpu_s": round(_cpu_seconds(worker) - cpu_before, 2)}


def _send_wait(base: str, seconds: int) -> socket.socket:
    # Kept alive, not "Connection: close": gthread's main loop lingers up to 2 s on each closed
    # connection whose client has not closed yet (util.close_graceful), which these do not.
    sock = socket.create_connection((HOST, int(base.rsplit(":", 1)[1])))
    sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 + f"Prefer: wait={seconds}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode() + BODY)
    return sock


def _submit(base: str) -> str:
    return requests.post(base + "/v1/jobs", data=BODY, headers={"Content-Type": "application/json"},
                         timeout=60).json()["id"]


def _open_stream(base: str, job_id: str) -> socket.socket:
    sock = socket.create_connection((HOST, int(base.rsplit(":", 1)[1])))
    sock.sendall(f"GET /v1/jobs/{job_id}/events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"
                 .encode())
    return sock


def _peek(sock: socket.socket, size: int) -> bytes:
    """What the server has sent so far (up to `size` bytes), left unread; b"" when nothing yet."""
    sock.setblocking(False)
    try:
        return sock.recv(size, socket.MSG_PEEK)
    except BlockingIOError:
        return b""
    finally:
        sock.setblocking(True)


def _declined_stream(sock: socket.socket) -> bool:
    """Whether the stream was declined (over the cap): it says so, then closes."""
    return b": declined" in _peek(sock, 65536)


def _read_stream(sock: socket.socket) -> str:
    """"completed" or "declined" (or "none"), once the server closes the stream; closes the socket."""
    sock.settimeout(300)
    data = b""
    while not data.endswith(b"\r\n0\r\n\r\n") and (chunk := sock.recv(65536)):
        data += chunk
    sock.close()
    return "declined" if b": declined" in data else "completed" if b"event: completed" in data else f"none {data[-60:]!r}"


def _has_answer(sock: socket.socket) -> bool:
    return bool(_peek(sock, 1))


def _read_answer(sock: socket.socket) -> str:
    """The answer's status ("declined" added when Preference-Applied is absent); closes the socket."""
    sock.settimeout(300)
    data = b""
    while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                   if line.startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := sock.recv(65536)):
        body += chunk
    sock.close()
    status = head.split(b" ", 2)[1].decode() if head else "none"
    return status if b"preference-applied" in head.lower() else f"{status} declined"


def _probe(base: str, job_id: str, seconds: float) -> tuple[list[float], int]:
    latencies, errors = [], 0
    with requests.Session() as session:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            path = "/healthz" if len(latencies) % 2 else f"/v1/jobs/{job_id}"
            started = time.monotonic()
            errors += session.get(base + path, timeout=60).status_code != 200
            latencies.append(time.monotonic() - started)
    return latencies, errors


def _ms(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 1)


def _job_count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Job)).scalar_one()


def _newest_job(engine) -> str:
    with engine.connect() as connection:
        return connection.execute(select(Job.id).order_by(Job.created_at.desc()).limit(1)).scalar_one()


def _gunicorn_worker(master: int) -> int:
    """The one gunicorn worker: the child of the master (janusq serve execs gunicorn in place)."""
    _until(lambda: Path(f"/proc/{master}/task/{master}/children").read_text().split(), timeout=30)
    return int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _until_ready(base: str) -> None:
    def ready() -> bool:
        try:
            return requests.get(base + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            return False
    _until(ready, timeout=120)


def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())

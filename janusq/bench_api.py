"""`janusq bench --api`: what the API's front door costs, measured against a bare Flask ceiling.

It starts its own stack: a fresh PostgreSQL database on --postgres-url's server (dropped at the
end), the Redis database of --redis-url (database 14 unless told; the bench's queue lists and
rate-limit counter are deleted at the end, so give it a database no real worker uses), local
storage in a temporary folder, and the API exactly as `janusq serve` runs it (the same command,
so the same gunicorn argv), with auth on and one API key. Beside it, a bare Flask app with one
trivial JSON route (janusq/bare_flask.py) under the same gunicorn argv: the ceiling.

For each client count (1, 8 and 32 unless told) it measures, one after the other, the bare
route, submits (POST /v1/jobs, a one-image generate job; no worker runs, the jobs just queue)
and polls (GET /v1/jobs/<id> of the jobs just submitted), and prints one JSON line per (path,
clients): requests/s, latency p50/p99, the ratio to the bare ceiling at the same client count,
and errors (any answer but the expected 200/202, and failed connections).

Limits: the per-key rate limit stays on (its Redis round trip is part of what a submit costs)
but at 10^9 requests a minute, and the tenant's unfinished-jobs cap at 10^9, so queued jobs
never turn answers into 429s.

The load generator is one thread per client, each with its own keep-alive connection
(http.client), in this process. It shares the machine's cores with the servers it measures;
each line reports its CPU use (`client_cpu`, in cores) so that cost is visible.

Each line also gives `server_cpu_ms`: CPU milliseconds per answered request spent by the
gunicorn that served it (master and workers, from /proc; null elsewhere). On a machine shared
with other work, throughput moves with the neighbours; this figure moves much less, and the
ratio of a path's server_cpu_ms to the bare route's is the API's own cost per request
(PostgreSQL's and Redis's share of it runs in their processes and is not counted here).
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from janusq.bare_flask import BARE_APP, BARE_PATH
from janusq.bench_queue import percentile
from janusq.processes import free_port
from jobs.settings import Settings, load_settings


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
NO_LIMIT = 10**9  # high enough that no bench request is refused, low enough to stay an integer
HOST = "127.0.0.1"
SUBMIT_BODY = json.dumps({"type": "generate", "prompt": "a red fox in fresh snow, watercolour",
                          "num_images": 1}).encode()

# One request a client sends: method, path, body, the status that counts as success.
Request = tuple[str, str, "bytes | None", int]


@dataclass(frozen=True)
class Options:
    clients: tuple[int, ...] = (1, 8, 32)
    seconds: float = 5.0  # each measurement
    requests: int = 0  # per client and measurement; 0: as many as fit in `seconds`
    warmup_seconds: float = 1.0


def add_arguments(parser) -> None:
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts (1,8,32)")
    parser.add_argument("--seconds", type=float, default=Options.seconds,
                        help="length of each measurement (5)")
    parser.add_argument("--requests", type=int, default=0,
                        help="at most this many requests per client and measurement (0: no cap)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL,
                        help="a PostgreSQL server where the bench may create (and drop) a database of "
                             f"its own ({DEFAULT_POSTGRES_URL})")


def options_from(args) -> Options | None:
    try:
        clients = tuple(int(part) for part in args.clients.split(",") if part.strip())
    except ValueError:
        return None
    if not clients or min(clients) < 1 or args.seconds <= 0 or args.requests < 0:
        return None
    return Options(clients=clients, seconds=args.seconds, requests=args.requests,
                   warmup_seconds=min(Options.warmup_seconds, args.seconds))


def main(settings: Settings, args) -> int:
    options = options_from(args)
    if options is None:
        print("janusq: bench --api needs --clients like 1,8,32 (each >= 1), --seconds > 0, --requests >= 0",
              file=sys.stderr)
        return 2
    redis_url = args.redis_url or DEFAULT_REDIS_URL
    with ApiStack(settings, redis_url, args.postgres_url) as stack:
        for line in run(stack, options):
            print(json.dumps(line), flush=True)
    return 0


def run(stack: "ApiStack", options: Options) -> Iterator[dict]:
    # Every server thread warm first (imports, pools, the tokenizer); its figures are dropped.
    warmup = Options(seconds=options.warmup_seconds, requests=options.requests)
    measure_round(stack, stack.new_clients(max(options.clients)), warmup)
    for clients in options.clients:
        results = measure_round(stack, stack.new_clients(clients), options)
        ceiling = results["bare"].rate
        for path, result in results.items():
            yield result.line(path, clients, ceiling, stack.description)


def measure_round(stack: "ApiStack", headers: list[dict], options: Options) -> dict[str, "Result"]:
    """bare, submit, poll in turn, each client with its own key; a client polls its own jobs."""
    jobs = [[stack.submit_one(client_headers)] for client_headers in headers]
    paths = {"bare": (lambda client, n: ("GET", BARE_PATH, None, 200)),
             "submit": (lambda client, n: ("POST", "/v1/jobs", SUBMIT_BODY, 202)),
             "poll": (lambda client, n: ("GET", f"/v1/jobs/{jobs[client][n % len(jobs[client])]}", None, 200))}
    results = {}
    for path, request_of in paths.items():
        server_cpu = stack.server_cpu_seconds(path)
        results[path] = drive(stack.port_of(path), headers, request_of, options,
                              (lambda client, job_id: jobs[client].append(job_id)) if path == "submit" else None)
        if server_cpu is not None:
            results[path].server_cpu_seconds = stack.server_cpu_seconds(path) - server_cpu
    return results


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the load generator's
    server_cpu_seconds: float | None = None  # the gunicorn that served (master and workers)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self, path: str, clients: int, ceiling: float, description: dict) -> dict:
        ms = [value * 1000 for value in self.latencies]
        return {"bench": "api", "path": path, "clients": clients, "requests": len(ms),
                "seconds": round(self.seconds, 2), "req_per_s": round(self.rate, 1),
                "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
                "ratio_to_bare": round(self.rate / ceiling, 3) if ceiling else None,
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "client_cpu": round(self.cpu_seconds / self.seconds, 2) if self.seconds else None,
                "server_cpu_ms": (round(1000 * self.server_cpu_seconds / len(ms), 3)
                                  if self.server_cpu_seconds is not None and ms else None),
                **description}


def drive(port: int, headers: list[dict], request_of: Callable[[int, int], Request], options: Options,
          on_created: Callable[[int, str], None] | None = None) -> Result:
    """A thread per client (len(headers)), each on its own keep-alive connection, sends requests
    until the time or the request cap is up. Each first sends one unmeasured request (connect)."""
    clients = len(headers)
    results = [Result() for _ in range(clients)]
    clock = {}

    def start_clock() -> None:  # runs once, before any client passes the barrier
        clock.update(began=time.perf_counter(), cpu=time.process_time())
        clock["deadline"] = clock["began"] + options.seconds

    start = threading.Barrier(clients + 1, action=start_clock)

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        _send(connection, headers[index], request_of(index, -1))
        start.wait()
        sent = 0
        while time.perf_counter() < clock["deadline"] and (not options.requests or sent < options.requests):
            request = request_of(index, sent)
            began = time.perf_counter()
            try:
                status, location = _send(connection, headers[index], request)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()  # reconnects on the next request
                status, location = type(exc).__name__, None
            if status == request[3]:
                results[index].latencies.append(time.perf_counter() - began)
                if on_created is not None and location:
                    on_created(index, location.rsplit("/", 1)[-1])
            else:
                results[index].errors[str(status)] += 1
            sent += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    start.wait(timeout=60)
    for thread in threads:
        thread.join()
    total = Result(seconds=time.perf_counter() - clock["began"], cpu_seconds=time.process_time() - clock["cpu"])
    for result in results:
        total.latencies += result.latencies
        total.errors += result.errors
    return total


def _send(connection: http.client.HTTPConnection, headers: dict, request: Request) -> tuple[int, str | None]:
    method, path, body, _expected = request
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    response.read()  # the whole answer, so the connection can carry the next request
    return response.status, response.getheader("Location")


class ApiStack:
    """The API as `janusq serve` runs it, and the bare Flask app under the same gunicorn argv."""

    def __init__(self, settings: Settings, redis_url: str, postgres_url: str):
        self.user_settings, self.redis_url, self.postgres_url = settings, redis_url, postgres_url
        self.processes: list[subprocess.Popen] = []
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> "ApiStack":
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *_exc) -> None:
        self._exit.close()

    def _start(self) -> None:
        from janusq.cli import prepare_model
        from janusq.processes import gunicorn_argv, janusq_argv, stop_all
        from jobs.migrate import scratch_database

        prepare_model(self.user_settings)
        folder = Path(self._exit.enter_context(tempfile.TemporaryDirectory(prefix="janusq-bench-api-")))
        database_url = self._exit.enter_context(scratch_database(self.postgres_url, "janusq_bench"))
        self.env = self._env(folder, database_url)
        self.settings = load_settings(**{k[len("JANUS_"):].lower(): v for k, v in self.env.items()
                                         if k.startswith("JANUS_")})
        self.key_ids: list[str] = []
        self._exit.callback(lambda: forget_redis_keys(self.redis_url, self.key_ids))
        self._exit.callback(lambda: stop_all(self.processes))
        bare = self.settings.model_copy(update={"port": free_port()})
        self.ports = {"api": self.settings.port, "bare": bare.port}
        self._spawn(janusq_argv("serve"), folder / "api.log")
        self._spawn(gunicorn_argv(bare, app=BARE_APP), folder / "bare.log")
        self._wait_until_answering(folder)
        self.description = {"job_type": "generate", "database": "postgresql", "auth": "on",
                            "tenants": "one API key each client, new ones each round",
                            "api_workers": self.settings.api_workers, "api_threads": self.settings.api_threads,
                            "model": self.user_settings.model}

    def _env(self, folder: Path, database_url: str) -> dict[str, str]:
        janus = {"JANUS_DATA_DIR": str(folder), "JANUS_DATABASE_URL": database_url,
                 "JANUS_BROKER_URL": self.redis_url, "JANUS_STORAGE_URL": f"file://{folder / 'storage'}",
                 "JANUS_RATE_LIMIT_REDIS_URL": "", "JANUS_MODEL": self.user_settings.model_source,
                 "JANUS_HOST": HOST, "JANUS_PORT": str(free_port()), "JANUS_AUTH": "on",
                 "JANUS_RATE_LIMIT_PER_MINUTE": str(NO_LIMIT), "JANUS_MAX_UNFINISHED_JOBS": str(NO_LIMIT)}
        return {**os.environ, **janus, "PYTHONUNBUFFERED": "1"}

    def new_clients(self, count: int) -> list[dict]:
        """Request headers for `count` clients, each with a new API key of a tenant of its own."""
        from jobs import keys
        from jobs.db import Database

        with Database(self.settings.database, pooled=False).session() as session:
            made = [keys.create_key(session, f"bench-{len(self.key_ids) + n}") for n in range(count)]
            self.key_ids += [key.record.id for key in made]
        return [{"Authorization": f"Bearer {key.secret}", "Content-Type": "application/json"} for key in made]

    def _spawn(self, argv: list[str], log_path: Path) -> None:
        with open(log_path, "ab") as log_file:
            self.processes.append(subprocess.Popen(argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                                   start_new_session=True))

    def _wait_until_answering(self, folder: Path, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for port, path in ((self.ports["api"], "/readyz"), (self.ports["bare"], "/bare")):
            while not _answers_200(port, path):
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                                     for p in sorted(folder.glob("*.log")))
                    raise RuntimeError(f"bench stack did not start:\n{logs}")
                time.sleep(0.2)

    def port_of(self, path: str) -> int:
        return self.ports["bare" if path == "bare" else "api"]

    def server_cpu_seconds(self, path: str) -> float | None:
        """CPU time so far of the gunicorn serving `path`; None where /proc cannot tell."""
        master = self.processes[1 if path == "bare" else 0].pid  # `janusq serve` execs gunicorn
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
            return sum(_cpu_seconds(int(pid)) for pid in [master, *children])
        except (OSError, ValueError):
            return None

    def submit_one(self, headers: dict) -> str:
        connection = http.client.HTTPConnection(HOST, self.ports["api"], timeout=30)
        try:
            status, location = _send(connection, headers, ("POST", "/v1/jobs", SUBMIT_BODY, 202))
        finally:
            connection.close()
        if status != 202 or not location:
            raise RuntimeError(f"a bench submit was answered {status}")
        return location.rsplit("/", 1)[-1]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answers_200(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def forget_redis_keys(redis_url: str, key_ids: list[str]) -> None:
    """The bench's messages (nobody consumes them) and its keys' rate-limit counters."""
    import redis

    from api.ratelimit import REDIS_PREFIX
    from jobs.settings import QUEUES

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3)
    bindings = [f"_kombu.{kind}.{queue}" for kind in ("binding", "binding_permanent") for queue in QUEUES]
    client.delete(*QUEUES, *bindings, *(REDIS_PREFIX + key_id for key_id in key_ids))
    client.close()


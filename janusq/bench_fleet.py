"""`janusq bench --fleet`: W simulated workers behind the real API, PostgreSQL, Redis and S3.

For each W in --workers: a fresh stack (janusq/fleet_stack.py), a Poisson stream of mixed jobs
through the HTTP API for --duration seconds at `--overload` times what W workers finish when each
runs every job alone (so queues form and the workers stay busy), then a wait until every
accepted job has ended. One JSON line per run (janusq/fleet_report.py says what each figure is).

--faults: at 40 % of the offer a quarter of the workers are SIGKILLed with their pool processes
(the supervisor restarts them; their running jobs come back when their leases expire), and at
60 % the stack's own redis-server is killed and restarted empty (the sweeper publishes the
lost messages again).
"""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from janusq import fleet_load
from janusq.fleet_report import Observed, report
from janusq.fleet_stack import FleetStack, StackOptions, children_of
from jobs.oneline import first_line

log = logging.getLogger("janusq.bench")

# Short delivery clocks, so a fault run recovers within the run (defaults: 60 s leases, 30 s).
WORKER_ENV = {"JANUS_LEASE_SECONDS": "30", "JANUS_REQUEUE_AFTER": "15", "JANUS_SWEEP_INTERVAL": "2",
              "JANUS_RETRY_BACKOFF": "1"}
PROGRESS_INTERVAL, HEARTBEAT_SECONDS = 0.5, 5.0  # the settings' defaults, stretched by the scale


def worker_env(scale: float) -> dict[str, str]:
    """What the bench's workers run with. The progress and heartbeat clocks stretch with the
    model's time scale, so that a job causes the writes it causes at full speed (a 1 s job, two
    progress writes), not `scale` times as many."""
    return {**WORKER_ENV, "JANUS_PROGRESS_INTERVAL": f"{min(60.0, PROGRESS_INTERVAL * scale):g}",
            "JANUS_HEARTBEAT_SECONDS": f"{min(300.0, HEARTBEAT_SECONDS * scale):g}"}


KILL_AT, REDIS_RESTART_AT = 0.4, 0.6


@dataclass(frozen=True)
class FleetOptions:
    workers: tuple[int, ...]
    duration: float
    faults: bool
    profile: str
    scale: float
    overload: float
    storage: str
    keep_logs: str | None = None
    seed: int = 1


def add_arguments(parser) -> None:
    parser.add_argument("--workers", default="1,4,16,64", help="fleet sizes, one run each (1,4,16,64)")
    parser.add_argument("--duration", type=float, default=60, help="seconds of offered load per run (60)")
    parser.add_argument("--faults", action="store_true",
                        help="SIGKILL a quarter of the workers mid-run and restart Redis once")
    parser.add_argument("--profile", default="h100-janus-1.3b", help="the simulated model's profile")
    parser.add_argument("--scale", type=float, default=10, help="the simulated model's time scale (10)")
    parser.add_argument("--overload", type=float, default=1.5,
                        help="offered rate / what the workers finish running each job alone (1.5)")
    parser.add_argument("--storage", choices=("s3", "local"), default="s3",
                        help="s3: moto's server, versioned, so a twice-written image shows (default)")
    parser.add_argument("--keep-logs", metavar="DIR", help="keep each run's logs (api, workers, redis, s3) under DIR")


def main(args) -> int:
    try:
        sizes = tuple(int(part) for part in args.workers.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1 or args.duration <= 0 or args.overload <= 0:
        print("janusq: bench --fleet needs --workers like 1,4,16 (each >= 1), --duration > 0, --overload > 0",
              file=sys.stderr)
        return 2
    options = FleetOptions(sizes, args.duration, args.faults, args.profile, args.scale, args.overload, args.storage,
                           args.keep_logs)
    from janus_model.simulated import parse_spec

    try:
        parse_spec(model_of(options))
    except ValueError as exc:
        print(f"janusq: {exc}", file=sys.stderr)
        return 2
    for workers in options.workers:
        try:
            line = run(options, workers)
        except (TimeoutError, OSError, subprocess.CalledProcessError, _database_error()) as exc:
            print(f"janusq: bench --fleet with {workers} workers: {first_line(exc)}",
                  file=sys.stderr)
            return 1
        print(json.dumps(line), flush=True)
    return 0


def _database_error() -> type[Exception]:
    import psycopg

    return psycopg.Error


def model_of(options: FleetOptions) -> str:
    return f"simulated:{options.profile}?scale={options.scale:g}"


def run(options: FleetOptions, workers: int) -> dict:
    from janus_model.simulated import parse_spec

    profile = parse_spec(model_of(options)).profile
    rate = options.overload * workers / fleet_load.expected_job_seconds(profile, options.scale)
    arrivals = fleet_load.poisson_arrivals(rate, options.duration, seed=options.seed)
    with tempfile.TemporaryDirectory(prefix="janusq-fleet-") as folder:
        if options.keep_logs:
            name = f"w{workers}-scale{options.scale:g}{'-faults' if options.faults else ''}-{int(time.time())}"
            folder = str(Path(options.keep_logs) / name)
            Path(folder).mkdir(parents=True, exist_ok=True)
        stack_options = StackOptions(workers, model_of(options), options.storage, worker_env(options.scale))
        started = time.monotonic()
        with FleetStack(stack_options, Path(folder)) as stack:
            wait_for_workers(stack, workers, timeout=60 + 3 * workers)
            log.info("the stack and %d workers ready in %.1f s; offering %.2f jobs/s for %.0f s", workers,
                     time.monotonic() - started, rate, options.duration)
            observed = observe(stack, options, arrivals)
            return report(observed, workers=workers, profile=profile, model=model_of(options), rate=rate,
                          options=options)


def observe(stack: FleetStack, options: FleetOptions, arrivals: list) -> Observed:
    """Offers the load (with the faults, if asked), waits for the end, and collects what happened."""
    sampler = Sampler(stack)
    sampler.start()
    cpu = CpuMeter(stack)
    faults = [threading.Timer(options.duration * KILL_AT, kill_quarter, (stack,)),
              threading.Timer(options.duration * REDIS_RESTART_AT, stack.restart_redis)] if options.faults else []
    memory = threading.Timer(options.duration / 2, sampler.sample_memory)
    commits_before = sampler.commits()
    for timer in [*faults, memory]:
        timer.start()
    offered = fleet_load.offer(stack.api_url, arrivals)
    commits_after = sampler.commits()
    cores = cpu.cores()
    for timer in faults:
        timer.join()
    waited = wait_for_jobs(stack, list(offered.accepted), timeout=max(120.0, options.duration * 3))
    sampler.stop()
    return Observed(offered=offered, rows=job_rows(stack, list(offered.accepted)), waited_s=waited,
                    commits=commits_after - commits_before, peak_db_connections=sampler.peak_db,
                    peak_server_connections=sampler.peak_server, max_connections=sampler.max_connections,
                    memory=sampler.memory, stored_versions=stored_versions(stack),
                    lost_race_jobs=lost_race_jobs(stack), killed=stack.killed, cores=cores)


def wait_for_workers(stack: FleetStack, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with stack.admin_connection() as connection:
        while True:
            ready = connection.execute("SELECT count(*) FROM workers WHERE state = 'running'").fetchone()[0]
            if ready >= count:
                return
            if time.monotonic() > deadline or stack.supervisor.poll() is not None:
                raise TimeoutError(f"{ready} of {count} workers ready after {timeout:.0f} s "
                                   f"(see {stack.folder / 'workers.log'})")
            time.sleep(0.5)


def wait_for_jobs(stack: FleetStack, ids: list[str], timeout: float) -> float:
    """Seconds until every accepted job has ended (or the timeout: the rest count as lost)."""
    started = time.monotonic()
    with stack.admin_connection() as connection:
        while time.monotonic() - started < timeout:
            open_jobs = connection.execute(
                "SELECT count(*) FROM jobs WHERE status NOT IN ('succeeded', 'failed', 'canceled')").fetchone()[0]
            known = connection.execute("SELECT count(*) FROM jobs").fetchone()[0]
            if open_jobs == 0 and known >= len(ids):
                break
            time.sleep(0.5)
    return time.monotonic() - started


def job_rows(stack: FleetStack, ids: list[str]) -> list[dict]:
    with stack.admin_connection() as connection:
        cursor = connection.execute(
            "SELECT id, type, status, attempts, worker, params, result, created_at, started_at, finished_at "
            "FROM jobs WHERE id = ANY(%s)", (ids,))
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def kill_quarter(stack: FleetStack) -> None:
    """SIGKILL a quarter of the workers (each with its pool process); the supervisor restarts them."""
    children = worker_processes(stack.supervisor.pid)
    victims = children[: max(1, math.ceil(len(children) / 4))]
    for pid in victims:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stack.killed = victims
    log.info("killed workers %s", victims)


def worker_processes(supervisor_pid: int) -> list[int]:
    """The workers' main processes (each leads its own process group, with its pool process)."""
    return children_of(supervisor_pid)


def stored_versions(stack: FleetStack) -> dict[str, int]:
    """Result image key -> versions written (moto's bucket is versioned); {} with local storage."""
    if stack.options.storage != "s3":
        return {}
    counts: dict[str, int] = {}
    paginator = stack.s3_client().get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket="janus-fleet", Prefix="results/jobs/"):
        for version in page.get("Versions", []):
            if version["Key"].endswith(".png"):
                counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


def lost_race_jobs(stack: FleetStack) -> set[str]:
    """Jobs a worker ran to the end after another attempt had taken them (it logs that, and
    writes nothing): the run happened twice even though the result was written once."""
    path = stack.folder / "workers.log"
    marker = "is no longer this worker's attempt"
    text = path.read_text(errors="replace") if path.exists() else ""
    return {line.split(" job ", 1)[1].split()[0] for line in text.splitlines() if marker in line and " job " in line}


class CpuMeter:
    """CPU time of each part of the stack over the offer, in cores (CPU seconds per second).
    `postgres` counts every PostgreSQL process on the machine (the server is shared); `machine`
    is the whole machine's busy share times its cores; processes that exited meanwhile (killed
    workers) are missing."""

    def __init__(self, stack: FleetStack):
        self.stack, self.started = stack, time.monotonic()
        self.before, self.machine_before = self._snapshot(), _machine_busy()

    def _roles(self) -> dict[str, list[int]]:
        mains = worker_processes(self.stack.supervisor.pid)
        processes = self.stack.processes
        return {"api": _tree(processes["api"].pid), "worker_main": mains,
                "worker_pool": [child for pid in mains for child in children_of(pid)],
                "supervisor": [self.stack.supervisor.pid], "redis": _tree(processes["redis"].pid),
                "s3": _tree(processes["s3"].pid) if "s3" in processes else [],
                "postgres": _named("postgres"), "bench": [os.getpid()]}

    def _snapshot(self) -> dict[str, dict[int, float]]:
        return {role: {pid: _cpu_seconds(pid) for pid in pids} for role, pids in self._roles().items()}

    def cores(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.started
        after = self._snapshot()
        used = {role: sum(max(0.0, seconds - self.before[role].get(pid, 0.0)) for pid, seconds in pids.items())
                for role, pids in after.items()}
        result = {role: round(seconds / elapsed, 2) for role, seconds in used.items()}
        result["machine"] = round((_machine_busy() - self.machine_before) / elapsed, 2)
        return result


def _tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        pending.extend(children_of(current))
    return found


def _named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _machine_busy() -> float:
    """CPU seconds the whole machine was busy (all cores) since boot."""
    values = [int(part) for part in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Database connections every half second, commits on demand, worker memory once."""

    def __init__(self, stack: FleetStack):
        super().__init__(daemon=True)
        self.stack = stack
        self.peak_db = self.peak_server = 0
        self.memory: dict = {}
        self._stop_event = threading.Event()
        with stack.admin_connection() as connection:
            self.max_connections = int(connection.execute("SHOW max_connections").fetchone()[0])

    def run(self) -> None:
        with self.stack.admin_connection() as connection:
            while not self._stop_event.wait(0.5):
                ours, everyone = connection.execute(
                    "SELECT count(*) FILTER (WHERE datname = current_database()), count(*) "
                    "FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()
                self.peak_db, self.peak_server = max(self.peak_db, ours - 1), max(self.peak_server, everyone)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def commits(self) -> int:
        with self.stack.admin_connection() as connection:
            return connection.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]

    def sample_memory(self) -> None:
        """RSS and PSS of every worker (its Celery main process and pool process), in MB."""
        per_worker_rss, total_pss = [], 0.0
        for pid in worker_processes(self.stack.supervisor.pid):
            family = [pid, *children_of(pid)]
            per_worker_rss.append(sum(_memory_kb(member, "Rss") for member in family) / 1024)
            total_pss += sum(_memory_kb(member, "Pss") for member in family) / 1024
        if per_worker_rss:
            self.memory = {"worker_rss_mb": round(sum(per_worker_rss) / len(per_worker_rss), 1),
                           "workers_pss_mb": round(total_pss, 1)}


def _memory_kb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0

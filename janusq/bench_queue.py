"""`janusq bench --queue`: what the queue adds to a job, on the embedded broker and on Redis.

For each broker it starts a real worker (`janusq worker`, tiny model) on a throwaway data folder,
then submits small understand jobs the way the API does (row committed, then message published):
first one at a time, each after the previous finished, for the dispatch latency (commit ->
worker start, i.e. created_at -> started_at), then a burst, for the back-to-back gap (one batch
finishing -> the next starting on the same worker). Prints one JSON line per broker.

The Redis run publishes to the `understand` queue of --redis-url: give it a Redis database no
real worker listens on (the default is database 15 on localhost).
"""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from jobs.settings import Settings, load_settings

log = logging.getLogger("janusq.bench")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
INPUT_KEY = "bench/input.png"
JOB_TYPE = "understand"
FINISHED = ("succeeded", "failed", "canceled")


@dataclass(frozen=True)
class Options:
    jobs: int = 20  # one at a time
    burst: int = 20  # all at once
    max_batch: int = 1  # 1: every job its own batch, so every hop between jobs is measured
    max_new_tokens: int = 1
    timeout: float = 120.0  # per wait, worker start included


def add_arguments(parser) -> None:
    parser.add_argument("--jobs", type=int, default=Options.jobs, help="jobs submitted one at a time (20)")
    parser.add_argument("--burst", type=int, help="jobs submitted at once (default: --jobs)")
    parser.add_argument("--brokers", default="embedded,redis", help="comma-separated: embedded,redis")
    parser.add_argument("--redis-url", default=None,
                        help=f"a Redis database no real worker uses (--queue: {DEFAULT_REDIS_URL}; "
                             "--api: redis://127.0.0.1:6379/14)")
    parser.add_argument("--database-url", default="",
                        help="database of the redis run (an empty one, e.g. PostgreSQL); default: SQLite")
    parser.add_argument("--max-batch", type=int, default=Options.max_batch,
                        help="the worker's JANUS_MAX_BATCH_ANSWERS (1: one job per batch)")


def main(settings: Settings, args) -> int:
    options = Options(jobs=args.jobs, burst=args.jobs if args.burst is None else args.burst,
                      max_batch=args.max_batch)
    brokers = [name.strip() for name in args.brokers.split(",") if name.strip()]
    unknown = sorted(set(brokers) - {"embedded", "redis"})
    if unknown or not brokers or options.jobs < 2 or options.burst < 2 or options.max_batch < 1:
        print("janusq: bench --queue needs --brokers from embedded,redis, --jobs/--burst >= 2, --max-batch >= 1",
              file=sys.stderr)
        return 2
    from jobs.queue import BrokerUnavailable

    for broker in brokers:
        broker_url = "" if broker == "embedded" else (args.redis_url or DEFAULT_REDIS_URL)
        database_url = args.database_url if broker == "redis" else ""
        try:
            line = measure(broker, broker_url, database_url, options, model=settings.model)
        except (BrokerUnavailable, TimeoutError) as exc:
            print(f"janusq: bench --queue ({broker}): {exc}", file=sys.stderr)
            return 1
        print(json.dumps(line), flush=True)
    return 0


def measure(broker: str, broker_url: str, database_url: str, options: Options, model: str = "tiny") -> dict:
    """Starts a worker on a fresh data folder, runs the two phases, stops the worker."""
    with tempfile.TemporaryDirectory(prefix="janusq-bench-") as folder:
        env = {"JANUS_DATA_DIR": folder, "JANUS_BROKER_URL": broker_url, "JANUS_DATABASE_URL": database_url,
               "JANUS_STORAGE_URL": "", "JANUS_MODEL": model, "JANUS_MAX_BATCH_ANSWERS": str(options.max_batch)}
        settings = load_settings(**{key[len("JANUS_"):].lower(): value for key, value in env.items()})
        _prepare(settings)
        worker = _start_worker(env, Path(folder) / "worker.log")
        bench = _Bench(settings, options)
        try:
            started = time.monotonic()
            bench.one_at_a_time(1)  # waits out the worker's start and warms the model
            sequential = bench.one_at_a_time(options.jobs)
            burst = bench.burst(options.burst)
            if broker_url:  # a shared Redis: leave no stale messages behind (the SQLite broker goes away)
                bench.wait_for_empty_queue()
            seconds = time.monotonic() - started
        except Exception:
            log.error("worker log:\n%s", (Path(folder) / "worker.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            _stop(worker)
            bench.close()
        return report(broker, settings, options, bench.rows(sequential), bench.rows(burst), seconds)


def report(broker: str, settings: Settings, options: Options, sequential: list, burst: list, seconds: float) -> dict:
    dispatch = [_ms(row.started_at - row.created_at) for row in sequential if row.started_at]
    gaps = back_to_back_gaps(burst)
    failed = sum(row.status != "succeeded" for row in [*sequential, *burst])
    return {
        "bench": "queue", "broker": broker, "database": urlparse(settings.database).scheme.split("+")[0],
        "model": settings.model, "job_type": JOB_TYPE, "max_batch": options.max_batch,
        "sequential_jobs": len(sequential), "burst_jobs": len(burst), "failed_jobs": failed,
        "dispatch_p50_ms": percentile(dispatch, 50), "dispatch_p99_ms": percentile(dispatch, 99),
        "dispatch_max_ms": _round(max(dispatch, default=None)),
        "gap_p50_ms": percentile(gaps, 50), "gap_p99_ms": percentile(gaps, 99),
        "gap_max_ms": _round(max(gaps, default=None)), "gaps": len(gaps),
        "run_p50_ms": percentile([_ms(row.finished_at - row.started_at) for row in burst if row.finished_at], 50),
        "seconds": round(seconds, 2),
    }


def back_to_back_gaps(rows: list) -> list[float]:
    """ms from one batch's last finish to the next batch's start, where the next one's jobs were
    already queued by then (a job submitted after the worker went idle is dispatch, not a gap)."""
    batches: dict[str, list] = {}
    for row in rows:
        if row.started_at and row.finished_at:
            batches.setdefault(((row.result or {}).get("batch") or {}).get("id") or row.id, []).append(row)
    spans = sorted((min(r.started_at for r in b), max(r.finished_at for r in b), min(r.created_at for r in b))
                   for b in batches.values())
    return [_ms(start - previous_end) for (_, previous_end, _), (start, _, created) in zip(spans, spans[1:])
            if created <= previous_end]


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return _round(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


class _Bench:
    """Submits jobs the way the API does and waits for them in the database."""

    def __init__(self, settings: Settings, options: Options):
        from jobs.db import Database
        from jobs.queue import Publisher, make_celery

        self.settings, self.options = settings, options
        self.db = Database(settings.database)
        self.publisher = Publisher(settings)
        self.celery = make_celery(settings, name="janusq-bench")

    def submit(self) -> str:
        from jobs import service

        params = {"question": "What is in the picture?", "max_new_tokens": self.options.max_new_tokens,
                  "temperature": 0.0, "top_p": 0.95, "seed": 0}
        with self.db.session() as session:
            job_id = service.add_job(session, JOB_TYPE, params, input_key=INPUT_KEY).id
        self.publisher.publish(job_id, JOB_TYPE)
        return job_id

    def one_at_a_time(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            ids.append(self.submit())
            self.wait([ids[-1]])
        return ids

    def burst(self, count: int) -> list[str]:
        ids = [self.submit() for _ in range(count)]
        self.wait(ids)
        return ids

    def wait(self, ids: list[str]) -> None:
        from sqlalchemy import select

        from jobs.models import Job

        deadline = time.monotonic() + self.options.timeout
        pending = set(ids)
        while pending:
            with self.db.session() as session:
                done = session.execute(select(Job.id).where(Job.id.in_(pending), Job.status.in_(FINISHED))).scalars()
                pending -= set(done)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} bench jobs unfinished after {self.options.timeout:.0f} s")
            time.sleep(0.005 if pending else 0)

    def wait_for_empty_queue(self, timeout: float = 10) -> None:
        """The burst leaves messages of jobs that rode along in batches; let the worker drop them."""
        from amqp.exceptions import ChannelError

        deadline = time.monotonic() + timeout
        with self.celery.connection_for_write() as connection:
            channel = connection.default_channel
            while time.monotonic() < deadline:
                try:
                    if not channel.queue_declare(JOB_TYPE, passive=True).message_count:
                        return
                except ChannelError:  # Redis drops an empty list: no queue left is an empty queue
                    return
                time.sleep(0.05)

    def rows(self, ids: list[str]) -> list:
        from sqlalchemy import select

        from jobs.models import Job

        with self.db.session() as session:
            return list(session.execute(select(Job).where(Job.id.in_(ids))).scalars())

    def close(self) -> None:
        if self.db._engine is not None:
            self.db._engine.dispose()


def _prepare(settings: Settings) -> None:
    from PIL import Image

    from janusq.cli import prepare_model
    from jobs.migrate import upgrade
    from jobs.storage import open_storage

    upgrade(settings.database)
    prepare_model(settings)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buffer, format="PNG")
    open_storage(settings.storage).put(INPUT_KEY, buffer.getvalue(), "image/png")


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    from janusq.processes import janusq_argv

    with open(log_path, "ab") as log_file:
        return subprocess.Popen(janusq_argv("worker", f"--queues={JOB_TYPE}"), env={**os.environ, **env},
                                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(worker: subprocess.Popen) -> None:
    from janusq.processes import stop_all

    stop_all([worker])


def _ms(delta) -> float:
    return delta.total_seconds() * 1000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

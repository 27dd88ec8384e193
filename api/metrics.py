"""Prometheus metrics read from the database at scrape time.

The jobs are submitted by many API processes and run by workers on other machines; the
database is the one place that sees them all, so every figure comes from there rather than
from per-process counters. That holds for what the workers observe too (batch sizes, queue
waits): prometheus-client's multiprocess mode only merges processes that share a folder with
the API, which workers on other hosts or pods do not, and a Pushgateway would be one more part
to run. The workers already write what these need (a row per batch started, each job's
timestamps, a heartbeat row each), so the API aggregates those rows. Every histogram counts
only rows that no longer change, so its counts never go down between scrapes.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString
from sqlalchemy import Float, case, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from jobs import states
from jobs.db import Database
from jobs.models import DeletedJobCount, Job, WorkerBatch, utcnow
from jobs.settings import QUEUES
from jobs.workers import STATUSES, count_by_status, list_workers

RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class seconds_between(FunctionElement):  # noqa: N801 - used like a SQL function
    """Seconds from one timestamp column to another, in SQL, on PostgreSQL and SQLite."""

    type = Float()
    inherit_cache = True


@compiles(seconds_between, "postgresql")
def _seconds_between_postgresql(element, compiler, **kw):
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXTRACT(EPOCH FROM ({end} - {start}))"


@compiles(seconds_between, "sqlite")
def _seconds_between_sqlite(element, compiler, **kw):
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


class JobTableCollector:
    def __init__(self, db: Database):
        self.db = db

    def collect(self):
        with self.db.session() as session:
            counts = session.execute(
                select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)).all()
            # Deleted jobs still count as submitted (and finished): counters must never fall.
            deleted = session.execute(select(DeletedJobCount.type, DeletedJobCount.status,
                                             DeletedJobCount.count)).all()
            oldest = session.execute(
                select(Job.type, func.min(Job.created_at)).where(Job.status == states.QUEUED)
                .group_by(Job.type)).all()
            run = _histogram_rows(session, Job.type, Job.run_seconds, RUN_BUCKETS)
            step = _histogram_rows(session, Job.type, Job.step_seconds, STEP_BUCKETS)
            # Finished jobs only: a started job that is requeued starts again later, and its wait
            # would move between buckets; a finished job's wait is final.
            wait = _histogram_rows(session, Job.type, seconds_between(Job.created_at, Job.started_at),
                                   QUEUE_WAIT_BUCKETS, Job.status.in_(sorted(states.TERMINAL)))
            sizes = _histogram_rows(session, WorkerBatch.type, WorkerBatch.size, BATCH_SIZE_BUCKETS)
            workers = count_by_status(list_workers(session))
        yield from _count_metrics(counts, deleted)
        yield _oldest_queued(oldest)
        yield _histogram("janus_job_run_seconds", "Run time of finished jobs", run, RUN_BUCKETS)
        yield _histogram("janus_decode_step_seconds", "Mean decode step time per finished job", step, STEP_BUCKETS)
        yield _histogram("janus_queue_wait_seconds", "Seconds from creation to start, of finished jobs that ran",
                         wait, QUEUE_WAIT_BUCKETS)
        yield _histogram("janus_batch_size", "Rows per batch a worker started: images (generate) or "
                         "answers (understand)", sizes, BATCH_SIZE_BUCKETS)
        yield _worker_metric(workers)


def _count_metrics(live, deleted):
    """Counters from the live rows plus the deleted ones' tallies (so they never fall); the
    gauges (queued, running) from the live rows alone."""
    submitted = CounterMetricFamily("janus_jobs_submitted", "Jobs accepted, by type", labels=["type"])
    finished = CounterMetricFamily("janus_jobs_finished", "Jobs finished, by type and status",
                                   labels=["type", "status"])
    depth = GaugeMetricFamily("janus_queue_depth", "Jobs waiting for a worker, by type", labels=["type"])
    running = GaugeMetricFamily("janus_jobs_running", "Jobs being run, by type", labels=["type"])
    now, ever = _by_state(live), _by_state([*live, *deleted])
    for job_type in QUEUES:
        submitted.add_metric([job_type], sum(count for (kind, _), count in ever.items() if kind == job_type))
        depth.add_metric([job_type], now.get((job_type, states.QUEUED), 0))
        running.add_metric([job_type], now.get((job_type, states.RUNNING), 0))
        for status in sorted(states.TERMINAL):
            finished.add_metric([job_type, status], ever.get((job_type, status), 0))
    return submitted, finished, depth, running


def _by_state(rows) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for job_type, status, count in rows:
        counts[(job_type, status)] = counts.get((job_type, status), 0) + count
    return counts


def _oldest_queued(rows):
    metric = GaugeMetricFamily("janus_queue_oldest_age_seconds",
                               "Age of the oldest queued job, by type (0 when none is queued)", labels=["type"])
    now, oldest = utcnow(), dict(rows)
    for job_type in QUEUES:
        created = oldest.get(job_type)
        metric.add_metric([job_type], max(0.0, (now - created).total_seconds()) if created else 0.0)
    return metric


def _worker_metric(counts: dict[str, int]):
    metric = GaugeMetricFamily("janus_workers", "Workers by status, from their heartbeat rows: starting (loading "
                               "the model), busy (running a batch), idle, draining, gone (stopped beating), "
                               "stopped", labels=["status"])
    for status in STATUSES:
        metric.add_metric([status], counts[status])
    return metric


def _histogram_rows(session, type_column, value, buckets, *where):
    """One SQL pass: per type, the count at or under each bucket, the total and the sum."""
    le_counts = [func.sum(case((value <= bound, 1), else_=0)) for bound in buckets]
    query = (select(type_column, func.count(value), func.sum(value), *le_counts)
             .where(value.is_not(None), *where).group_by(type_column))
    return session.execute(query).all()


def _histogram(name, documentation, rows, buckets):
    metric = HistogramMetricFamily(name, documentation, labels=["type"])
    for job_type, count, total, *le_counts in rows:
        # Bounds written as prometheus-client writes its own (le="4.0"), so queries match either.
        cumulative = [(floatToGoString(bound), int(n or 0)) for bound, n in zip(buckets, le_counts)]
        metric.add_metric([job_type], cumulative + [("+Inf", int(count))], sum_value=float(total or 0))
    return metric


def render_metrics(db: Database) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobTableCollector(db))
    return generate_latest(registry)

"""Prometheus metrics read from the job table at scrape time.

The jobs are submitted by many API processes and finished by workers on other machines;
the database is the one place that sees them all, so the figures come from there rather
than from per-process counters.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import case, func, select

from jobs import states
from jobs.db import Database
from jobs.models import Job

RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class JobTableCollector:
    def __init__(self, db: Database):
        self.db = db

    def collect(self):
        with self.db.session() as session:
            counts = session.execute(
                select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)).all()
            run = _histogram_rows(session, Job.run_seconds, RUN_BUCKETS)
            step = _histogram_rows(session, Job.step_seconds, STEP_BUCKETS)
        yield from _count_metrics(counts)
        yield _histogram("janus_job_run_seconds", "Run time of finished jobs", run, RUN_BUCKETS)
        yield _histogram("janus_decode_step_seconds", "Mean decode step time per finished job", step, STEP_BUCKETS)


def _count_metrics(counts):
    submitted = CounterMetricFamily("janus_jobs_submitted", "Jobs accepted, by type", labels=["type"])
    finished = CounterMetricFamily("janus_jobs_finished", "Jobs finished, by type and status",
                                   labels=["type", "status"])
    depth = GaugeMetricFamily("janus_queue_depth", "Jobs waiting for a worker, by type", labels=["type"])
    running = GaugeMetricFamily("janus_jobs_running", "Jobs being run, by type", labels=["type"])
    totals: dict[str, int] = {}
    by_state: dict[tuple[str, str], int] = {}
    for job_type, status, count in counts:
        totals[job_type] = totals.get(job_type, 0) + count
        by_state[(job_type, status)] = count
    for job_type in ("generate", "understand"):
        submitted.add_metric([job_type], totals.get(job_type, 0))
        depth.add_metric([job_type], by_state.get((job_type, states.QUEUED), 0))
        running.add_metric([job_type], by_state.get((job_type, states.RUNNING), 0))
        for status in sorted(states.TERMINAL):
            finished.add_metric([job_type, status], by_state.get((job_type, status), 0))
    return submitted, finished, depth, running


def _histogram_rows(session, column, buckets):
    """One SQL pass: per type, the count at or under each bucket, the total and the sum."""
    le_counts = [func.sum(case((column <= bound, 1), else_=0)) for bound in buckets]
    query = (select(Job.type, func.count(column), func.sum(column), *le_counts)
             .where(column.is_not(None)).group_by(Job.type))
    return session.execute(query).all()


def _histogram(name, documentation, rows, buckets):
    metric = HistogramMetricFamily(name, documentation, labels=["type"])
    for job_type, count, total, *le_counts in rows:
        cumulative = [(str(bound), int(n or 0)) for bound, n in zip(buckets, le_counts)]
        metric.add_metric([job_type], cumulative + [("+Inf", int(count))], sum_value=float(total or 0))
    return metric


def render_metrics(db: Database) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobTableCollector(db))
    return generate_latest(registry)

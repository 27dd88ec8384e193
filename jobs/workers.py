"""Reading the heartbeat rows (jobs/heartbeat.py writes them): who is there and what each does.

A worker's status is judged by its reader at read time, never stored: a dead worker cannot
write that it died. Silent for more than GONE_AFTER_BEATS of its own beat interval, it is
`gone`. Judging compares the worker's clock (its last beat) with the reader's, so the
machines' clocks must agree to well within that window, as leases already require.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from jobs.heartbeat import DRAINING, STARTING, STOPPED
from jobs.models import Worker, utcnow

GONE_AFTER_BEATS = 3
# starting: loading its model; busy: running a batch; idle: waiting for one; draining: finishing
# its batch before it stops; gone: stopped beating without saying goodbye (killed, hung, cut
# off); stopped: shut down cleanly.
STATUSES = ("starting", "busy", "idle", "draining", "gone", "stopped")


def status_of(worker: Worker, now: datetime) -> str:
    if worker.state == STOPPED:
        return "stopped"
    if now - worker.last_seen_at > timedelta(seconds=GONE_AFTER_BEATS * worker.beat_seconds):
        return "gone"
    if worker.state in (STARTING, DRAINING):
        return worker.state
    return "busy" if worker.batch else "idle"


def list_workers(session: Session) -> list[Worker]:
    return list(session.execute(select(Worker).order_by(Worker.host, Worker.name)).scalars())


def count_by_status(workers: list[Worker], now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    counts = dict.fromkeys(STATUSES, 0)
    for worker in workers:
        counts[status_of(worker, now)] += 1
    return counts


def worker_to_dict(worker: Worker, now: datetime | None = None) -> dict:
    """The worker as `janusq workers --json` and GET /v1/workers show it (WorkerOut)."""
    now = now or utcnow()
    return {
        "name": worker.name,
        "status": status_of(worker, now),
        "host": worker.host,
        "pid": worker.pid,
        "device": worker.device,
        "model": worker.model,
        "queues": list(worker.queues or []),
        "started_at": _iso(worker.started_at),
        "last_seen_at": _iso(worker.last_seen_at),
        "seconds_since_seen": round(max(0.0, (now - worker.last_seen_at).total_seconds()), 3),
        "heartbeat_seconds": worker.beat_seconds,
        "stopped_at": _iso(worker.stopped_at),
        # For a gone worker: the batch it ran when last heard from (the sweeper requeues those jobs).
        "batch": _batch(worker.batch),
    }


def _batch(batch: dict | None) -> dict | None:
    if not batch:
        return None
    return {"id": batch["id"], "type": batch["type"], "jobs": list(batch["jobs"]),
            "size": int(batch["size"]), "started_at": batch["started_at"]}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None

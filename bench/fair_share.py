#!/usr/bin/env python3
"""Fair share (issue 13): does one tenant's burst hold back another tenant's single job?

A fresh stack (janusq/fleet_stack.py: a scratch PostgreSQL database, its own redis-server, the
API under gunicorn with auth on, W simulated workers), two tenants. Tenant A submits --burst jobs
at once; when all are accepted, tenant B submits one. Figures:

- b_wait_s: from B's job being accepted to a worker claiming it;
- batches_between: batches any worker started after B's job arrived and before it started
  (0: it went into the next batch; the claim order lets tenants take turns, worker/claims.py);
- a_queued_at_arrival, jobs_per_batch, batch_s: what oldest-first claiming would have put ahead
  of B, hence fifo_wait_s = ceil(a_queued_at_arrival / jobs_per_batch) / workers * batch_s.

    .venv/bin/python bench/fair_share.py                  # 500 jobs of 4 images, 1 worker
    .venv/bin/python bench/fair_share.py --workers 4 --json

JANUS_BENCH_POSTGRES names the PostgreSQL server (default: postgres@127.0.0.1:5432).
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select

from janusq.fleet_stack import FleetStack, StackOptions
from jobs import keys
from jobs.db import Database
from jobs.models import Job, WorkerBatch


class TenantStack(FleetStack):
    """The fleet bench's stack with auth on: each tenant's jobs are its API key's."""

    def env(self) -> dict[str, str]:
        return {**super().env(), "JANUS_AUTH": "on"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="janusq-fair-"))
    model = f"simulated:{args.profile}" + (f"?scale={args.scale:g}" if args.scale != 1 else "")
    options = StackOptions(workers=args.workers, model=model, storage="local",
                           worker_env={"JANUS_MAX_BATCH_IMAGES": str(args.batch_images)})
    with TenantStack(options, folder) as stack:
        figures = run(stack, args)
    shutil.rmtree(folder)  # kept when the run fails: the processes' logs are there
    figures.update(workers=args.workers, model=model, burst=args.burst, num_images=args.num_images,
                   batch_images=args.batch_images)
    print(json.dumps(figures) if args.json else "\n".join(f"{name}: {value}" for name, value in figures.items()))
    return 0


def run(stack: FleetStack, args) -> dict:
    db = Database(stack.database_url)
    try:
        a_key, b_key = (_key(db, tenant) for tenant in ("tenant-a", "tenant-b"))
        body = {"type": "generate", "prompt": "a burst", "num_images": args.num_images}
        started = time.monotonic()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda n: _submit(stack.api_url, a_key, {**body, "seed": n}), range(args.burst)))
        submit_s = time.monotonic() - started
        b_id = _submit(stack.api_url, b_key, {**body, "prompt": "a single job"})
        b = _wait_started(db, b_id, args.timeout)
        return {"submit_s": round(submit_s, 2), **_figures(db, b, args.workers)}
    finally:
        db.dispose()


def _key(db: Database, tenant: str) -> str:
    with db.session() as session:
        return keys.create_key(session, tenant, tenant).secret


def _submit(api_url: str, key: str, body: dict) -> str:
    request = urllib.request.Request(f"{api_url}/v1/jobs", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["id"]
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"the API refused a submit: {exc.code} {exc.read().decode(errors='replace')[:300]}") from None


def _wait_started(db: Database, job_id: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            job = session.get(Job, job_id)
            if job.started_at is not None:
                return job
        time.sleep(0.05)
    raise TimeoutError(f"tenant B's job {job_id} did not start within {timeout:g} s")


def _figures(db: Database, b: Job, workers: int) -> dict:
    with db.session() as session:
        a_queued = session.execute(select(func.count()).select_from(Job).where(
            Job.owner == "tenant-a", (Job.started_at.is_(None)) | (Job.started_at > b.created_at))).scalar_one()
        between = session.execute(select(func.count()).select_from(WorkerBatch).where(
            WorkerBatch.started_at > b.created_at, WorkerBatch.started_at < b.started_at)).scalar_one()
        sizes = list(session.execute(select(WorkerBatch.jobs)).scalars())
        runs = list(session.execute(select(Job.run_seconds).where(Job.run_seconds.is_not(None))).scalars())
    per_batch = max(sizes) if sizes else 1  # the first batches may be small: the burst was still arriving
    batch_s = statistics.median(runs) if runs else None
    fifo = math.ceil(a_queued / per_batch) / workers * batch_s if batch_s else None
    return {"b_wait_s": round((b.started_at - b.created_at).total_seconds(), 3), "batches_between": between,
            "a_queued_at_arrival": a_queued, "jobs_per_batch": per_batch,
            "batch_s": round(batch_s, 2) if batch_s else None, "fifo_wait_s": round(fifo, 1) if fifo else None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=500, help="tenant A's jobs, submitted at once")
    parser.add_argument("--num-images", type=int, default=4, choices=range(1, 17), metavar="1-16",
                        help="images per job")
    parser.add_argument("--batch-images", type=int, default=32, help="images per batch (JANUS_MAX_BATCH_IMAGES)")
    parser.add_argument("--workers", type=int, default=1, help="simulated workers")
    parser.add_argument("--profile", default="h200-janus-pro-7b", help="the simulated model's profile")
    parser.add_argument("--scale", type=float, default=1.0, help="stretch the simulated model's time")
    parser.add_argument("--clients", type=int, default=8, help="concurrent submitters of the burst")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for B's job to start")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    return parser


if __name__ == "__main__":
    sys.exit(main())

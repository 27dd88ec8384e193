"""Claiming a batch of queued jobs of one type, in claim order:

1. higher priority first (high, normal, low);
2. within a priority, tenants (jobs.owner) take turns: each queued job is ranked within its
   tenant by age (its turn), and a batch takes every tenant's first turn before anyone's second,
   so one tenant's burst of 500 jobs cannot starve another tenant's single job;
3. among jobs of one turn, the tenant whose last job started longest ago (or never) first, so
   that even batches of one job alternate between tenants; then the oldest first.

A message only says that work of its type is waiting: the batch it starts is the next one in
that order, with or without the job it names (that job keeps its place; every message claims at
least one job while any is queued, so none is stranded, and the sweeper publishes again what waits
long). Jobs past their deadline are never claimed (states.available): the sweeper expires them.

Every job is taken with the state machine's conditional UPDATE (queued -> running), so two
workers never hold the same job. On PostgreSQL the candidates are picked with
SELECT ... FOR UPDATE SKIP LOCKED, so concurrent workers look at different rows instead of
racing for the same ones; on SQLite writers are serialized anyway.

A job on its second or later attempt runs alone: its last run may have killed the worker (a
poison job), and it must not take batch-mates down with it again.
"""
from __future__ import annotations

from dataclasses import dataclass

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from jobs import states
from jobs.models import Job, utcnow

GENERATE = "generate"


@dataclass(frozen=True)
class Claimed:
    """What the model needs from the job row, copied so the session can close."""

    id: str
    type: str
    params: dict
    input_key: str | None
    attempt: int = 1  # this run's attempt number: with the worker's name, its fencing token
    deadline_at: datetime | None = None  # past it, the run stops at its next checkpoint

    @property
    def weight(self) -> int:
        return job_weight(self.type, self.params)


@dataclass(frozen=True)
class BatchLimits:
    """Caps per batch: images of generate jobs, number of understand jobs."""

    images: int = 32
    answers: int = 8
    lease_seconds: float = 60

    def cap(self, job_type: str) -> int:
        return self.images if job_type == GENERATE else self.answers


def job_weight(job_type: str, params: dict) -> int:
    """What a job counts against its batch's cap: its images (generate) or 1 (understand)."""
    if job_type == GENERATE:
        try:
            return max(1, int(params.get("num_images", 1)))
        except (TypeError, ValueError):
            return 1  # a malformed row fails when it runs, not here
    return 1


def claim_batch(session: Session, job_id: str, worker: str, limits: BatchLimits) -> list[Claimed]:
    """The batch a message for `job_id` starts: the next of its type in claim order, which may or may
    not hold `job_id`; [] if `job_id` is not claimable (taken, canceled, finished, overdue, missing)."""
    job_type = session.execute(
        select(Job.type).where(Job.id == job_id, Job.status == states.QUEUED, states.available(utcnow()))
    ).scalar_one_or_none()
    return claim_next_batch(session, job_type, worker, limits) if job_type else []


def claim_next_batch(session: Session, job_type: str, worker: str, limits: BatchLimits) -> list[Claimed]:
    """The first queued job of `job_type` in claim order (even one over the cap) and what fits beside it."""
    return _fill(session, job_type, worker, limits, limits.cap(job_type), take_first_whatever_size=True)


def claim_oldest_batch(session: Session, job_types: tuple[str, ...], worker: str,
                       limits: BatchLimits) -> list[Claimed]:
    """The next batch across `job_types` (the queues a worker serves), of the type of the first job
    in claim order: a worker draining one type must not starve the other."""
    if len(job_types) == 1:
        job_type = job_types[0]
    else:
        first = session.execute(_in_claim_order(session, job_types, 1, lock=False)).first()
        job_type = first.type if first else None
    return claim_next_batch(session, job_type, worker, limits) if job_type else []


def _fill(session: Session, job_type: str, worker: str, limits: BatchLimits, room: int, *,
          take_first_whatever_size: bool = False) -> list[Claimed]:
    taken: list[Claimed] = []
    if room <= 0 and not take_first_whatever_size:
        return taken
    # Every job weighs at least 1, so no more than `room` rows can fit (the first alone may exceed).
    for row in session.execute(_in_claim_order(session, (job_type,), max(room, 1))):
        candidate = Claimed(row.id, row.type, dict(row.params or {}), row.input_key, row.attempts + 1,
                            row.deadline_at)
        first = take_first_whatever_size and not taken
        if not first and (candidate.weight > room or candidate.attempt > 1):
            continue  # too big for what is left, or a retry (runs alone); a later job may fit
        if not states.claim(session, candidate.id, worker, limits.lease_seconds):
            continue  # taken or canceled since the SELECT (possible on SQLite)
        taken.append(candidate)
        if candidate.attempt > 1:
            break
        room -= candidate.weight
        if room <= 0:
            break
    return taken


def _in_claim_order(session: Session, job_types: tuple[str, ...], limit: int, *, lock: bool = True):
    """Up to `limit` claimable queued jobs of `job_types`, in claim order (see the module's doc).

    PostgreSQL cannot lock the rows of a window query, so the order is computed in subqueries and
    the rows are locked (FOR UPDATE SKIP LOCKED) in the outer query that joins them by id; its
    own status condition is checked again on the locked row, so a job another worker claimed
    meanwhile drops out.
    """
    queued = select(
        Job.id, Job.owner, Job.priority, Job.created_at,
        func.row_number().over(partition_by=(Job.type, Job.owner, Job.priority),
                               order_by=(Job.created_at, Job.id)).label("turn"),
    ).where(Job.status == states.QUEUED, Job.type.in_(job_types), states.available(utcnow())).cte("queued")
    tenants = _last_starts(queued)
    query = (
        select(Job.id, Job.type, Job.params, Job.input_key, Job.attempts, Job.deadline_at)
        .join(queued, queued.c.id == Job.id)
        .join(tenants, tenants.c.owner == queued.c.owner)
        .where(Job.status == states.QUEUED)
        .order_by(queued.c.priority.desc(), queued.c.turn, tenants.c.last_start.asc().nulls_first(),
                  queued.c.created_at, queued.c.id)
        .limit(limit)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Job)
    return query


def _last_starts(queued):
    """When each tenant with queued jobs last had a job started (null: never), one probe of
    ix_jobs_owner_started per tenant however many jobs it has."""
    owners = select(queued.c.owner).distinct().subquery("owners")
    started = aliased(Job, name="started")
    last = select(func.max(started.started_at)).where(started.owner == owners.c.owner).scalar_subquery()
    # MATERIALIZED: else PostgreSQL folds the probe into the sort key and runs it once per queued job.
    return select(owners.c.owner, last.label("last_start")).cte("tenants").prefix_with("MATERIALIZED")


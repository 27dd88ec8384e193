"""Claiming a batch: the job a message names, then other queued jobs of its type, oldest first.

Every job is taken with the state machine's conditional UPDATE (queued -> running), so two
workers never hold the same job. On PostgreSQL the candidates are picked with
SELECT ... FOR UPDATE SKIP LOCKED, so concurrent workers look at different rows instead of
racing for the same ones; on SQLite writers are serialized anyway.

A job on its second or later attempt runs alone: its last run may have killed the worker (a
poison job), and it must not take batch-mates down with it again.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

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
    """`job_id` first, then queued jobs of its type that fit beside it; [] if it is not claimable."""
    if not states.claim(session, job_id, worker, limits.lease_seconds):
        return []
    first = _claimed(session.get(Job, job_id))
    if first.attempt > 1:
        return [first]
    return [first, *_fill(session, first.type, worker, limits, limits.cap(first.type) - first.weight)]


def claim_next_batch(session: Session, job_type: str, worker: str, limits: BatchLimits) -> list[Claimed]:
    """The oldest queued job of `job_type` (even one over the cap) and what fits beside it."""
    return _fill(session, job_type, worker, limits, limits.cap(job_type), take_first_whatever_size=True)


def claim_oldest_batch(session: Session, job_types: tuple[str, ...], worker: str,
                       limits: BatchLimits) -> list[Claimed]:
    """The next batch in arrival order across `job_types` (the queues a worker serves): a worker
    draining one type must not starve the other."""
    job_type = job_types[0] if len(job_types) == 1 else session.execute(
        select(Job.type)
        .where(Job.status == states.QUEUED, Job.type.in_(job_types), states.available(utcnow()))
        .order_by(Job.created_at, Job.id)
        .limit(1)
    ).scalar_one_or_none()
    return claim_next_batch(session, job_type, worker, limits) if job_type else []


def _fill(session: Session, job_type: str, worker: str, limits: BatchLimits, room: int, *,
          take_first_whatever_size: bool = False) -> list[Claimed]:
    taken: list[Claimed] = []
    if room <= 0 and not take_first_whatever_size:
        return taken
    # Every job weighs at least 1, so no more than `room` rows can fit (the first alone may exceed).
    for row in session.execute(_candidates(session, job_type, max(room, 1))):
        candidate = Claimed(row.id, row.type, dict(row.params or {}), row.input_key, row.attempts + 1)
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


def _candidates(session: Session, job_type: str, limit: int):
    query = (
        select(Job.id, Job.type, Job.params, Job.input_key, Job.attempts)
        .where(Job.status == states.QUEUED, Job.type == job_type, states.available(utcnow()))
        .order_by(Job.created_at, Job.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return query


def _claimed(job: Job) -> Claimed:
    return Claimed(job.id, job.type, dict(job.params or {}), job.input_key, job.attempts)

"""Per-tenant cap on unfinished (queued + running) jobs, exact under concurrent creates.

`check_unfinished_cap` runs in the transaction that inserts the new job, after the insert:
on PostgreSQL it first takes a transaction-scoped advisory lock for the tenant, so tenants'
creates are counted one after another; on SQLite the insert already holds the database's
single write lock until commit. Either way each count sees every job committed before it plus
its own, so concurrent requests cannot together overshoot the cap.
"""
from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from jobs import states
from jobs.models import Job

UNFINISHED = (states.QUEUED, states.RUNNING)


class TooManyUnfinishedJobs(Exception):
    def __init__(self, owner: str, limit: int):
        super().__init__(f"tenant {owner!r} already has {limit} unfinished jobs")
        self.owner = owner
        self.limit = limit


def count_unfinished(session: Session, owner: str) -> int:
    query = select(func.count()).select_from(Job).where(Job.owner == owner, Job.status.in_(UNFINISHED))
    return session.execute(query).scalar_one()


def check_unfinished_cap(session: Session, owner: str, limit: int) -> None:
    """Raise TooManyUnfinishedJobs if `owner` is over `limit` counting the job just added."""
    if not limit:
        return
    session.flush()  # the new row, and with it the write lock on SQLite
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                        {"name": f"janusq:unfinished:{owner}"})
    if count_unfinished(session, owner) > limit:
        raise TooManyUnfinishedJobs(owner, limit)

"""The sweeper: what turns Celery's best-effort delivery into at-least-once.

Every `sweep_interval` seconds, the one active sweeper (a named lease in the `locks` table, so
any number of workers can run the loop and one sweeps):
- takes back each running job whose lease expired (its worker died, or hangs without renewing):
  queued again for another attempt, or failed with `attempts_exhausted` after `max_attempts`;
- publishes again each claimable queued job whose last publish is older than `requeue_after`
  (a lost message: a crash between commit and publish, a broker restart, a dropped message);
- marks `expired` each queued job whose deadline passed (no worker claims those);
- retention: deletes the stored files of finished jobs past JANUS_RESULT_TTL (jobs/retention.py).
Duplicate messages are harmless: a job is claimed by one conditional UPDATE, so the extra
message finds it taken and is dropped.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from jobs import states
from jobs.db import Database
from jobs.models import Job, Lock, utcnow
from jobs.retention import Retention
from jobs.settings import redact_url

log = logging.getLogger(__name__)

SWEEPER_LOCK = "sweeper"
BATCH = 200  # rows per query: a sweep that finds more simply continues next time


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    exhausted: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)  # queued jobs past their deadline
    expired_results: list[str] = field(default_factory=list)


class Sweeper:
    def __init__(self, db: Database, publisher, *, requeue_after: float, max_attempts: int,
                 retention: Retention | None = None):
        self.db, self.publisher = db, publisher
        self.requeue_after, self.max_attempts = requeue_after, max_attempts
        self.retention = retention

    def sweep(self, now: datetime | None = None) -> SweepReport:
        now = now or utcnow()
        report = SweepReport()
        with self.db.session() as session:
            self._take_back_expired(session, now, report)
            report.expired = states.expire_overdue(session, now, BATCH)
            to_publish = self._stale_queued(session, now)
            if self.db.events is not None:
                self.db.events.prune(session, now)  # the embedded stack's old job events
        for job_id, job_type in to_publish:
            try:
                self.publisher.publish(job_id, job_type)
                report.published.append(job_id)
            except Exception as exc:  # noqa: BLE001 - the broker is down: the next sweep tries again
                log.warning("sweeper could not publish job %s: %s", job_id, exc)
                break
        if self.retention is not None:
            report.expired_results = self.retention.expire_results(now)
        if report.requeued or report.exhausted or report.published or report.expired or report.expired_results:
            log.info("sweep: %d requeued (lease expired), %d failed (attempts exhausted), %d published, "
                     "%d expired (deadline passed while queued), %d results expired", len(report.requeued),
                     len(report.exhausted), len(report.published), len(report.expired), len(report.expired_results))
        return report

    def _take_back_expired(self, session: Session, now: datetime, report: SweepReport) -> None:
        rows = session.execute(
            select(Job.id, Job.worker, Job.attempts)
            .where(Job.status == states.RUNNING, Job.lease_expires_at < now)
            .limit(BATCH)
        ).all()
        requeued, exhausted = take_back(session, rows, self.max_attempts, "stopped renewing its lease")
        report.requeued += requeued
        report.exhausted += exhausted

    def _stale_queued(self, session: Session, now: datetime) -> list[tuple[str, str]]:
        """Claimable queued jobs whose last publish is old (or never was); marked published now."""
        stale = or_(Job.published_at.is_(None), Job.published_at < now - timedelta(seconds=self.requeue_after))
        rows = session.execute(
            select(Job.id, Job.type).where(Job.status == states.QUEUED, states.available(now), stale)
            .order_by(Job.created_at).limit(BATCH)
        ).all()
        taken = []
        for row in rows:
            # Conditional, so two sweepers (a lease handover) don't both publish it.
            marked = session.execute(
                update(Job).where(Job.id == row.id, Job.status == states.QUEUED, stale)
                .values(published_at=now).execution_options(synchronize_session=False)
            ).rowcount
            if marked:
                taken.append((row.id, row.type))
        return taken


def take_back(session: Session, rows, max_attempts: int, why: str) -> tuple[list[str], list[str]]:
    """Running jobs (rows of id, worker, attempts) whose worker is gone: queued again for another
    attempt, or failed with attempts_exhausted. Fenced by the holder, so a job that its worker
    finished or that another worker claimed meanwhile is left alone. Returns (requeued, failed)."""
    requeued, exhausted = [], []
    for row in rows:
        holder = states.Holder(row.worker, row.attempts)
        if row.attempts >= max_attempts:
            if states.transition(session, row.id, states.FAILED, only_from={states.RUNNING}, holder=holder,
                                 error_code="attempts_exhausted",
                                 error_message=f"gave up after {row.attempts} attempts; the last worker "
                                               f"({row.worker}) {why}"):
                exhausted.append(row.id)
        elif states.transition(session, row.id, states.QUEUED, only_from={states.RUNNING}, holder=holder,
                               worker=None, published_at=None, progress=0.0):
            requeued.append(row.id)
    return requeued, exhausted


def _reason(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def hold_lock(session: Session, name: str, holder: str, seconds: float, now: datetime | None = None) -> bool:
    """Take or renew the named lease; True while `holder` has it."""
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    renewed = session.execute(
        update(Lock).where(Lock.name == name, or_(Lock.holder == holder, Lock.expires_at < now))
        .values(holder=holder, expires_at=until).execution_options(synchronize_session=False)
    ).rowcount
    if renewed:
        return True
    try:
        session.execute(insert(Lock).values(name=name, holder=holder, expires_at=until))
        session.commit()
        return True
    except IntegrityError:
        session.rollback()  # the row exists and someone else holds it (the update changed nothing)
        return False


class SweeperLoop:
    """Runs `Sweeper.sweep` every interval while this process holds the sweeper lease."""

    def __init__(self, sweeper: Sweeper, name: str, interval: float):
        self.sweeper, self.name, self.interval = sweeper, name, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.leading = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="janusq-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except SQLAlchemyError as exc:  # the database is down: try again next interval
                log.warning("sweeper: database %s unavailable: %s", redact_url(self.sweeper.db.url), _reason(exc))
            except Exception:  # noqa: BLE001 - never let the loop die
                log.exception("sweeper tick failed")
            # Followers look again once the leader's lease could have lapsed (three intervals), not
            # every interval: with W workers that is W/3 lock writes an interval instead of W.
            self._stop.wait(self.interval if self.leading else self.interval * 3)

    def tick(self) -> SweepReport | None:
        with self.sweeper.db.session() as session:
            # The lease outlives three intervals, so a live leader never loses it between ticks.
            leading = hold_lock(session, SWEEPER_LOCK, self.name, self.interval * 3)
        if leading != self.leading:
            log.info("sweeper %s: %s", self.name, "now sweeping" if leading else "another process sweeps")
            self.leading = leading
        return self.sweeper.sweep() if leading else None

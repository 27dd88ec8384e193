"""The delivery loop: sends the outbox's due rows, records each attempt, retries with backoff.

Every worker's main process and `janusq sweeper` run the loop; a named lease in the `locks`
table (as for the sweeper) lets one of them deliver at a time, with up to
JANUS_WEBHOOK_CONCURRENCY requests in flight from a thread pool, so one slow receiver does not
hold up the others. Rows are claimed by moving their next attempt past the attempt's time limit
(with SKIP LOCKED on PostgreSQL), so even two deliverers during a lease handover never send one
row twice at once, and a deliverer that dies mid-attempt leaves the row due again soon:
at least once. Receivers deduplicate by `webhook-id`.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from jobs.db import Database
from jobs.models import WebhookDelivery as Delivery
from jobs.models import utcnow
from jobs.oneline import first_line
from jobs.settings import Settings
from jobs.sweeper import hold_lock
from jobs.webhooks import http, outbox, signing

log = logging.getLogger(__name__)

LOCK = "webhooks"
POLL_SECONDS = 0.5  # how soon a new delivery goes out
LEASE_SECONDS = 15  # the deliverer's lease; followers look again after it
MAX_BACKOFF_SECONDS = 3600
CLAIM_MARGIN_SECONDS = 5  # beyond the attempt's time limit, before a claimed row counts as abandoned

# Renders a job (a row with Job's attributes) and the API root as the body's dict: api/serialize.
Render = Callable[[object, str], dict]


@dataclass(frozen=True)
class Due:
    id: str
    job_id: str
    owner: str
    event: str
    url: str
    snapshot: dict
    attempts: int
    created_at: datetime


class Deliverer:
    def __init__(self, db: Database, settings: Settings, render: Render):
        self.db, self.settings, self.render = db, settings, render

    def claim(self, limit: int, now: datetime | None = None) -> list[Due]:
        """Up to `limit` due rows, now this deliverer's until the attempt's time limit has passed."""
        now = now or utcnow()
        due = (select(Delivery.id).where(Delivery.status == outbox.PENDING, Delivery.next_attempt_at <= now)
               .order_by(Delivery.next_attempt_at, Delivery.created_at).limit(limit))
        if self.db.is_postgresql:
            due = due.with_for_update(skip_locked=True)
        until = now + timedelta(seconds=self.settings.webhook_timeout + CLAIM_MARGIN_SECONDS)
        with self.db.session() as session:
            rows = session.execute(
                update(Delivery).where(Delivery.id.in_(due.scalar_subquery()), Delivery.status == outbox.PENDING)
                .values(next_attempt_at=until)
                .returning(Delivery.id, Delivery.job_id, Delivery.owner, Delivery.event, Delivery.url, Delivery.snapshot,
                           Delivery.attempts, Delivery.created_at)
                .execution_options(synchronize_session=False)
            ).all()
        return sorted((Due(*row) for row in rows), key=lambda due: due.created_at)

    def release(self, ids: list[str]) -> None:
        """Claimed rows given back unsent: due again at once."""
        if ids:
            with self.db.session() as session:
                session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.status == outbox.PENDING)
                                .values(next_attempt_at=utcnow()).execution_options(synchronize_session=False))

    def deliver(self, due: Due) -> http.Outcome:
        """One attempt, recorded on the row."""
        job = outbox.job_from_snapshot(due.snapshot)
        body = json.dumps(self.render(job, job.webhook_root or ""), separators=(",", ":")).encode()
        with self.db.session() as session:
            secret = signing.tenant_secret(session, due.owner)
        started = utcnow()
        headers = signing.headers(secret, due.id, int(started.timestamp()), body)
        outcome = http.post(due.url, body, headers, self.settings.webhook_timeout,
                            self.settings.webhook_allow_private)
        self.record(due, outcome, started)
        return outcome

    def record(self, due: Due, outcome: http.Outcome, at: datetime) -> None:
        attempts = due.attempts + 1
        values = {"attempts": attempts, "status_code": outcome.status_code, "last_error": outcome.error,
                  "last_attempt_at": at}
        if outcome.delivered:
            values.update(status=outbox.DELIVERED, finished_at=utcnow())
        else:
            retry_at = utcnow() + timedelta(seconds=self.backoff(attempts))
            if retry_at > due.created_at + timedelta(seconds=self.settings.webhook_retry_seconds):
                values.update(status=outbox.FAILED, finished_at=utcnow())
                log.warning("webhook %s (job %s, %s) given up after %d attempts: %s", due.id,
                            due.snapshot.get("id"), due.event, attempts, outcome.error)
            else:
                values.update(next_attempt_at=retry_at)
        with self.db.session() as session:
            session.execute(update(Delivery).where(Delivery.id == due.id, Delivery.status == outbox.PENDING)
                            .values(**values).execution_options(synchronize_session=False))

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: doubling from JANUS_WEBHOOK_RETRY_BACKOFF, at most an
        hour, each +-10% so that the retries of many deliveries do not arrive in step."""
        base = min(self.settings.webhook_retry_backoff * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        return base * random.uniform(0.9, 1.1)


class DeliveryLoop:
    """Runs the Deliverer while this process holds the `webhooks` lease."""

    def __init__(self, deliverer: Deliverer, name: str):
        self.deliverer, self.name = deliverer, name
        self.concurrency = deliverer.settings.webhook_concurrency
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._busy_jobs: set[str] = set()
        self._lock = threading.Lock()
        self.leading = False
        self._lease_renewed = 0.0

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="janusq-webhook")
        self._thread = threading.Thread(target=self._run, name="janusq-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Attempts under way are abandoned, not awaited: their rows fall due again after the claim."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=LEASE_SECONDS)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except SQLAlchemyError as exc:  # the database is down: try again later
                log.warning("webhook deliveries: database unavailable: %s", first_line(exc))
            except Exception:  # noqa: BLE001 - never let the loop die
                log.exception("webhook delivery tick failed")
            self._stop.wait(POLL_SECONDS if self.leading else LEASE_SECONDS / 3)

    def tick(self) -> int:
        """Renew the lease when due; while leading, start attempts for due rows. Returns how many."""
        self._keep_lease()
        if not self.leading:
            return 0
        with self._lock:
            free = self.concurrency - self._in_flight
        if free <= 0:
            return 0
        started, held = [], []
        for due in self.deliverer.claim(free):
            with self._lock:
                # One attempt per job at a time, oldest first: a job's start, progress and completed
                # arrive in order (a retry of an earlier one may still come after a later one).
                if due.job_id in self._busy_jobs:
                    held.append(due.id)
                    continue
                self._busy_jobs.add(due.job_id)
                self._in_flight += 1
            started.append(due)
        self.deliverer.release(held)
        for due in started:
            self._pool.submit(self._attempt, due)
        return len(started)

    def _keep_lease(self) -> None:
        clock = time.monotonic()
        if self.leading and clock - self._lease_renewed < LEASE_SECONDS / 3:
            return
        with self.deliverer.db.session() as session:
            leading = hold_lock(session, LOCK, self.name, LEASE_SECONDS)
        self._lease_renewed = clock
        if leading != self.leading:
            log.info("webhooks %s: %s", self.name, "now delivering" if leading else "another process delivers")
            self.leading = leading

    def _attempt(self, due: Due) -> None:
        try:
            self.deliverer.deliver(due)
        except Exception:  # noqa: BLE001 - the row falls due again after its claim
            log.exception("webhook %s: attempt failed", due.id)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._busy_jobs.discard(due.job_id)

"""Which failures deserve another attempt, and when; and the lease a worker keeps on its jobs."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from jobs import states
from jobs.db import Database

log = logging.getLogger(__name__)

# Faults of the moment: storage or database unreachable, device memory taken. A bad input, a
# model error or a time limit would fail the same way again, so those fail at once.
TRANSIENT = frozenset({"StorageError", "OperationalError", "InterfaceError", "OutOfMemoryError"})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff: float = 5.0  # seconds before the second attempt; doubled for each later one

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.max_attempts and is_transient(exc)

    def delay(self, attempt: int) -> float:
        return self.backoff * 2 ** (attempt - 1)


def is_transient(exc: BaseException) -> bool:
    return any(cls.__name__ in TRANSIENT for cls in type(exc).__mro__)


class LeaseKeeper:
    """Renews this worker's leases on `job_ids` every lease/3 seconds while the batch runs.

    A thread, so that leases stay fresh through long model calls; when the process dies the
    renewals stop and the sweeper takes the jobs back after the lease runs out.
    """

    def __init__(self, db: Database, worker: str, job_ids: list[str], lease_seconds: float):
        self.db, self.worker, self.job_ids, self.lease_seconds = db, worker, list(job_ids), lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="janusq-lease", daemon=True)

    def __enter__(self) -> "LeaseKeeper":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                with self.db.session() as session:
                    states.renew_leases(session, self.job_ids, self.worker, self.lease_seconds)
            except SQLAlchemyError as exc:  # a database blip: the next renewal may get through
                log.warning("could not renew leases: %s", type(exc).__name__)

"""A pool process that dies mid-batch (the kernel's OOM killer, a segfault in native code) leaves
its jobs running in the database until their leases expire, a minute by default. Celery's main
process survives it and forks a new pool process, so the main process watches its pool's process
ids and takes a vanished process's jobs back at once: queued again and published (or failed once
their attempts are spent), for this worker's next pool process or any other worker.

Only this worker's own pool processes are watched: a process id is only meaningful on its own
host and in its own process namespace, and two containers may share a host name.
"""
from __future__ import annotations

import logging
import threading

from celery import bootsteps
from sqlalchemy import select

from jobs import states
from jobs.models import Job
from jobs.sweeper import take_back

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


class PoolWatch:
    """Made in the main process; `check` is given the pool's live process ids each poll."""

    def __init__(self, db, publisher, host: str, max_attempts: int):
        self.db, self.publisher, self.host, self.max_attempts = db, publisher, host, max_attempts
        self.known: set[int] = set()

    def check(self, alive: set[int]) -> list[str]:
        """Takes back the jobs of each process seen before and gone now; returns the requeued ids."""
        vanished, self.known = self.known - alive, set(alive)
        requeued = []
        for pid in sorted(vanished):
            requeued += self.take_back_process(pid)
        return requeued

    def take_back_process(self, pid: int) -> list[str]:
        # The executor of a pool process names itself host:pid:device (worker/runtime.py).
        with self.db.session() as session:
            rows = session.execute(
                select(Job.id, Job.type, Job.worker, Job.attempts)
                .where(Job.status == states.RUNNING, Job.worker.startswith(f"{self.host}:{pid}:", autoescape=True))
            ).all()
            requeued, failed = take_back(session, rows, self.max_attempts, f"died (pool process {pid})")
        if rows:
            log.warning("pool process %d died mid-batch: %d job(s) queued again at once, %d failed "
                        "(attempts exhausted)", pid, len(requeued), len(failed))
        types = {row.id: row.type for row in rows}
        for job_id in requeued:
            try:
                self.publisher.publish(job_id, types[job_id])
            except Exception as exc:  # noqa: BLE001 - the broker is down: the sweeper publishes it later
                log.warning("could not publish job %s again (%s); the sweeper will", job_id, exc)
        return requeued


class WatchPool(bootsteps.StartStopStep):
    """Worker bootstep: polls the pool's process ids from the main process."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker):
        watch: PoolWatch = worker.app.janus_pool_watch
        watch.known = pool_pids(worker)
        self._thread = threading.Thread(target=self._run, args=(worker, watch), name="janusq-pool-watch",
                                        daemon=True)
        self._thread.start()

    def stop(self, worker):
        self._stop.set()

    def _run(self, worker, watch: PoolWatch) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                watch.check(pool_pids(worker))
            except Exception:  # noqa: BLE001 - never let the watch die; the lease is the fallback
                log.exception("pool watch failed; a dead pool process's jobs wait for their lease")


def pool_pids(worker) -> set[int]:
    processes = getattr(getattr(worker.pool, "_pool", None), "_pool", None) or []
    return {process.pid for process in processes if process.pid and process.is_alive()}

"""A worker consumes nothing until its model is loaded and checked; one that cannot load it exits.

The model loads in the pool process (after the fork, so CUDA never starts in the parent), while
Celery's main process would go on to start its consumer and take messages. A worker bootstep
that runs after the pool has forked and before the consumer starts (Celery starts the consumer
last) waits for the pool process to say "ready" or "failed". Failed: the pool process has logged
one line saying why, and the worker stops with MODEL_FAILED_EXIT before it has consumed or
claimed anything. The job stays queued for a healthy worker, and a supervisor or orchestrator
sees the exit code.
"""
from __future__ import annotations

import logging
import multiprocessing
import time

from celery import bootsteps

from jobs.oneline import first_line

log = logging.getLogger(__name__)

MODEL_FAILED_EXIT = 3
POLL_SECONDS = 0.2


class ModelGate:
    """Made in the main process before the pool forks; the pool process sets one of the two."""

    def __init__(self):
        self.ready = multiprocessing.Event()
        self.failed = multiprocessing.Event()

    def load_in_pool_process(self, load, describe: str) -> None:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - any load failure means: this worker takes no jobs
            log.error("worker stopping: cannot load the model (%s): %s", describe, _one_line(exc))
            self.failed.set()
            return
        self.ready.set()

    def wait(self, pool_alive, timeout: float) -> bool:
        """True once the model is ready; False when loading failed, the pool died or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready.is_set():
                return True
            if self.failed.is_set():
                return False
            if not pool_alive():
                log.error("worker stopping: its pool process died while loading the model")
                return False
            time.sleep(POLL_SECONDS)
        log.error("worker stopping: the model did not load within %.0f s", timeout)
        return False


class WaitForModel(bootsteps.StartStopStep):
    """Worker bootstep between the pool and the consumer: no model, no messages."""

    requires = ("celery.worker.components:Pool",)

    def start(self, worker):
        gate: ModelGate = worker.app.janus_gate
        timeout = float(worker.app.conf.worker_proc_alive_timeout or 600)
        if not gate.wait(lambda: _pool_alive(worker), timeout):
            gate.failed.set()  # what `janusq worker` turns into its exit code
            raise SystemExit(MODEL_FAILED_EXIT)  # Celery stops the worker without starting its consumer


def _pool_alive(worker) -> bool:
    processes = getattr(getattr(worker.pool, "_pool", None), "_pool", None)
    if processes is None:  # not a prefork pool: nothing to watch
        return True
    return any(process.is_alive() for process in processes)


def _one_line(exc: BaseException) -> str:
    line = first_line(exc)
    return line if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"

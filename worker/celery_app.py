"""The Celery worker app: one task that takes a job id and hands it to the executor."""
from __future__ import annotations

import os
import socket

from celery.signals import (
    celeryd_after_setup,
    worker_process_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from jobs.db import Database
from jobs.events import attach_event_log
from jobs.heartbeat import HeartbeatLoop, HeartbeatRow, WorkerIdentity, heartbeat_database
from jobs.queue import TASK_NAME, Publisher, make_celery
from jobs.retention import Retention
from jobs.settings import QUEUES, Settings
from jobs.storage import open_storage
from jobs.sweeper import Sweeper, SweeperLoop
from jobs.webhooks.delivery import Deliverer, DeliveryLoop
from worker.model_gate import ModelGate, WaitForModel
from worker.pool_watch import PoolWatch, WatchPool
from worker.runtime import WorkerRuntime


def create_worker_app(settings: Settings):
    app = make_celery(settings, name="janusq-worker")
    runtime = WorkerRuntime(settings)
    app.janus_gate = ModelGate()
    app.steps["worker"].add(WaitForModel)  # no consuming until the pool process has its model
    app.janus_pool_watch = PoolWatch(attach_event_log(Database(settings.database, pooled=False), settings),
                                     Publisher(settings),
                                     socket.gethostname(), settings.max_attempts)
    app.steps["worker"].add(WatchPool)  # a pool process that dies gives its jobs back at once

    @app.task(name=TASK_NAME)
    def run_job(job_id: str) -> str:
        return runtime.executor(served_job_types(app)).run(job_id)

    @worker_process_init.connect(weak=False)
    def _load_in_child(**_):
        runtime.after_fork()
        app.janus_gate.load_in_pool_process(runtime.model, f"{settings.model} on {settings.device}")

    sweeper = sweeper_loop(settings)
    deliveries = delivery_loop(settings)
    heartbeat: list[HeartbeatLoop] = []  # made once Celery has named this worker

    @celeryd_after_setup.connect(weak=False)
    def _start_heartbeat(sender, **_):
        # Before the pool forks: the child inherits the name, and the row exists before the
        # child reports its model or a batch. Beats start now, while the model loads.
        runtime.node_name = sender
        heartbeat.append(heartbeat_loop(settings, sender, served_job_types(app), runtime.model_loaded.is_set))

    @worker_ready.connect(weak=False)
    def _start_sweeper(**_):
        sweeper.start()  # in the main process; whichever worker holds the lock sweeps
        deliveries.start()  # the same for webhook deliveries, with a lock of their own

    @worker_shutting_down.connect(weak=False)
    def _stop_draining(**_):
        runtime.stopping.set()  # the running task finishes its batch, then returns
        sweeper.stop()
        deliveries.stop()
        for loop in heartbeat:
            loop.draining()

    @worker_shutdown.connect(weak=False)
    def _stopped(**_):
        for loop in heartbeat:  # after the pool finished its batch: a clean stop
            loop.stop()

    app.janus_runtime = runtime
    return app


def sweeper_loop(settings: Settings) -> SweeperLoop:
    """Every worker runs the loop; the lock in the database lets one of them sweep at a time."""
    # Unpooled: every worker runs this loop but only the lock holder sweeps; a connection held
    # open for it in each worker would idle, counting against the server's max_connections.
    db = attach_event_log(Database(settings.database, pooled=False), settings)
    retention = Retention(db, open_storage(settings.storage, settings.s3_endpoint_url), settings.result_ttl)
    sweeper = Sweeper(db, Publisher(settings), requeue_after=settings.requeue_after,
                      max_attempts=settings.max_attempts, retention=retention)
    return SweeperLoop(sweeper, f"{socket.gethostname()}:{os.getpid()}", settings.sweep_interval)


def delivery_loop(settings: Settings) -> DeliveryLoop:
    """Every worker runs the loop; the `webhooks` lock lets one of them deliver at a time."""
    from api.webhook_body import body_renderer  # the job as GET shows it (no Flask in there)

    # Unpooled like the sweeper's: followers only look at the lock now and then.
    db = Database(settings.database, pooled=False)
    deliverer = Deliverer(db, settings, render=body_renderer(settings, db))
    return DeliveryLoop(deliverer, f"{socket.gethostname()}:{os.getpid()}")


def heartbeat_loop(settings: Settings, name: str, queues: tuple[str, ...], model_ready) -> HeartbeatLoop:
    """Registers the row now and beats from a thread of the main process until a clean stop."""
    identity = WorkerIdentity(name=name, host=socket.gethostname(), pid=os.getpid(), device=settings.device,
                              model=settings.model, queues=queues, beat_seconds=settings.heartbeat_seconds)
    loop = HeartbeatLoop(HeartbeatRow(heartbeat_database(settings.database), name), identity, model_ready)
    loop.register()
    loop.start()
    return loop


def served_job_types(app) -> tuple[str, ...]:
    """The job types (queues) this worker consumes: `--queues`, selected before the pool forked."""
    selected = app.amqp.queues.consume_from
    return tuple(name for name in (selected or QUEUES) if name in QUEUES)

"""The Celery worker app: one task that takes a job id and hands it to the executor."""
from __future__ import annotations

from celery.signals import worker_process_init, worker_shutting_down

from jobs.queue import TASK_NAME, make_celery
from jobs.settings import Settings
from worker.runtime import WorkerRuntime


def create_worker_app(settings: Settings):
    app = make_celery(settings, name="janusq-worker")
    runtime = WorkerRuntime(settings)

    @app.task(name=TASK_NAME)
    def run_job(job_id: str) -> str:
        return runtime.executor().run(job_id)

    @worker_process_init.connect(weak=False)
    def _load_in_child(**_):
        runtime.after_fork()
        runtime.model()

    @worker_shutting_down.connect(weak=False)
    def _stop_draining(**_):
        runtime.stopping.set()  # the running task finishes its batch, then returns

    app.janus_runtime = runtime
    return app

"""Per-process worker state: the model is loaded once, after the fork, and stays loaded."""
from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading

from jobs.db import Database
from jobs.events import attach_event_log
from jobs.heartbeat import HeartbeatRow
from jobs.settings import Settings
from jobs.storage import open_storage
from worker.claims import BatchLimits
from worker.executor import Executor
from worker.retry import RetryPolicy

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(self, settings: Settings):
        self.settings = settings
        # The pool process runs one batch at a time: its batch thread and the lease keeper's
        # renewals. JANUS_WORKER_DB_POOL_SIZE connections stay open (1), an overflow one is
        # opened when both write at once and closed after: a fleet of W workers holds about W.
        self.db = attach_event_log(Database(settings.database, pool_size=settings.worker_db_pool_size,
                                            max_overflow=settings.worker_db_max_overflow), settings)
        self.storage = open_storage(settings.storage, settings.s3_endpoint_url)
        self._model = None
        self._lock = threading.Lock()
        # Made before the pool forks, so the parent can tell its child to stop draining the queue
        # when the worker is asked to shut down (a warm shutdown waits for the running task).
        self.stopping = multiprocessing.Event()
        # The Celery node name (e.g. gpu0@host), set in the main process before the pool forks so
        # the child that runs batches writes to the same heartbeat row as the main process's beats.
        self.node_name = f"{socket.gethostname()}:{os.getpid()}"
        # Set by the process that runs batches once its model is loaded and warm; the main
        # process's heartbeat reads it (the row says starting until then).
        self.model_loaded = multiprocessing.Event()

    def model(self):
        with self._lock:
            if self._model is None:
                self._model = self._load_simulated() if self.settings.is_simulated_model else self._load_janus()
                self.model_loaded.set()
                self.heartbeat_row().report_ready(describe_device(self._model.device))
            return self._model

    def _load_janus(self):
        from janus_model import load_model

        # Compiled kernels land on the data volume: a restart reuses them instead of compiling again.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.settings.data_path / "torchinductor"))
        log.info("loading model %s on %s", self.settings.model, self.settings.device)
        model = load_model(checkpoint_path(self.settings), device=self.settings.device,
                           dtype=self.settings.dtype, options=engine_options(self.settings))
        log.info("model loaded on %s", model.device)
        if self.settings.device == "auto" and model.device.type == "cpu":
            log.warning("JANUS_DEVICE=auto found no CUDA device: this worker runs on the CPU "
                        "(set JANUS_DEVICE=cuda to refuse to start without a GPU)")
        # CUDA graphs (and compiled kernels) of each image batch size, built before the first job.
        model.engine.warm_up(self.settings.max_batch_images, self.settings.max_batch_answers)
        return model

    def _load_simulated(self):
        # Torch is never imported on this path: dozens of simulated workers share one machine.
        from janus_model.simulated import load_simulated

        model = load_simulated(self.settings.model)
        log.info("simulated model %s (%s); it sleeps instead of computing", model.spec, model.profile.source)
        return model

    def executor(self, job_types: tuple[str, ...] = ()) -> Executor:
        name = f"{socket.gethostname()}:{os.getpid()}:{self.settings.device}"
        return Executor(self.db, self.storage, self.model, name, self.settings.progress_interval,
                        limits=BatchLimits(self.settings.max_batch_images, self.settings.max_batch_answers,
                                           self.settings.lease_seconds),
                        drain_seconds=self.drain_seconds, should_stop=self.stopping.is_set,
                        retry=RetryPolicy(self.settings.max_attempts, self.settings.retry_backoff),
                        job_types=job_types, heartbeat=self.heartbeat_row(), previews=self.settings.previews)

    def heartbeat_row(self) -> HeartbeatRow:
        """This worker's heartbeat row, written through this process's own connections."""
        return HeartbeatRow(self.db, self.node_name)

    @property
    def drain_seconds(self) -> float:
        """How long a task keeps taking queued jobs: well inside the soft time limit."""
        return self.settings.job_soft_time_limit / 3

    def after_fork(self) -> None:
        """Connections made before the fork belong to the parent: drop them."""
        self.db.dispose()
        self.model_loaded.clear()  # a new pool process (its predecessor died) loads the model again
        self.storage = open_storage(self.settings.storage, self.settings.s3_endpoint_url)


def checkpoint_path(settings: Settings, fresh_process: bool = False) -> str:
    """What the worker loads: JANUS_MODEL, or the converted copy of an original-format folder (made
    once, under the data dir; the conversion logs one line). `fresh_process`: convert in a spawned
    interpreter, for a process that forks afterwards."""
    from janus_model.convert import servable_source, servable_source_in_fresh_process

    convert = servable_source_in_fresh_process if fresh_process else servable_source
    return convert(settings.model_source, settings.data_path / "models" / "converted")


def describe_device(device) -> str:
    """`cuda:0` alone does not say which GPU a pinned worker has: add what it was given."""
    text = str(device)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{text} (CUDA_VISIBLE_DEVICES={visible})" if visible and text.startswith("cuda") else text


def engine_options(settings: Settings):
    from janus_model.engine import EngineOptions
    from janus_model.memory import MemoryPolicy

    memory = MemoryPolicy(fraction=settings.gpu_memory_fraction, explicit_mb=settings.batch_memory_mb)
    return EngineOptions(cuda_graphs=settings.cuda_graphs, compile=settings.compile, memory=memory)

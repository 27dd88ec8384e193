"""Runs one job: claim it, release the database, run the model, store the result.

Celery's task is a thin wrapper around `Executor.run`, which tests can call directly.
"""
from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from typing import Callable

from janus_model.errors import GenerationStopped
from jobs import states
from jobs.db import Database
from jobs.models import Job
from jobs.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claimed:
    """What the model needs from the job row, copied so the session can close."""

    id: str
    type: str
    params: dict
    input_key: str | None


class ProgressReporter:
    """Writes progress at most every `interval` seconds and says whether to keep going."""

    def __init__(self, db: Database, job_id: str, interval: float):
        self.db, self.job_id, self.interval = db, job_id, interval
        self._last_write = 0.0
        self._started = time.monotonic()
        self.steps = 0

    def __call__(self, done: int, total: int) -> bool:
        self.steps = done
        now = time.monotonic()
        if now - self._last_write < self.interval:
            return True
        self._last_write = now
        with self.db.session() as session:
            cancel = states.record_progress(session, self.job_id, min(done / max(total, 1), 0.99))
        return not cancel

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def seconds_per_step(self) -> float | None:
        return (time.monotonic() - self._started) / self.steps if self.steps else None


class Executor:
    def __init__(self, db: Database, storage: Storage, model_provider: Callable, worker_name: str,
                 progress_interval: float):
        self.db, self.storage, self.model_provider = db, storage, model_provider
        self.worker_name, self.progress_interval = worker_name, progress_interval

    def run(self, job_id: str) -> str:
        """Returns the job's final status, or 'skipped' when the job was not claimable."""
        claimed = self._claim(job_id)
        if claimed is None:
            log.info("job %s not claimable (canceled, finished or missing); dropping message", job_id)
            return "skipped"
        reporter = ProgressReporter(self.db, job_id, self.progress_interval)
        try:
            result = self._execute(claimed, reporter)
        except GenerationStopped:
            return self._finish(job_id, states.CANCELED, reporter)
        except Exception as exc:  # noqa: BLE001 - any model or storage fault fails this job only
            log.exception("job %s failed", job_id)
            return self._finish(job_id, states.FAILED, reporter, error_code=error_code_of(exc),
                                error_message=str(exc)[:2000] or type(exc).__name__)
        return self._finish(job_id, states.SUCCEEDED, reporter, result=result, progress=1.0)

    def _claim(self, job_id: str) -> Claimed | None:
        with self.db.session() as session:
            if not states.claim(session, job_id, self.worker_name):
                return None
            job = session.get(Job, job_id)
            return Claimed(job.id, job.type, dict(job.params), job.input_key)

    def _execute(self, job: Claimed, reporter: ProgressReporter) -> dict:
        model = self.model_provider()
        # The reporter returning False makes the model raise GenerationStopped.
        if job.type == "generate":
            return self._generate(model, job, reporter)
        if job.type == "understand":
            return self._understand(model, job, reporter)
        raise ValueError(f"unknown job type {job.type!r}")

    def _generate(self, model, job: Claimed, progress) -> dict:
        p = job.params
        images = model.generate_images(p["prompt"], num_images=p["num_images"], cfg_weight=p["cfg_weight"],
                                       temperature=p["temperature"], seed=p["seed"], progress=progress)
        stored = []
        for index, image in enumerate(images):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            key = f"jobs/{job.id}/{index}.png"
            self.storage.put(key, buffer.getvalue(), "image/png")
            stored.append({"key": key, "width": image.width, "height": image.height,
                           "content_type": "image/png"})
        return {"images": stored}

    def _understand(self, model, job: Claimed, progress) -> dict:
        from PIL import Image

        p = job.params
        image = Image.open(io.BytesIO(self.storage.get(job.input_key))).convert("RGB")
        text = model.answer(image, p["question"], max_new_tokens=p["max_new_tokens"],
                            temperature=p["temperature"], top_p=p["top_p"], seed=p["seed"],
                            progress=progress)
        return {"text": text}

    def _finish(self, job_id: str, status: str, reporter: ProgressReporter, **fields) -> str:
        with self.db.session() as session:
            won = states.transition(session, job_id, status, only_from={states.RUNNING},
                                    run_seconds=reporter.elapsed(), step_seconds=reporter.seconds_per_step(),
                                    **fields)
        if won:
            log.info("job %s %s in %.2f s", job_id, status, reporter.elapsed())
        else:
            log.warning("job %s left running before it could be marked %s", job_id, status)
        return status


def error_code_of(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "SoftTimeLimitExceeded":
        return "time_limit"
    if name == "StorageError":
        return "storage_error"
    return "model_error"

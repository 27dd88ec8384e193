"""Runs one claimed batch through the model's batch interface and finishes every job in it.

Each job keeps its own progress reporter (so a cancel ends that job alone), its own
preparation (an unreadable input fails that job alone), its own result storage and its own
final transition. When the batch call itself raises, the jobs are retried one by one so that
only the culprit fails.
"""
from __future__ import annotations

import logging
import uuid
from contextlib import nullcontext
from typing import Callable

from janus_model.errors import GenerationStopped
from jobs import events, states
from jobs.db import Database
from jobs.heartbeat import HeartbeatRow
from jobs.lifecycle import DEADLINE, STOPPED_MESSAGE
from jobs.retention import clean_up_if_deleted
from jobs.storage import Storage
from worker.claims import GENERATE, Claimed
from worker.faults import crash_if_poisoned
from worker.prepare import model_request
from worker.progress import BatchProgress, ProgressReporter
from worker.results import store_result
from worker.retry import LeaseKeeper, RetryPolicy

log = logging.getLogger("worker.executor")


class BatchRunner:
    def __init__(self, db: Database, storage: Storage, model_provider: Callable, progress_interval: float, *,
                 worker_name: str = "", lease_seconds: float = 60, retry: RetryPolicy = RetryPolicy(),
                 heartbeat: HeartbeatRow | None = None, previews: int = 0):
        self.db, self.storage, self.model_provider = db, storage, model_provider
        self.progress_interval = progress_interval
        self.worker_name, self.lease_seconds, self.retry = worker_name, lease_seconds, retry
        self.heartbeat = heartbeat
        self.previews = previews  # per image of a generate job (JANUS_PREVIEWS)

    def run(self, batch: list[Claimed]) -> dict[str, str]:
        """Runs claimed jobs of one type together; returns each job's status by id afterwards."""
        info = batch_info(batch)
        log.info("batch %s of %d %s jobs (%d images): %s", info["id"], len(batch), batch[0].type,
                 info.get("images", 0), " ".join(job.id for job in batch))
        with LeaseKeeper(self.db, self.worker_name, [job.id for job in batch], self.lease_seconds), \
                self._shown_on_heartbeat(batch, info):
            crash_if_poisoned(batch)
            return self._run(batch, info)

    def _shown_on_heartbeat(self, batch: list[Claimed], info: dict):
        if self.heartbeat is None:
            return nullcontext()
        return self.heartbeat.batch(info["id"], batch[0].type, [job.id for job in batch], batch_size(info))

    def _run(self, batch: list[Claimed], info: dict) -> dict[str, str]:
        reporters = BatchProgress.reporters(self.db, [job.id for job in batch], self.progress_interval,
                                            {job.id: job.deadline_at for job in batch})
        statuses: dict[str, str] = {}
        try:
            ready = []
            for job in batch:
                try:
                    ready.append((job, model_request(job, self.storage, reporters[job.id], self.previews)))
                except Exception as exc:  # noqa: BLE001 - a bad input fails its own job only
                    statuses[job.id] = self._fail(job, reporters[job.id], exc)
            if ready:
                outcomes = self._outcomes(batch[0].type, [request for _, request in ready])
                served = self.model_provider().served_settings[batch[0].type]
                for (job, _), outcome in zip(ready, outcomes):
                    statuses[job.id] = self._conclude(job, outcome, reporters[job.id], info, served)
        except Exception as exc:  # noqa: BLE001 - e.g. the soft time limit, mid-storage
            for job in batch:
                if job.id not in statuses:
                    statuses[job.id] = self._fail(job, reporters[job.id], exc)
        return statuses

    # -- the model call --------------------------------------------------------------------
    def _outcomes(self, job_type: str, requests: list) -> list:
        model = self.model_provider()
        call = model.generate_images_batch if job_type == GENERATE else model.answer_batch
        try:
            outcomes = list(call(requests))
            if len(outcomes) != len(requests):
                raise RuntimeError(f"the model returned {len(outcomes)} outcomes for {len(requests)} requests")
            return outcomes
        except Exception as exc:  # noqa: BLE001 - the whole batch failed
            if len(requests) == 1 or error_code_of(exc) == "time_limit":
                return [exc] * len(requests)
            log.warning("batch of %d failed (%s: %s); running each job alone to find the culprit",
                        len(requests), type(exc).__name__, exc)
            return self._one_by_one(call, requests)

    def _one_by_one(self, call, requests: list) -> list:
        outcomes: list = []
        for request in requests:
            if outcomes and isinstance(outcomes[-1], BaseException) and error_code_of(outcomes[-1]) == "time_limit":
                outcomes.append(outcomes[-1])  # out of time: do not start the rest
                continue
            try:
                [outcome] = call([request])
            except Exception as exc:  # noqa: BLE001 - this job is the culprit
                outcome = exc
            outcomes.append(outcome)
        return outcomes

    # -- finishing each job ----------------------------------------------------------------
    def _conclude(self, job: Claimed, outcome, reporter: ProgressReporter, info: dict, served: dict) -> str:
        if isinstance(outcome, GenerationStopped):
            if reporter.stop_reason == DEADLINE:  # says why, where a client's own cancel says nothing
                return self._finish(job, states.CANCELED, reporter, error_code=DEADLINE, error_message=STOPPED_MESSAGE)
            return self._finish(job, states.CANCELED, reporter)
        if isinstance(outcome, BaseException):
            return self._fail(job, reporter, outcome)
        try:
            result = store_result(job, outcome, self.storage)
        except Exception as exc:  # noqa: BLE001 - storage fails this job, the rest go on
            return self._fail(job, reporter, exc)
        # The result and the final status commit together, and only while this attempt is ours.
        # `model`: what the checkpoint chose beyond the job's params (its prompt format, normalization).
        return self._finish(job, states.SUCCEEDED, reporter, result={**result, "batch": info, "model": served},
                            progress=1.0, output=result.get("text"))

    def _fail(self, job: Claimed, reporter: ProgressReporter, exc: BaseException) -> str:
        """Retry a transient fault later while attempts remain; else fail with the error kept."""
        log.error("job %s attempt %d failed", job.id, job.attempt, exc_info=(type(exc), exc, exc.__traceback__))
        error = {"error_code": error_code_of(exc), "error_message": str(exc)[:2000] or type(exc).__name__}
        if self.retry.should_retry(exc, job.attempt):
            delay = self.retry.delay(job.attempt)
            with self.db.session() as session:
                won = states.retry_later(session, job.id, self._holder(job), delay, **error)
            if won:
                log.info("job %s will be retried in %.1f s (attempt %d of %d)", job.id, delay, job.attempt + 1,
                         self.retry.max_attempts)
                return states.QUEUED
        return self._finish(job, states.FAILED, reporter, **error)

    def _finish(self, job: Claimed, status: str, reporter: ProgressReporter, output: str | None = None,
                **fields) -> str:
        """`output`: an answer's text, streamed last before the final status (jobs/events.py)."""
        with self.db.session() as session:
            if output is not None:
                reporter.record_output(session, output)
            won = states.transition(session, job.id, status, only_from={states.RUNNING}, holder=self._holder(job),
                                    run_seconds=reporter.elapsed(), step_seconds=reporter.seconds_per_step(),
                                    **fields)
            if not won:
                events.take_recorded(session)  # no longer this worker's job: its events are not the job's
        if won:
            log.info("job %s %s in %.2f s", job.id, status, reporter.elapsed())
        else:
            log.warning("job %s is no longer this worker's attempt %d; not marked %s", job.id, job.attempt, status)
            # Deleted while it ran (DELETE /v1/jobs/<id>): what this attempt stored is nobody's now.
            clean_up_if_deleted(self.db, self.storage, job.id)
        return status

    def _holder(self, job: Claimed) -> states.Holder:
        return states.Holder(self.worker_name, job.attempt)


def batch_info(batch: list[Claimed]) -> dict:
    """Stored with each job's result, so anyone can see which jobs ran together."""
    info = {"id": uuid.uuid4().hex[:12], "jobs": len(batch)}
    if batch[0].type == GENERATE:
        info["images"] = sum(job.weight for job in batch)
    return info


def batch_size(info: dict) -> int:
    """Rows the model runs: images (generate) or answers (understand), the units of the caps."""
    return info.get("images", info["jobs"])


def error_code_of(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "SoftTimeLimitExceeded":
        return "time_limit"
    if name == "StorageError":
        return "storage_error"
    if name == "OutOfMemoryError":
        return "out_of_memory"
    if name in ("OperationalError", "InterfaceError"):
        return "database_error"
    return "model_error"

"""The one result shape: Job, what every call that returns a job returns.

    Job.id         the job's id
    Job.kind       "generate" or "understand" (the API's `type`)
    Job.status     queued, running, succeeded, failed, canceled or expired
    Job.progress   0.0 to 1.0
    Job.images     generate, once downloaded: the PNGs as bytes, or PIL images (pil=True); else []
    Job.image_urls generate, succeeded: the images' URLs (signed when auth is on: usable without a key)
    Job.answer     understand, succeeded: the answer text; else None
    Job.error      JobError(code, message) for a failed, canceled or expired job; else None
    Job.timings    Timings: created_at, started_at, finished_at (ISO 8601 text), queue_seconds, run_seconds
    Job.seed       the seed it ran with (the service picks one when the request gave none)
    Job.raw        the API's JSON for the job, untouched: everything else (params, priority, urls, ...)

Fields are only ever added to this list, never renamed or removed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "canceled", "expired"})


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Timings:
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    queue_seconds: float | None = None
    run_seconds: float | None = None


@dataclass
class Job:
    id: str
    kind: str
    status: str
    progress: float = 0.0
    images: list[Any] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)
    answer: str | None = None
    error: JobError | None = None
    timings: Timings = field(default_factory=Timings)
    seed: int | None = None
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_api(cls, data: dict) -> "Job":
        result = data.get("result") or {}
        error = data.get("error")
        metrics = data.get("metrics") or {}
        return cls(
            id=data["id"], kind=data.get("type", ""), status=data.get("status", ""),
            progress=float(data.get("progress") or 0.0),
            image_urls=[image["url"] for image in result.get("images", [])],
            answer=result.get("text") if "text" in result else None,
            error=JobError(error.get("code", ""), error.get("message", "")) if error else None,
            timings=Timings(data.get("created_at"), data.get("started_at"), data.get("finished_at"),
                            metrics.get("queue_seconds"), metrics.get("run_seconds")),
            seed=(data.get("params") or {}).get("seed"),
            raw=data,
        )

    @property
    def done(self) -> bool:
        """Whether the job is finished (whichever way)."""
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

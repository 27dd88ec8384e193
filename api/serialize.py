"""The job as users see it (see JobOut in api/schemas.py)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from jobs.lifecycle import priority_name
from jobs.models import Job
from jobs.retention import expires_at


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def job_to_dict(job: Job, root: str, *, result_ttl: int = 0, sign: Callable[[str], str] | None = None,
                deliveries: list | None = None) -> dict:
    """`job`: a Job, or a row with its columns (service.read_job). `root` is the absolute URL of
    the API (no trailing slash), for links users can follow; `result_ttl` the retention setting
    (for expires_at); `sign` turns an image path into the query string of a signed URL
    (api/signed_urls.py), when images need one. `deliveries`: its webhook deliveries
    (jobs/webhooks/outbox.deliveries_of); None for a job without a webhook, and in a delivery's body."""
    base = root + job_path(job.id)
    return {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "progress": round(job.progress or 0.0, 4),
        "params": job.params,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "expires_at": _iso(expires_at(job, result_ttl)),
        "expired_result": job.result_expired_at is not None,
        "metrics": {
            "queue_seconds": _seconds(job.created_at, job.started_at),
            "run_seconds": round(job.run_seconds, 3) if job.run_seconds is not None else None,
        },
        "attempts": job.attempts or 0,
        "retry_of": job.retry_of,
        "priority": priority_name(job.priority),
        "deadline_at": _iso(job.deadline_at),
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "result": _result(job, root, sign),
        "urls": {"self": base, "cancel": f"{base}/cancel", "retry": f"{base}/retry"},
        "webhook": job.webhook,
        "webhook_events": job.webhook_events,
        "webhook_deliveries": None if deliveries is None else [delivery_to_dict(row) for row in deliveries],
    }


def delivery_to_dict(row) -> dict:
    return {"id": row.id, "event": row.event, "status": row.status, "attempts": row.attempts,
            "status_code": row.status_code, "last_error": row.last_error, "created_at": _iso(row.created_at),
            "last_attempt_at": _iso(row.last_attempt_at),
            "next_attempt_at": _iso(row.next_attempt_at) if row.status == "pending" else None,
            "finished_at": _iso(row.finished_at)}


def _result(job: Job, root: str, sign: Callable[[str], str] | None) -> dict | None:
    if job.result is None:
        return None
    if "images" in job.result:
        result = {"images": [
            {"url": _image_url(root, job.id, index, sign), "width": image["width"], "height": image["height"],
             "content_type": image["content_type"]}
            for index, image in enumerate(job.result["images"])
        ]}
    else:
        result = {"text": job.result.get("text", "")}
    if "batch" in job.result:  # which jobs ran together (README: result.batch)
        result["batch"] = job.result["batch"]
    result["model"] = job.result.get("model")  # what the checkpoint chose (prompt format, normalization)
    return result


def _image_url(root: str, job_id: str, index: int, sign: Callable[[str], str] | None) -> str:
    path = f"{job_path(job_id)}/images/{index}"
    return f"{root}{path}?{sign(path)}" if sign else root + path


def _iso(value: datetime | None) -> str | None:
    # In UTC whatever zone the database session hands timestamps back in.
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None

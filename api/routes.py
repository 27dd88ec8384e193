"""The /v1/jobs resource: create, read, list, cancel, retry, delete, images."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, g, jsonify, redirect, request
from sqlalchemy.exc import IntegrityError

from api import scheduling, webhooks
from api.auth import authenticate
from api.errors import ApiError
from api.images import validate_image
from api.schemas import parse_job_request, parse_list_query
from api.serialize import job_path, job_to_dict
from api.services import Services, services
from api.signed_urls import image_signer
from jobs import limits, retention, service, states
from jobs.models import Job, new_job_id
from jobs.queue import BrokerUnavailable
from jobs.storage import attachment
from jobs.webhooks import outbox

log = logging.getLogger(__name__)
jobs_api = Blueprint("jobs_api", __name__)
jobs_api.before_request(authenticate)  # every route here needs a key when auth is on
# A declined wait's hint: poll the job's Location after this long.
DECLINED_WAIT_RETRY_AFTER_SECONDS = 1


@jobs_api.post("/v1/jobs")
def create_job():
    svc = services()
    parsed = parse_job_request(request.mimetype, _json_body(), _form(), _files(),
                               svc.settings.max_prompt_chars)
    job, replayed = submit(svc, parsed)
    return _created(svc, job, replayed=replayed)


def submit(svc: Services, parsed) -> tuple[Job, bool]:
    """The one way a request becomes a job (POST /v1/jobs, api/openai_compat.py): checked against
    the model, the tenant's cap, Idempotency-Key and Cancel-After, stored and queued.
    (the job, whether an earlier request with the same Idempotency-Key had made it)."""
    _check_fits_model(svc, parsed.request)
    params = {key: value for key, value in parsed.params.items() if key != "type"}
    plan = scheduling.for_create(parsed.request, request.headers.get(scheduling.CANCEL_AFTER))
    webhook = webhooks.for_create(parsed.request, svc.settings.webhook_allow_private)
    key = _idempotency_key()
    # A request without a webhook keeps the fingerprint it had before webhooks existed.
    fingerprinted = {**params, **plan.fingerprint_fields(), **(webhook.fingerprint_fields() if webhook else {})}
    fingerprint = service.request_fingerprint(parsed.type, fingerprinted, parsed.image_bytes)
    if key and (earlier := _earlier_job(svc, key, fingerprint)):
        return earlier, True
    job_id = new_job_id()
    input_key = None
    if parsed.type == "understand":
        # A cheap early refusal before the upload is stored; a job without one (generate) is
        # checked only in its inserting transaction: one transaction per submit.
        _check_unfinished_cap(svc)
        image = validate_image(parsed.image_bytes, svc.settings.max_image_pixels)
        input_key = f"jobs/{job_id}/input"
        # Stored before the row exists: a worker never sees a job without its input.
        svc.storage.put(input_key, image.png_bytes, "image/png")
        params["image"] = {"width": image.width, "height": image.height, "format": image.format}
    job = service.new_job(parsed.type, params, job_id=job_id, input_key=input_key, owner=g.tenant,
                          idempotency_key=key, request_hash=fingerprint, priority=plan.priority,
                          deadline_seconds=plan.deadline_seconds, **(webhook.job_fields(_root()) if webhook else {}))
    try:
        # The exact cap check, with the insert (see jobs/limits.py).
        limits.insert_within_cap(svc.db, job, svc.settings.max_unfinished_jobs)
    except IntegrityError:  # the same key committed by a concurrent request first
        _forget_input(svc, job_id, input_key)
        return _earlier_job(svc, key, fingerprint), True
    except limits.TooManyUnfinishedJobs as exc:
        _forget_input(svc, job_id, input_key)
        raise _too_many_unfinished(exc.limit) from None
    _publish(svc, job_id, job.type)
    return job, False


def _check_unfinished_cap(svc: Services) -> None:
    limit = svc.settings.max_unfinished_jobs
    if limit:
        with svc.db.session() as session:
            if limits.count_unfinished(session, g.tenant) >= limit:
                raise _too_many_unfinished(limit)


# When to try again after the unfinished-jobs cap: the next finish is unknowable here, so one
# poll interval, which keeps a well-behaved client from hammering without making it wait long.
UNFINISHED_RETRY_AFTER_SECONDS = 5


def _too_many_unfinished(limit: int) -> ApiError:
    return ApiError.of("too_many_unfinished_jobs",
                       f"{limit} jobs are already queued or running; wait for some to finish",
                       headers={"Retry-After": str(UNFINISHED_RETRY_AFTER_SECONDS)})


def _forget_input(svc: Services, job_id: str, input_key: str | None) -> None:
    if input_key:
        svc.storage.delete_prefix(f"jobs/{job_id}/")


def _created(svc: Services, job, replayed: bool = False):
    """202 with the job; with `Prefer: wait=N`, 200 if it finished within N seconds."""
    wait = requested_wait(request.headers.get("Prefer"), svc.settings.max_wait_seconds)
    declined = False
    if wait and job.status not in states.TERMINAL:
        job, declined = wait_for(svc, job, wait)
    response = jsonify(_job_out(job))
    response.status_code = 200 if job.status in states.TERMINAL else 202
    response.headers["Location"] = job_path(job.id)
    if declined:  # no Preference-Applied: the client polls Location instead
        response.headers["Retry-After"] = str(DECLINED_WAIT_RETRY_AFTER_SECONDS)
    elif wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def requested_wait(prefer: str | None, limit: int) -> int:
    """Seconds from a `Prefer: wait=N` header (RFC 7240), capped at `limit`; 0 when absent."""
    for preference in (prefer or "").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return min(int(value.strip()), limit)
    return 0


def wait_for(svc: Services, job, seconds: int):
    """(the job once finished or after `seconds`, False), or at once (job, True) when this
    process already holds as many waiting requests as it may (api/waits.py)."""
    with svc.waits.place() as placed:
        if not placed:
            return job, True
        finished = svc.waits.wait_until_finished(job.id, seconds)
    if finished is not None:
        return finished, False
    # Still going: as it is now (running, its progress), read as a poll reads it.
    current = service.read_job(svc.db, job.id, owner=job.owner)
    if current is None:  # deleted while the request waited
        raise _no_such_job(job.id)
    return current, False


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise ApiError.of("validation_error", "Idempotency-Key must be 1-255 printable ASCII characters",
                          "Idempotency-Key")
    return key


def _earlier_job(svc: Services, key: str, fingerprint: str):
    """The job an earlier request with this key created, if any; 409 if it asked for another thing."""
    with svc.db.session() as session:
        job = service.find_by_idempotency_key(session, key, owner=g.tenant)
    if job is not None and job.request_hash != fingerprint:
        raise ApiError.of("conflict", "this Idempotency-Key was used for a different request",
                          "Idempotency-Key")
    return job


def _json_body():
    if request.mimetype != "application/json":
        return None
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError.of("invalid_json", "request body is not valid JSON")
    return body


def _form():
    return request.form if request.mimetype == "multipart/form-data" else None


def _files():
    return request.files if request.mimetype == "multipart/form-data" else None


def _check_fits_model(svc: Services, job_request) -> None:
    budget = svc.prompt_budget
    field = "prompt" if job_request.type == "generate" else "question"
    reserved = budget.reserved_tokens_in(getattr(job_request, field))
    if reserved:
        raise ApiError.of("validation_error", f"{field} contains the model's reserved token {reserved[0]!r}", field)
    if job_request.type == "generate":
        fits = budget.generation_fits(job_request.prompt)
    else:
        fits = budget.understanding_fits(job_request.question, job_request.max_new_tokens)
    if not fits:
        raise ApiError.of("prompt_too_long", f"{field} is longer than the model's context allows", field)


def _publish(svc: Services, job_id: str, job_type: str) -> None:
    """The committed row is the promise; the message only hurries it along.

    With the broker down the job stays queued and is accepted all the same: the sweeper
    publishes it as soon as the broker is back (published_at cleared = at its next sweep).
    """
    try:
        svc.publisher.publish(job_id, job_type)
    except BrokerUnavailable as exc:
        log.warning("job %s accepted but not yet published (%s); the sweeper will publish it", job_id, exc)
        with svc.db.session() as session:
            service.mark_unpublished(session, job_id)


@jobs_api.get("/v1/jobs/<job_id>")
def get_job(job_id: str):
    svc = services()
    job = service.read_job(svc.db, job_id, owner=g.tenant)
    if job is None:
        raise _no_such_job(job_id)
    return jsonify(_job_out(job))


@jobs_api.get("/v1/jobs")
def list_jobs():
    svc = services()
    filters = _list_filters()
    with svc.db.session() as session:
        try:
            page = service.list_jobs(session, owner=g.tenant, **filters)
        except service.InvalidCursor as exc:
            raise ApiError.of("validation_error", str(exc), "cursor") from None
    deliveries = outbox.deliveries_of(svc.db, [job.id for job in page.jobs if job.webhook])  # one read
    return jsonify({"data": [_job_out(job, deliveries.get(job.id)) for job in page.jobs],
                    "next_cursor": page.next_cursor})


def _list_filters() -> dict:
    query = parse_list_query(request.args)
    return {"status": query.status, "job_type": query.type, "limit": query.limit, "cursor": query.cursor}


@jobs_api.post("/v1/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    svc = services()
    with svc.db.session() as session:
        job = _require_job(session, job_id)
        if not states.request_cancel(session, job_id):
            raise ApiError.of("conflict", f"job already {job.status}; nothing to cancel", "status")
        session.refresh(job)  # the conditional UPDATE bypassed the loaded object
    # 202 while a running job has yet to reach its next checkpoint and stop.
    return jsonify(_job_out(job)), 200 if job.status == states.CANCELED else 202


@jobs_api.post("/v1/jobs/<job_id>/retry")
def retry_job(job_id: str):
    """A new job with the failed, canceled or expired one's input, parameters, priority and deadline
    length (a new seed where the service had chosen it), pointing back at it with retry_of."""
    svc = services()
    with svc.db.read_session() as session:
        original = _require_job(session, job_id)
    if original.status not in states.RETRYABLE:
        raise ApiError.of("conflict", f"job is {original.status}; only a failed, canceled or expired job can be "
                                      "retried", "status")
    plan = scheduling.for_retry(original, request.headers.get(scheduling.CANCEL_AFTER))
    new_id = new_job_id()
    input_key = _copy_input(svc, original, new_id)
    job = service.new_job(original.type, service.retry_params(original), job_id=new_id,
                          input_key=input_key, owner=g.tenant, retry_of=original.id, priority=plan.priority,
                          deadline_seconds=plan.deadline_seconds, **webhooks.for_retry(original))
    try:
        limits.insert_within_cap(svc.db, job, svc.settings.max_unfinished_jobs)
    except limits.TooManyUnfinishedJobs as exc:
        _forget_input(svc, new_id, input_key)
        raise _too_many_unfinished(exc.limit) from None
    _publish(svc, job.id, job.type)
    return _created(svc, job)


def _copy_input(svc: Services, original, new_id: str) -> str | None:
    """The retry gets its own copy of the input image, so deleting either job keeps the other's."""
    if not original.input_key:
        return None
    try:
        data = svc.storage.get(original.input_key)
    except KeyError:
        raise ApiError.of("conflict", f"job {original.id}'s input image is no longer stored; submit it again",
                          "input") from None
    input_key = f"jobs/{new_id}/input"
    svc.storage.put(input_key, data, "image/png")
    return input_key


@jobs_api.delete("/v1/jobs/<job_id>")
def delete_job(job_id: str):
    """The job and its stored files, now; a queued or running job is canceled first (see
    jobs/retention.py for a worker still running it)."""
    svc = services()
    if service.read_job(svc.db, job_id, owner=g.tenant) is None:
        raise _no_such_job(job_id)
    retention.delete_job(svc.db, svc.storage, job_id)
    return Response(status=204)


@jobs_api.get("/v1/jobs/<job_id>/images/<int:index>")
def get_image(job_id: str, index: int):
    svc = services()
    with svc.db.session() as session:
        job = _image_job(session, job_id)
    images = (job.result or {}).get("images")
    if job.status != states.SUCCEEDED or not images:
        raise ApiError.of("not_found", f"job {job_id} has no images (status {job.status})")
    if index >= len(images):
        raise ApiError.of("not_found", f"job {job_id} has {len(images)} images; no index {index}")
    if job.result_expired_at is not None:
        raise ApiError.of("result_expired", f"job {job_id}'s images were deleted at "
                          f"{job.result_expired_at.isoformat()}, JANUS_RESULT_TTL after it finished")
    key = images[index]["key"]
    # ?download=true: saved as a file, not shown. A page's <a download> cannot ask for that once
    # the image comes from another origin (the 307 to S3), so the response itself must.
    download_as = f"janus-{job_id[:8]}-{index}.png" if _download_asked() else None
    url = svc.storage.presigned_url(key, svc.settings.url_ttl, download_as=download_as)
    if url:
        return redirect(url, code=307)
    try:
        data = svc.storage.get(key)
    except KeyError:  # deleted a moment ago (DELETE, retention)
        raise ApiError.of("not_found", f"job {job_id}'s image {index} is no longer stored") from None
    headers = {"Cache-Control": "private, max-age=3600"}
    if download_as:
        headers["Content-Disposition"] = attachment(download_as)
    return Response(data, mimetype=images[index]["content_type"], headers=headers)


def _download_asked() -> bool:
    value = request.args.get("download", "false").strip().lower()
    if value not in {"true", "false", "1", "0"}:
        raise ApiError(422, "validation_error", "download must be true or false", "download")
    return value in {"true", "1"}


def _image_job(session, job_id: str):
    if g.get("signed_url"):  # the signature names this job: whoever holds the URL may fetch it
        job = session.get(Job, job_id)
        if job is None:
            raise ApiError.of("not_found", f"no job {job_id}")
        return job
    return _require_job(session, job_id)


def _require_job(session, job_id: str):
    job = service.get_job(session, job_id, owner=g.tenant)
    if job is None:
        raise _no_such_job(job_id)
    return job


def _no_such_job(job_id: str) -> ApiError:
    # Another tenant's job is answered exactly like a missing one.
    return ApiError.of("not_found", f"no job {job_id}")


def _root() -> str:
    return request.host_url.rstrip("/")


def _job_out(job, deliveries: list | None = None) -> dict:
    return job_out(services(), job, _root(), deliveries)


def job_out(svc: Services, job, root: str, deliveries: list | None = None) -> dict:
    """The job as users see it (GET, and an event stream's `completed`); with a webhook, its
    deliveries too (read here unless given)."""
    if job.webhook and deliveries is None:
        deliveries = outbox.deliveries_of(svc.db, [job.id])[job.id]
    return job_to_dict(job, root, result_ttl=svc.settings.result_ttl, sign=image_signer(svc),
                       deliveries=deliveries)

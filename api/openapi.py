"""The OpenAPI 3.1 document, generated from the pydantic models in api/schemas.py.

Schemas come from `model_json_schema`, so the documented bounds are the validated bounds.
The one bound that is configuration, the prompt length, is written in from the settings.
"""
from __future__ import annotations

import copy
from importlib import metadata
from typing import Any

from pydantic import BaseModel, TypeAdapter

from api import schemas
from jobs.lifecycle import MAX_DEADLINE_SECONDS

REF_TEMPLATE = "#/components/schemas/{model}"
SCHEMA_DIALECT = "https://spec.openapis.org/oas/3.1/dialect/base"
IMAGE_MEDIA_TYPES = "image/png, image/jpeg, image/webp, image/bmp, image/gif"
BEARER = "bearerAuth"
SIGNED_URL = "signedUrl"
# The text fields capped by max_prompt_chars, per request schema.
CAPPED_TEXT = {"GenerateRequest": "prompt", "UnderstandRequest": "question"}


def build_openapi(settings_max_prompt_chars: int | None = None) -> dict[str, Any]:
    """The whole document; `settings_max_prompt_chars` defaults to the settings' default."""
    max_chars = settings_max_prompt_chars or schemas.DEFAULT_MAX_PROMPT_CHARS
    components = _component_schemas(max_chars)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": SCHEMA_DIALECT,
        "info": {
            "title": "Janus job queue",
            "version": _version(),
            "description": (
                "Asynchronous jobs for DeepSeek's Janus model: image generation from text "
                "(`generate`) and questions about an image (`understand`). Create a job, "
                "then poll it by id until its status is succeeded, failed, canceled or expired. "
                "Requests to /v1 carry an API key (`Authorization: Bearer <key>`, made with "
                "`janusq keys create`) unless the server runs with auth off on loopback; each "
                "key sees only its tenant's jobs."
            ),
        },
        # Every operation needs a key unless it says `security: []` (the probes, metrics, this).
        "security": [{BEARER: []}],
        "paths": _paths(),
        "webhooks": _webhooks(),
        "components": {
            "schemas": components,
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `janusq keys create`, as `Authorization: Bearer <key>`.",
                },
                SIGNED_URL: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "signature",
                    "description": "Image URLs only: the `expires` and `signature` query parameters of an image "
                                   "URL from a job's result (HMAC-SHA256, valid JANUS_URL_TTL seconds).",
                },
            },
        },
    }


# --- schemas -------------------------------------------------------------------------


def _component_schemas(max_chars: int) -> dict[str, Any]:
    components: dict[str, Any] = {}
    _add(components, "JobRequest", TypeAdapter(schemas.JobRequest).json_schema(
        ref_template=REF_TEMPLATE, mode="validation"))
    for model in (schemas.JobOut, schemas.JobList, schemas.WorkerList, schemas.ErrorOut):
        _add(components, model.__name__, _response_schema(model))
    for name, field in CAPPED_TEXT.items():
        components[name]["properties"][field]["maxLength"] = max_chars
    components["JobRequestForm"] = _form_schemas(components)
    from api.openai_openapi import add_components  # imports this module: here, not at the top

    add_components(components)
    return components


def _response_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization")


def _add(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    """Hoist the schema's $defs into components, then add the schema itself."""
    schema = dict(schema)
    for def_name, definition in schema.pop("$defs", {}).items():
        _put(components, def_name, definition)
    _put(components, name, schema)


def _put(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in components and components[name] != schema:
        # Two different models sharing a name would silently overwrite each other.
        raise ValueError(f"two different schemas are both named {name!r}")
    components[name] = schema


def _form_schemas(components: dict[str, Any]) -> dict[str, Any]:
    """multipart/form-data: the same request fields, with the image as a file part."""
    mapping = {}
    for name, job_type in (("GenerateRequest", "generate"), ("UnderstandRequest", "understand")):
        form = copy.deepcopy(components[name])
        form["title"] = f"{name}Form"
        if "image" in form["properties"]:
            form["properties"]["image"] = {
                "type": "string",
                "contentMediaType": "application/octet-stream",
                "description": "The image file: PNG, JPEG, WEBP, BMP or GIF (first frame).",
            }
        components[f"{name}Form"] = form
        mapping[job_type] = REF_TEMPLATE.format(model=f"{name}Form")
    return {
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "type", "mapping": mapping},
        "description": (
            "Each field is a form part holding its value as text (numbers as decimal text); "
            "bounds are the same as for JSON."
        ),
    }


# --- paths ---------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ErrorOut")}


def _job_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("JobOut")}


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
    "description": "The job's id.",
}
CANCEL_AFTER = {
    "name": "Cancel-After", "in": "header", "required": False,
    "description": "The job's deadline, in whole seconds from now: still queued then, it ends `expired` without "
                   "running; running, it stops at its next checkpoint and ends `canceled` (error code "
                   "`deadline`). Unrelated to `Prefer: wait`.",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DEADLINE_SECONDS},
}
LOCATION = {
    "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
}
# What a client (and schemathesis' stateful tests) can do next with the job it created.
JOB_LINKS = {
    "GetJob": {"operationId": "getJob", "parameters": {"job_id": "$response.body#/id"}},
    "CancelJob": {"operationId": "cancelJob", "parameters": {"job_id": "$response.body#/id"}},
    "RetryJob": {"operationId": "retryJob", "parameters": {"job_id": "$response.body#/id"}},
    "DeleteJob": {"operationId": "deleteJob", "parameters": {"job_id": "$response.body#/id"}},
}
NOT_FOUND = _error("No such job, or another tenant's (code not_found).")
UNAVAILABLE = _error("The database or queue is unreachable (code unavailable).")
UNAUTHORIZED = {
    **_error("No API key, or one that is unknown or revoked (code unauthorized)."),
    "headers": {"WWW-Authenticate": {"description": "The Bearer challenge (RFC 6750).",
                                     "schema": {"type": "string"}}},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again: until the key's rate-limit "
                                              "window resets (rate_limited), or one poll interval "
                                              "(too_many_unfinished_jobs).",
                               "schema": {"type": "integer", "minimum": 1}}}
RATE_LIMITED = {
    **_error("Over the API key's requests per minute (code rate_limited); see Retry-After."),
    "headers": RETRY_AFTER,
}
OPEN = {"security": []}
WAIT_HEADERS = {
    "Preference-Applied": {"description": "`wait=N`: the answer waited (Prefer: wait=N); absent when "
                                          "no wait was asked for or it was declined.",
                           "schema": {"type": "string"}},
    "Retry-After": {"description": "The wait was declined (this API process holds as many as it may): "
                                   "poll Location after this many seconds.",
                    "schema": {"type": "integer", "minimum": 1}},
}


def _guarded(operation: dict[str, Any]) -> dict[str, Any]:
    """An operation behind the API key: it may also answer 401 and 429."""
    responses = {**operation["responses"], "401": UNAUTHORIZED}
    responses.setdefault("429", RATE_LIMITED)
    return {**operation, "responses": responses}


def _job_events() -> dict[str, Any]:
    return {
        "operationId": "streamJobEvents",
        "summary": "Stream a job's events (server-sent events)",
        "description": (
            "Sent as text/event-stream while the job runs: `status` ({status, error?}: each transition), "
            "`progress` ({progress, step, steps, eta_seconds}), `output` ({text}: an understand job's answer "
            "so far; the last equals result.text), `preview` ({tokens, images: [{index, url}]}: a generate job's "
            "images drawn so far as small JPEG data URLs), then `completed` (the job exactly as GET /v1/jobs/{job_id} "
            "returns it, id `completed`), and the stream closes. Every event has an `id` and an `at` time; "
            "a client that reconnects with Last-Event-ID gets the events after that one, and one that "
            "connects after the job finished gets its history and `completed` at once. Comments "
            "(`: ping`) keep idle streams open. Beyond the API process's cap on held requests "
            "(JANUS_MAX_WAITING_REQUESTS) the stream sends what there is and closes: reconnect."),
        "parameters": [
            JOB_ID,
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "The id of the last event received: the stream resumes after it. "
                            "`completed` is answered 204 (nothing more will come)."},
            {"name": "last_event_id", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "The same, for clients that cannot set headers."},
        ],
        "responses": {
            "200": {"description": "The event stream.",
                    # One event as a stream reader parses it (what schemathesis checks each one against).
                    "content": {"text/event-stream": {"schema": SSE_EVENT}}},
            "204": {"description": "Last-Event-ID was `completed`: the client has every event."},
            "404": NOT_FOUND,
            "406": _error("The request does not accept text/event-stream (code not_acceptable)."),
            "422": _error("Last-Event-ID is not an id of this stream (code validation_error)."),
            "503": UNAVAILABLE,
        },
    }


SSE_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string"},
        "event": {"type": "string", "enum": ["status", "progress", "output", "preview", "completed"]},
        "data": {"type": "string", "description": "The event's JSON, as described above."},
        "retry": {"type": "integer"},
    },
}


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {"post": _guarded(_create_job()), "get": _guarded(_list_jobs())},
        "/v1/jobs/{job_id}": {
            "get": _guarded({
                "operationId": "getJob",
                "summary": "Get a job",
                "parameters": [JOB_ID],
                "responses": {"200": _job_response("The job."), "404": NOT_FOUND, "503": UNAVAILABLE},
            }),
            "delete": _guarded(_delete_job()),
        },
        "/v1/jobs/{job_id}/events": {"get": _guarded(_job_events())},
        "/v1/jobs/{job_id}/cancel": {
            "post": _guarded({
                "operationId": "cancelJob",
                "summary": "Cancel a job",
                "parameters": [JOB_ID],
                "responses": {
                    "200": _job_response("The job, now canceled."),
                    "202": _job_response(
                        "Cancellation requested: a running job stops at its next checkpoint."
                    ),
                    "404": NOT_FOUND,
                    "409": _error("The job can no longer be canceled (code conflict)."),
                    "503": UNAVAILABLE,
                },
            })
        },
        "/v1/jobs/{job_id}/retry": {
            "post": _guarded({
                "operationId": "retryJob",
                "summary": "Retry a failed, canceled or expired job",
                "description": "A new job with the same input, parameters and priority; a new seed unless the "
                               "original's seed was given in its request; the original's deadline length "
                               "counted from now, unless Cancel-After gives another. The new job's retry_of "
                               "names the original.",
                "parameters": [JOB_ID, CANCEL_AFTER],
                "responses": {
                    "202": {**_job_response("The new job, queued."), "headers": LOCATION},
                    "404": NOT_FOUND,
                    "409": _error("The job is queued, running or succeeded, or its input image is no "
                                  "longer stored (code conflict)."),
                    "422": _error("Cancel-After is not whole seconds in range (validation_error)."),
                    "429": {**_error("Over the key's rate limit (rate_limited) or the tenant's unfinished-jobs "
                                     "cap (too_many_unfinished_jobs); nothing was created."),
                            "headers": RETRY_AFTER},
                    "503": UNAVAILABLE,
                },
            })
        },
        "/v1/jobs/{job_id}/images/{index}": {"get": _guarded(_get_image())},
        "/v1/workers": {"get": _guarded(_list_workers())},
        **_openai_paths(),
        "/healthz": {"get": _probe("healthz", "Liveness: the API process is up.", ready=False)},
        "/readyz": {"get": _probe("readyz", "Readiness: database and queue reachable.", ready=True)},
        "/metrics": {
            "get": {
                **OPEN,
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                **OPEN,
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }


def _openai_paths() -> dict[str, Any]:
    from api.openai_openapi import openai_paths

    return openai_paths()


def _create_job() -> dict[str, Any]:
    return {
        "operationId": "createJob",
        "summary": "Create a job",
        "description": (
            "Validates the request, stores the job and queues it; returns at once. "
            "An understand job's image may be a data URL (JSON) or a file part (multipart). "
            "With an Idempotency-Key header, a retry of the same request returns the job the "
            "first one created (header Idempotent-Replayed: true) instead of a new one. "
            "With `Prefer: wait=N` the answer waits up to N seconds (at most the server's "
            "JANUS_MAX_WAIT_SECONDS) for the job to finish: 200 if it did, else 202, with "
            "Preference-Applied. An API process holding as many waits as it may "
            "(JANUS_MAX_WAITING_REQUESTS) declines the wait: 202 at once, no Preference-Applied, "
            "Retry-After: poll Location then. "
            "`Cancel-After` (or `deadline_seconds` in the body) sets the job's deadline; the wait "
            "is no deadline and never cancels the job."
        ),
        "parameters": [{
            "name": "Idempotency-Key", "in": "header", "required": False,
            "description": "Client-chosen key (1-255 printable ASCII characters) that makes retries safe.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255},
        }, {
            "name": "Prefer", "in": "header", "required": False,
            "description": "`wait=N`: wait up to N seconds for the job to finish (RFC 7240).",
            "schema": {"type": "string"},
        }, CANCEL_AFTER],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _ref("JobRequest")},
                "multipart/form-data": {
                    "schema": _ref("JobRequestForm"),
                    "encoding": {"image": {"contentType": IMAGE_MEDIA_TYPES}},
                },
            },
        },
        "responses": {
            "200": {
                "description": "Finished within the time asked for with `Prefer: wait=N`.",
                "headers": {**LOCATION, "Preference-Applied": WAIT_HEADERS["Preference-Applied"]},
                "content": _json("JobOut"),
                "links": JOB_LINKS,
            },
            "202": {
                "description": "Queued (or still running after the wait asked for, or the wait declined).",
                "headers": {**LOCATION, **WAIT_HEADERS},
                "content": _json("JobOut"),
                "links": JOB_LINKS,
            },
            "400": _error("The body is not a JSON object (code invalid_json)."),
            "409": _error("The Idempotency-Key was used for a different request (code conflict)."),
            "413": _error("The body is larger than the upload limit (code payload_too_large)."),
            "415": _error(
                "Not JSON or multipart (unsupported_media_type), or an image format other "
                "than PNG, JPEG, WEBP, BMP, GIF (unsupported_image_format)."
            ),
            "422": _error(
                "A field or the Cancel-After header is invalid: validation_error, prompt_too_long, "
                "invalid_image, image_too_large; `field` names it. A webhook whose host resolves to a private, "
                "loopback or link-local address is refused (field webhook) unless JANUS_WEBHOOK_ALLOW_PRIVATE."
            ),
            "429": {
                **_error(
                    "Over the API key's requests per minute (rate_limited; see Retry-After), or "
                    "the tenant already has JANUS_MAX_UNFINISHED_JOBS jobs queued or running "
                    "(too_many_unfinished_jobs); nothing was created."
                ),
                "headers": RETRY_AFTER,
            },
            "503": UNAVAILABLE,
        },
    }


def _webhooks() -> dict[str, Any]:
    """What a job's `webhook` receives (OpenAPI 3.1's webhooks; README.md, "Webhooks")."""
    def header(name: str, description: str) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": True, "description": description,
                "schema": {"type": "string"}}

    return {"jobEvent": {"post": {
        "operationId": "jobEvent",
        "summary": "A job's event, POSTed to its webhook",
        "description": (
            "Sent for each event the job's `webhook_events` asks for: start (a worker started it), progress "
            "(while it runs, at most one every 2 s), completed (it reached a final status). The body is the job as "
            "GET /v1/jobs/{id} returns it at the event (webhook_deliveries null). Signed per Standard Webhooks "
            "(https://www.standardwebhooks.com) with the tenant's secret (`janusq webhooks secret`). Delivered "
            "at least once: anything but a 2xx within JANUS_WEBHOOK_TIMEOUT seconds is retried with the same "
            "webhook-id, with backoff, for JANUS_WEBHOOK_RETRY_SECONDS; redirects are not followed."),
        "security": [],
        "parameters": [
            header("webhook-id", "The delivery's id (msg_...), the same on each of its retries: deduplicate by it."),
            header("webhook-timestamp", "The attempt's time, Unix seconds."),
            header("webhook-signature", "`v1,` + base64 of HMAC-SHA256 over `<webhook-id>.<webhook-timestamp>."
                                        "<body>`, keyed with the base64-decoded part of the tenant's whsec_ secret."),
        ],
        "requestBody": {"required": True, "content": _json("JobOut")},
        "responses": {"200": {"description": "Received (any 2xx). Anything else is retried."}},
    }}}


def _list_jobs() -> dict[str, Any]:
    query = schemas.ListJobsQuery.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(query.get("required", ()))
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": prop.get("description", ""),
            "schema": _without_null(prop),
        }
        for name, prop in query["properties"].items()
    ]
    return {
        "operationId": "listJobs",
        "summary": "List jobs, newest first",
        "parameters": parameters,
        "responses": {
            "200": {"description": "A page of jobs.", "content": _json("JobList")},
            "422": _error("A query parameter is invalid (code validation_error)."),
            "503": UNAVAILABLE,
        },
    }


def _list_workers() -> dict[str, Any]:
    return {
        "operationId": "listWorkers",
        "summary": "List the workers (admin keys only)",
        "description": (
            "Every worker's heartbeat row: who it is, where it runs, its status and the batch it "
            "runs. For operators: needs an API key made with `janusq keys create --admin` "
            "(open when the server runs with auth off on loopback)."
        ),
        "responses": {
            "200": {"description": "The workers.", "content": _json("WorkerList")},
            "403": _error("The API key is not an admin key (code forbidden)."),
            "503": UNAVAILABLE,
        },
    }


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is either absent or a value: drop the `null` branch."""
    schema = {k: v for k, v in prop.items() if k not in ("description", "title")}
    branches = [b for b in schema.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _delete_job() -> dict[str, Any]:
    return {
        "operationId": "deleteJob",
        "summary": "Delete a job and its stored files",
        "description": (
            "Deletes the job's images and uploaded input from storage and the job itself, now; "
            "a GET then answers 404. A queued or running job is canceled first (a running job's "
            "worker stops at its next checkpoint, and whatever it still stores is deleted too)."
        ),
        "parameters": [JOB_ID],
        "responses": {
            "204": {"description": "Deleted."},
            "404": NOT_FOUND,
            "503": _error("The database or object storage is unreachable (code unavailable); nothing "
                          "was deleted, or only some files: delete again."),
        },
    }


def _get_image() -> dict[str, Any]:
    return {
        "operationId": "getJobImage",
        "summary": "One generated image",
        "description": (
            "The image bytes, or a 307 redirect to a signed object-storage URL, depending "
            "on the storage backend. With auth on, the URLs in a job's result are signed "
            "(`expires`, `signature`) and need no API key until they expire; such a request "
            "is judged by its signature alone."
        ),
        # Either an API key or the URL's own signature.
        "security": [{BEARER: []}, {SIGNED_URL: []}],
        "parameters": [
            JOB_ID,
            {
                "name": "index",
                "in": "path",
                "required": True,
                "schema": {"type": "integer", "minimum": 0, "maximum": schemas.MAX_NUM_IMAGES - 1},
                "description": "Position in the job's result.images, from 0.",
            },
            {
                "name": "expires",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0},
                "description": "A signed URL's expiry (Unix time), as given in the job's result.",
            },
            {
                "name": "download",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
                "description": "true: answered as an attachment (Content-Disposition), so that a browser "
                               "saves the file, named janus-<job id's first 8>-<index>.png; with S3 the "
                               "redirect's signed URL asks S3 for that header. Adding it to a signed URL "
                               "keeps the signature valid.",
            },
        ],
        "responses": {
            "200": {
                "description": "The image.",
                "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}},
            },
            "307": {"description": "Redirect to the stored image.", "headers": LOCATION},
            "403": _error("The URL's signature is not valid (invalid_signature) or has expired "
                          "(signature_expired: GET the job again for fresh URLs)."),
            "404": _error("No such job, the job has no such image, or it is not finished."),
            "410": _error("The job's stored files were deleted by retention (code result_expired)."),
            "422": _error("`download` is neither true nor false (code validation_error)."),
            "503": _error("The database or object storage is unreachable (code unavailable)."),
        },
    }


def _probe(operation_id: str, summary: str, *, ready: bool) -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "checks": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Each dependency: ok, or down with the reason.",
            },
        },
        "additionalProperties": True,
    }
    responses: dict[str, Any] = {
        "200": {"description": "OK.", "content": {"application/json": {"schema": body}}}
    }
    if ready:
        responses["503"] = {
            "description": "A dependency is unreachable.",
            "content": {"application/json": {"schema": body}},
        }
    return {**OPEN, "operationId": operation_id, "summary": summary, "responses": responses}


def _version() -> str:
    try:
        return metadata.version("janusq")
    except metadata.PackageNotFoundError:
        return "0.0.0"

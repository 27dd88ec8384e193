"""OpenAI-compatible endpoints, for tools that already speak that API: POST /v1/images/generations
(generate jobs) and POST /v1/chat/completions (understand jobs, streamed or not).

Each request becomes an ordinary job through the same path as POST /v1/jobs (routes.submit:
listed, cancelable, counted against the tenant's cap and rate limit, Idempotency-Key and
Cancel-After honoured) and is answered when the job finishes, parked in the wait room like
`Prefer: wait` (api/waits.py) for at most JANUS_MAX_WAIT_SECONDS. A job that has not finished
by then, or failed, or was canceled, is answered with an error naming the job, so the client can
poll it; those errors say `x-should-retry: false`, since the openai package would otherwise
retry them and make a second job. A streamed answer follows the job's event stream
(api/events.py) and sends each `output` event's new text as a chat.completion.chunk.

Errors take OpenAI's shape, {"error": {"message", "type", "param", "code"}}, so the openai
package raises its typed exceptions; `code` is the service's own error code.
"""
from __future__ import annotations

import base64
import json
import logging
import time
from contextlib import contextmanager

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError

from api.auth import authenticate
from api.errors import ApiError
from api.events import JobStream
from api.openai_schemas import SIZE, ChatRequest, ImagePart, ImagesRequest, TextPart
from api.routes import job_out, submit, wait_for
from api.schemas import ParsedJob, api_error_from_validation, validate_job_request
from api.serialize import job_path
from api.services import Services, services
from jobs import service, states
from jobs.events import OUTPUT

log = logging.getLogger(__name__)
openai_api = Blueprint("openai_api", __name__)
openai_api.before_request(authenticate)

# The job's field names as the client knows them (errors name the client's `param`).
IMAGE_PARAMS = {"prompt": "prompt", "num_images": "n", "seed": "seed", "cfg_weight": "cfg_weight"}
CHAT_PARAMS = {"question": "messages", "image": "messages", "max_new_tokens": "max_tokens",
               "temperature": "temperature", "top_p": "top_p", "seed": "seed"}
# Fields of OpenAI's image endpoints that Janus has no use for, with why.
IMAGE_EDIT_FIELDS = ("image", "mask")
# A model entry's `created`: OpenAI's is when the model was made; here, when this process started.
SERVING_SINCE = int(time.time())
NO_RETRY = {"x-should-retry": "false"}  # read by the openai package before its own retry rules


# --- routes --------------------------------------------------------------------------------


@openai_api.post("/v1/images/generations")
def create_images():
    svc = services()
    body = _json_object()
    _refuse_what_janus_cannot_draw(body)
    images = _validated(ImagesRequest, body)
    fields = {"type": "generate", "prompt": images.prompt, "num_images": images.n,
              **_given(seed=images.seed, cfg_weight=images.cfg_weight)}
    job = _finished(svc, _submit(svc, fields, IMAGE_PARAMS))
    response = jsonify({"created": int(time.time()), "data": _image_data(svc, job, images.response_format),
                        "output_format": "png", "size": SIZE})
    response.headers["Location"] = job_path(job.id)
    return response


@openai_api.post("/v1/chat/completions")
def create_chat_completion():
    svc = services()
    chat = _validated(ChatRequest, _json_object())
    question, image = _question_and_image(chat)
    params = {**CHAT_PARAMS, "max_new_tokens": "max_completion_tokens" if chat.max_completion_tokens is not None
              else "max_tokens"}
    fields = {"type": "understand", "question": question, "image": image,
              **_given(max_new_tokens=_max_tokens(chat), temperature=chat.temperature, top_p=chat.top_p,
                       seed=chat.seed)}
    job = _submit(svc, fields, params)
    model, created = svc.settings.model, int(time.time())
    if chat.stream:
        stream = ChatStream(svc, job, model, created, until=time.monotonic() + svc.settings.max_wait_seconds)
        return Response(iter(stream), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                 "Location": job_path(job.id)})
    job = _finished(svc, job)
    response = jsonify({"id": job.id, "object": "chat.completion", "created": created, "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                     "message": {"role": "assistant", "content": _answer(job), "refusal": None}}],
                        "usage": None})
    response.headers["Location"] = job_path(job.id)
    return response


@openai_api.get("/v1/models")
def list_models():
    """The one model this service serves, as OpenAI's model list: many tools list the models
    before their first call, and some pick the `model` they send from it."""
    model = services().settings.model
    return jsonify({"object": "list", "data": [{"id": model, "object": "model", "created": SERVING_SINCE,
                                                "owned_by": "janusq"}]})


# --- requests ------------------------------------------------------------------------------


def _json_object() -> dict:
    body = request.get_json(silent=True) if request.mimetype == "application/json" else None
    if not isinstance(body, dict):
        raise ApiError.of("invalid_json", "send a JSON object with Content-Type: application/json")
    return body


def _validated(model: type[BaseModel], body: dict):
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise api_error_from_validation(exc) from None


def _refuse_what_janus_cannot_draw(body: dict) -> None:
    for name in IMAGE_EDIT_FIELDS:
        if name in body:
            raise ApiError.of("validation_error", f"{name}: image edits and variations are not supported; "
                                                  "/v1/images/generations draws from a prompt only", name)
    if body.get("size", SIZE) not in (SIZE, "auto"):
        raise ApiError.of("validation_error", f"size must be {SIZE} (or auto): Janus draws {SIZE} images only "
                                              f"(got {str(body['size'])[:40]!r})", "size")


def _question_and_image(chat: ChatRequest) -> tuple[str, str]:
    content = chat.messages[0].content
    parts = [TextPart(type="text", text=content)] if isinstance(content, str) else content
    images = [part.image_url.url for part in parts if isinstance(part, ImagePart)]
    question = "\n\n".join(part.text for part in parts if isinstance(part, TextPart))
    if len(images) != 1:
        raise ApiError.of("validation_error", "the user message must hold exactly one image_url part (a data URL): "
                                              f"Janus answers questions about one image (got {len(images)})",
                          "messages")
    if not images[0].startswith("data:"):
        raise ApiError.of("validation_error", "image_url.url must be a data URL (data:image/png;base64,...); "
                                              "this server does not fetch remote images", "messages")
    return question, images[0]


def _max_tokens(chat: ChatRequest) -> int | None:
    if chat.max_tokens is not None and chat.max_completion_tokens is not None \
            and chat.max_tokens != chat.max_completion_tokens:
        raise ApiError.of("validation_error", "max_tokens and max_completion_tokens disagree; give one of them",
                          "max_completion_tokens")
    return chat.max_completion_tokens if chat.max_completion_tokens is not None else chat.max_tokens


def _given(**fields) -> dict:
    """Only the fields the client gave: the rest take the job's own defaults."""
    return {name: value for name, value in fields.items() if value is not None}


def _submit(svc: Services, fields: dict, params: dict[str, str]):
    with _client_names(params):
        job_request = validate_job_request(fields, svc.settings.max_prompt_chars)
        image = getattr(job_request, "image", None)
        job, _replayed = submit(svc, ParsedJob(request=job_request, image_bytes=image))
    return job


@contextmanager
def _client_names(params: dict[str, str]):
    """An error about a job field names the request field it came from (`n`, not num_images)."""
    try:
        yield
    except ApiError as error:
        if error.field in params:
            error.message = error.message.replace(error.field, params[error.field], 1)
            error.field = params[error.field]
        raise


# --- the job's outcome ---------------------------------------------------------------------


class JobNotDone(ApiError):
    """The request's job exists but has no answer to give (yet): the error carries its id."""

    def __init__(self, status: int, code: str, message: str, job_id: str, headers: dict | None = None):
        super().__init__(status, code, f"{message}; GET {job_path(job_id)} for it",
                         headers={"Location": job_path(job_id), **NO_RETRY, **(headers or {})})
        self.job_id = job_id

    def to_response_body(self) -> dict:
        body = super().to_response_body()
        body["error"]["job_id"] = self.job_id
        return body


def _finished(svc: Services, job):
    """The job once succeeded, waited for in the wait room; JobNotDone otherwise."""
    # With waits off (JANUS_MAX_WAIT_SECONDS=0) no place is taken in the room, to wait no time.
    if job.status not in states.TERMINAL and svc.settings.max_wait_seconds > 0:
        job, declined = wait_for(svc, job, svc.settings.max_wait_seconds)
        if declined:
            raise JobNotDone(503, "unavailable", f"job {job.id} was created, but this API process holds as many "
                                                 "waiting requests as it may", job.id, {"Retry-After": "1"})
    if job.status != states.SUCCEEDED:
        raise outcome_error(job, svc.settings.max_wait_seconds)
    return job


def outcome_error(job, waited: int) -> JobNotDone:
    if job.status not in states.TERMINAL:
        return JobNotDone(504, "job_not_finished", f"job {job.id} is still {job.status} after {waited} s "
                                                   "(JANUS_MAX_WAIT_SECONDS)", job.id)
    if job.status == states.FAILED:
        return JobNotDone(500, job.error_code or "job_failed",
                          f"job {job.id} failed: {job.error_message or 'no reason recorded'}", job.id)
    reason = f" ({job.error_message})" if job.error_message else ""
    return JobNotDone(409, f"job_{job.status}", f"job {job.id} was {job.status}{reason}", job.id)


def _image_data(svc: Services, job, response_format: str) -> list[dict]:
    if response_format == "b64_json":
        return [{"b64_json": base64.b64encode(svc.storage.get(image["key"])).decode()}
                for image in job.result["images"]]
    shown = job_out(svc, job, request.host_url.rstrip("/"))  # absolute URLs, signed when auth is on
    return [{"url": image["url"]} for image in shown["result"]["images"]]


def _answer(job) -> str:
    return (job.result or {}).get("text", "")


# --- streaming -----------------------------------------------------------------------------


class ChatStream(JobStream):
    """The job's event stream as OpenAI's: `data: {chat.completion.chunk}` for each new piece of
    the answer (an `output` event holds the whole answer so far), `data: [DONE]` at the end, or
    `data: {"error": ...}` and no [DONE] when the job ends without an answer. No `retry:`, `id:`
    or `event:` lines: OpenAI's clients would take them for chunks."""

    def __init__(self, svc: Services, job, model: str, created: int, until: float):
        super().__init__(svc, job, None, render=lambda job: {}, until=until)
        self.model, self.created, self.sent = model, created, ""

    def opening(self) -> str:
        return self._chunk({"role": "assistant", "content": ""})

    def send(self, event):
        if event.kind == OUTPUT:
            yield from self._grow(event.data.get("text", ""), final=False)

    def complete(self, job):
        if job.status != states.SUCCEEDED:
            yield _error_event(outcome_error(job, 0))
            return
        yield from self._grow(_answer(job), final=True)
        yield self._chunk({}, finish_reason="stop")
        yield "data: [DONE]\n\n"

    def timed_out(self):
        current = service.read_job(self.svc.db, self.job.id, owner=self.job.owner) or self.job  # queued or running
        yield _error_event(outcome_error(current, self.svc.settings.max_wait_seconds))

    def _declined(self):
        yield _error_event(JobNotDone(503, "unavailable", f"job {self.job.id} was created, but this API process "
                                                          "holds as many streams as it may", self.job.id))

    def _grow(self, text: str, final: bool):
        # While decoding, a last character may be half a UTF-8 sequence (U+FFFD): held back until whole.
        text = text if final else text.rstrip("\ufffd")
        if not text.startswith(self.sent):
            if final:
                log.warning("job %s: its answer does not extend the text streamed so far", self.job.id)
            return
        if len(text) > len(self.sent):
            delta, self.sent = text[len(self.sent):], text
            yield self._chunk({"content": delta})

    def _chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        return _data({"id": self.job.id, "object": "chat.completion.chunk", "created": self.created,
                      "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                                        "logprobs": None}]})


def _data(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _error_event(error: ApiError) -> str:
    return _data({"error": openai_error(error.status, error.to_response_body()["error"])})


# --- errors in OpenAI's shape --------------------------------------------------------------


def openai_error(status: int, error: dict) -> dict:
    """The service's {"code", "message", "field"} as OpenAI's {"message", "type", "param", "code"}."""
    shaped = {"message": error.get("message", ""), "type": _error_type(status), "param": error.get("field"),
              "code": error.get("code")}
    if error.get("job_id"):
        shaped["job_id"] = error["job_id"]
    return shaped


def _error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
        status, "invalid_request_error")


@openai_api.after_request
def _in_openai_shape(response: Response) -> Response:
    """Every error of these routes, whichever handler made it (auth, 413, a database down), in
    OpenAI's shape: rewritten here, once, rather than in each handler."""
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    error = (response.get_json(silent=True) or {}).get("error")
    if isinstance(error, dict) and "type" not in error:
        response.set_data(json.dumps({"error": openai_error(response.status_code, error)}))
    return response

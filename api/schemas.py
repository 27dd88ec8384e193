"""Request and response models, and the one function that turns a create request into a job.

The same pydantic models validate JSON bodies and multipart forms (form strings are first
converted to the field types), so bounds and error messages cannot drift apart; the OpenAPI
document (api/openapi.py) is generated from these models too.

Bodies are validated in strict mode: `"4"` is not a number in JSON and `true` is not an
integer. Only multipart form values, which are always text, are converted, once, here.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Mapping, Protocol, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import PydanticCustomError

from api.errors import ApiError
from jobs.lifecycle import MAX_DEADLINE_SECONDS, PRIORITIES
from jobs.settings import Settings
from jobs.webhooks.addresses import MAX_URL_LENGTH, url_problem

JobType = Literal["generate", "understand"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "canceled", "expired"]
Priority = Literal["low", "normal", "high"]
WebhookEvent = Literal["start", "progress", "completed"]
JOB_TYPES: tuple[str, ...] = get_args(JobType)
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)

# Used when a model is validated without a context (a notebook, a test); the API always
# passes the configured value through `parse_job_request(..., max_prompt_chars=...)`.
DEFAULT_MAX_PROMPT_CHARS: int = Settings.model_fields["max_prompt_chars"].default
CONTEXT_MAX_PROMPT_CHARS = "max_prompt_chars"

MAX_NUM_IMAGES = 16
MAX_NEW_TOKENS = 1024
MAX_SEED = 2**63  # exclusive: seeds must fit a signed 64-bit integer

DATA_URL_PATTERN = r"^data:image/[A-Za-z0-9.+-]+(;[A-Za-z0-9.+-]+=[^;,]*)*;base64,"
_DATA_URL = re.compile(DATA_URL_PATTERN, re.IGNORECASE)
_WHITESPACE = {ord(c): None for c in " \t\r\n\f\v"}


# --- shared field pieces -------------------------------------------------------------


def decode_data_url(value: str) -> bytes:
    """`data:image/<subtype>[;k=v];base64,<payload>` -> bytes; PydanticCustomError otherwise."""
    match = _DATA_URL.match(value)
    if match is None:
        raise PydanticCustomError(
            "invalid_image", "image must be a data URL like data:image/png;base64,..."
        )
    payload = value[match.end():].translate(_WHITESPACE)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError(
            "invalid_image", "image data URL does not hold valid base64"
        ) from None
    if not data:
        raise PydanticCustomError("invalid_image", "image is empty")
    return data


def _image_input(value: Any) -> bytes:
    # JSON gives a data URL string; a multipart upload gives the file's bytes already.
    if isinstance(value, str):
        return decode_data_url(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        if not value:
            raise PydanticCustomError("invalid_image", "image is empty")
        return bytes(value)
    raise PydanticCustomError(
        "invalid_image", "image must be a data URL string like data:image/png;base64,..."
    )


ImageInput = Annotated[
    bytes,
    BeforeValidator(_image_input),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DATA_URL_PATTERN,
            "description": (
                "The image as a data URL, e.g. data:image/png;base64,iVBOR... "
                "PNG, JPEG, WEBP, BMP or GIF (first frame). In multipart/form-data "
                "send it as a file part named `image` instead."
            ),
        }
    ),
]

Seed = Annotated[int, Field(ge=0, lt=MAX_SEED)]
DeadlineSeconds = Annotated[int, Field(ge=1, le=MAX_DEADLINE_SECONDS)]

# Both request kinds take these; they go on the job's own fields (priority, deadline_at), not
# into its params, hence exclude.
PRIORITY_DESCRIPTION = ("Which queued jobs workers take first: high before normal before low; within "
                        "one priority the oldest first, taken in turn across tenants (fair share).")
DEADLINE_DESCRIPTION = (f"Seconds from now, 1 to {MAX_DEADLINE_SECONDS}, after which the job is no longer "
                        "wanted: still queued then, it ends `expired` without running; running, it stops at "
                        "its next checkpoint and ends `canceled` with error code `deadline`. The same as a "
                        "`Cancel-After` header.")


def _check_chars(value: str, info: ValidationInfo) -> str:
    context = info.context if isinstance(info.context, Mapping) else {}
    limit = context.get(CONTEXT_MAX_PROMPT_CHARS) or DEFAULT_MAX_PROMPT_CHARS
    if len(value) > limit:
        raise PydanticCustomError(
            "prompt_too_long",
            "{field} must be at most {limit} characters (got {chars})",
            {"field": info.field_name, "limit": limit, "chars": len(value)},
        )
    return value


_REQUEST_CONFIG = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class _WebhookFields(BaseModel):
    """Both request kinds take these; they go on the job's own columns (exclude: not its params)."""

    model_config = _REQUEST_CONFIG

    webhook: str | None = Field(
        None, exclude=True, max_length=MAX_URL_LENGTH,
        description=("An http:// or https:// URL to POST the job's events to, signed per Standard Webhooks "
                     "(headers webhook-id, webhook-timestamp, webhook-signature; see the webhooks section). "
                     "A host that resolves to a private, loopback or link-local address is refused unless the "
                     "server allows it (JANUS_WEBHOOK_ALLOW_PRIVATE)."))
    webhook_events: list[WebhookEvent] | None = Field(
        None, exclude=True, min_length=1,
        description=("Which events to deliver (needs `webhook`): start (the job started running), progress "
                     "(while it runs, at most one every 2 s), completed (it reached a final status: succeeded, "
                     "failed, canceled or expired). Default [\"completed\"]. In multipart/form-data: comma-separated text."))

    @field_validator("webhook")
    @classmethod
    def _check_webhook(cls, value: str | None) -> str | None:
        problem = url_problem(value) if value is not None else None
        if problem:
            raise PydanticCustomError("invalid_webhook", "{problem}", {"problem": problem})
        return value

    @field_validator("webhook_events")
    @classmethod
    def _one_of_each(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        # `webhook` is validated first (declared first); absent from info.data when it was invalid.
        if value is not None and "webhook" in info.data and info.data["webhook"] is None:
            raise PydanticCustomError("webhook_events_without_webhook", "needs a webhook")
        return list(dict.fromkeys(value)) if value is not None else None


# --- requests ------------------------------------------------------------------------


class GenerateRequest(_WebhookFields):
    """Text-to-image: `num_images` images for one prompt."""

    model_config = _REQUEST_CONFIG

    type: Literal["generate"]
    prompt: str = Field(
        min_length=1,
        description=(
            "What to draw. Surrounding whitespace is stripped; must not be empty; at most "
            "the server's max_prompt_chars characters (Unicode code points)."
        ),
    )
    num_images: int = Field(4, ge=1, le=MAX_NUM_IMAGES, description="Images to generate.")
    cfg_weight: float = Field(
        5.0,
        ge=0,
        le=50,
        allow_inf_nan=False,
        description=(
            "Classifier-free guidance weight; 1 disables guidance, larger follows the "
            "prompt more closely. Bounded to 0..50: values far above ~10 only degrade images."
        ),
    )
    temperature: float = Field(
        1.0,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="Sampling temperature for image tokens; 0 means greedy decoding.",
    )
    seed: Seed | None = Field(
        None, description="Random seed for reproducible output, 0 <= seed < 2**63; omit for random."
    )
    priority: Priority = Field("normal", exclude=True, description=PRIORITY_DESCRIPTION)
    deadline_seconds: DeadlineSeconds | None = Field(None, exclude=True, description=DEADLINE_DESCRIPTION)

    @field_validator("prompt")
    @classmethod
    def cap_prompt(cls, value: str, info: ValidationInfo) -> str:
        return _check_chars(value, info)


class UnderstandRequest(_WebhookFields):
    """Image understanding: answer a question about one image."""

    model_config = _REQUEST_CONFIG

    type: Literal["understand"]
    question: str = Field(
        min_length=1,
        description=(
            "The question about the image. Surrounding whitespace is stripped; must not be "
            "empty; at most the server's max_prompt_chars characters."
        ),
    )
    # exclude: the bytes go to object storage, never into the job's params.
    image: ImageInput = Field(exclude=True, repr=False)
    max_new_tokens: int = Field(256, ge=1, le=MAX_NEW_TOKENS, description="Answer length cap, in tokens.")
    temperature: float = Field(
        0.1,
        ge=0,
        le=10,
        allow_inf_nan=False,
        description="Sampling temperature; 0 means greedy decoding.",
    )
    top_p: float = Field(
        0.95, gt=0, le=1, allow_inf_nan=False, description="Nucleus sampling mass, in (0, 1]."
    )
    seed: Seed | None = Field(
        None, description="Random seed for reproducible output, 0 <= seed < 2**63; omit for random."
    )
    priority: Priority = Field("normal", exclude=True, description=PRIORITY_DESCRIPTION)
    deadline_seconds: DeadlineSeconds | None = Field(None, exclude=True, description=DEADLINE_DESCRIPTION)

    @field_validator("question")
    @classmethod
    def cap_question(cls, value: str, info: ValidationInfo) -> str:
        return _check_chars(value, info)


JobRequest = Annotated[Union[GenerateRequest, UnderstandRequest], Field(discriminator="type")]
JOB_REQUEST_ADAPTER: TypeAdapter[GenerateRequest | UnderstandRequest] = TypeAdapter(JobRequest)
REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "generate": GenerateRequest,
    "understand": UnderstandRequest,
}


class ListJobsQuery(BaseModel):
    """Query parameters of GET /v1/jobs."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    status: JobStatus | None = Field(None, description="Only jobs in this status.")
    type: JobType | None = Field(None, description="Only jobs of this type.")
    limit: int = Field(20, ge=1, le=100, description="Page size.")
    # The alphabet of the cursors the API hands out (URL-safe base64, no padding): anything else
    # is refused here, and a URL-encoded non-ASCII cursor of 512 characters no longer outgrows
    # gunicorn's 4,094-byte request line (an undocumented 414).
    cursor: str | None = Field(
        None, min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` from the previous page.",
    )


# --- responses -----------------------------------------------------------------------


class _Out(BaseModel):
    # Every field is always sent, defaults included: document them all as required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


class JobMetrics(_Out):
    queue_seconds: float | None = Field(None, description="Seconds from creation to start.")
    run_seconds: float | None = Field(None, description="Seconds from start to finish.")


class JobErrorOut(_Out):
    code: str
    message: str


class ServedSettings(_Out):
    """What the served checkpoint chose for the job beyond its params: Janus-1.3B and Janus-Pro
    differ in these (their role names), not in the sampling defaults."""

    model_config = ConfigDict(extra="forbid")
    prompt_format: str = Field(description="The prompt as the model saw it, with {prompt} or {question} for the "
                                           "job's text (understanding: the image's 576 tokens stand at "
                                           "<image_placeholder>).")
    image_mean: list[float] | None = Field(None, description="Understanding: the per-channel mean images were "
                                                             "normalized with (the checkpoint's own).")
    image_std: list[float] | None = Field(None, description="Understanding: the per-channel std.")


class BatchOut(_Out):
    id: str = Field(description="The batch's id: jobs with the same id ran together, in one model batch.")
    jobs: int = Field(ge=1, description="How many jobs the batch held.")
    images: int | None = Field(None, ge=1, description="Images the batch generated (generate jobs only).")


class TextResult(_Out):
    model_config = ConfigDict(extra="forbid")
    text: str
    model: ServedSettings | None = Field(None, description="null for jobs finished before this was recorded.")
    batch: BatchOut | None = Field(None, description="The batch this job ran in.")


class ImageOut(_Out):
    url: str = Field(description="Where to fetch the image. With auth on it is signed (expires, signature) and "
                                 "needs no API key for JANUS_URL_TTL seconds; GET the job again for fresh ones.")
    width: int
    height: int
    content_type: str = Field(examples=["image/png"])


class ImagesResult(_Out):
    model_config = ConfigDict(extra="forbid")
    images: list[ImageOut]
    model: ServedSettings | None = Field(None, description="null for jobs finished before this was recorded.")
    batch: BatchOut | None = Field(None, description="The batch this job ran in.")


class JobUrls(_Out):
    self: str = Field(description="This job.")
    cancel: str = Field(description="POST here to cancel the job.")
    retry: str = Field(description="POST here to run a failed, canceled or expired job again, as a new job.")


class WebhookDeliveryOut(_Out):
    id: str = Field(description="The delivery's webhook-id header, the same on each of its attempts.")
    event: WebhookEvent
    status: Literal["pending", "delivered", "failed"] = Field(
        description="pending (not yet delivered; retried), delivered (a 2xx answer), failed (given up after "
                    "JANUS_WEBHOOK_RETRY_SECONDS).")
    attempts: int = Field(ge=0)
    status_code: int | None = Field(None, description="The HTTP status of the last attempt; null: no answer.")
    last_error: str | None = Field(None, description="Why the last attempt failed.")
    created_at: datetime
    last_attempt_at: datetime | None = None
    next_attempt_at: datetime | None = Field(None, description="When a pending delivery is tried next.")
    finished_at: datetime | None = None


class JobOut(_Out):
    id: str
    type: JobType
    status: JobStatus
    progress: float = Field(ge=0, le=1)
    params: dict[str, Any] = Field(description="The validated request, without the image.")
    created_at: datetime | None = Field(description="ISO 8601, UTC.")
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(None, description=(
        "When a finished job's stored files (images, uploaded input) are deleted: finished_at + "
        "JANUS_RESULT_TTL, or when they were; null while unfinished or when results are kept forever."))
    expired_result: bool = Field(False, description=(
        "The stored files were deleted by retention: image URLs answer 410 (code result_expired). "
        "The job itself stays until it is deleted."))
    metrics: JobMetrics
    attempts: int = Field(0, ge=0, description="Runs started so far; a retried or recovered job has more than 1.")
    retry_of: str | None = Field(None, description="The job this one retries (POST /v1/jobs/{id}/retry).")
    priority: Priority = Field("normal", description="Its claim priority (see the create request).")
    deadline_at: datetime | None = Field(None, description="When it stops being wanted (Cancel-After or "
                                                           "deadline_seconds); null: no deadline.")
    error: JobErrorOut | None = Field(None, description="Why it failed; on a queued job, why its last attempt "
                                                        "failed before the retry; on a job its deadline ended "
                                                        "(expired, or canceled while running), code deadline.")
    result: TextResult | ImagesResult | None = None
    urls: JobUrls
    webhook: str | None = Field(None, description="Where the job's events are POSTed; null: none.")
    webhook_events: list[WebhookEvent] | None = None
    webhook_deliveries: list[WebhookDeliveryOut] | None = Field(
        None, description="The job's webhook deliveries, oldest first (the latest 20): null for a job without a "
                          "webhook, and in the body of a delivery itself.")


class JobList(_Out):
    data: list[JobOut]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end.")


WorkerStatus = Literal["starting", "busy", "idle", "draining", "gone", "stopped"]


class WorkerBatchOut(_Out):
    id: str = Field(description="The batch id, also in each finished job's result.batch.")
    type: JobType
    jobs: list[str] = Field(description="Ids of the jobs in the batch.")
    size: int = Field(ge=1, description="Rows the model runs: images (generate) or answers (understand).")
    started_at: datetime


class WorkerOut(_Out):
    name: str = Field(description="The worker's Celery node name, e.g. gpu0@host: one per worker process.")
    status: WorkerStatus = Field(description=(
        "starting (loading its model), busy (running a batch), idle, draining (finishing its batch before "
        "it stops), gone (silent for three heartbeats: killed, hung or cut off), stopped (shut down "
        "cleanly)."))
    host: str
    pid: int = Field(description="The worker's main process on its host.")
    device: str = Field(examples=["cuda:0 (CUDA_VISIBLE_DEVICES=5)"])
    model: str
    queues: list[JobType]
    started_at: datetime
    last_seen_at: datetime = Field(description="Its last heartbeat.")
    seconds_since_seen: float = Field(ge=0)
    heartbeat_seconds: float = Field(gt=0, description="How often it beats.")
    stopped_at: datetime | None = None
    batch: WorkerBatchOut | None = Field(None, description=(
        "What it runs now; for a gone worker, what it ran when last heard from."))


class WorkerList(_Out):
    data: list[WorkerOut]


class ErrorBody(_Out):
    code: str = Field(examples=["validation_error"])
    message: str
    field: str | None = Field(None, description="The request field at fault, when there is one.")


class ErrorOut(_Out):
    error: ErrorBody


# --- parsing -------------------------------------------------------------------------


class FileLike(Protocol):
    """What a werkzeug FileStorage offers that we use."""

    filename: str | None

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class ParsedJob:
    request: GenerateRequest | UnderstandRequest
    image_bytes: bytes | None = None  # understand only: the raw upload, not yet checked as an image

    @property
    def type(self) -> str:
        return self.request.type

    @property
    def params(self) -> dict[str, Any]:
        """JSON-ready parameters to store on the job (the image, priority and deadline are excluded)."""
        return self.request.model_dump(mode="json")

    @property
    def priority(self) -> int:
        return PRIORITIES[self.request.priority]


_CUSTOM_CODES = {"invalid_image", "prompt_too_long"}


def api_error_from_validation(exc: ValidationError, *, tagged: bool = False) -> ApiError:
    """The first pydantic error as a 422 ApiError naming its field.

    `tagged`: errors come from the discriminated union, whose locations start with the tag.
    """
    error = exc.errors(include_url=False)[0]
    kind = error["type"]
    loc = list(error["loc"])
    if tagged and loc:
        loc = loc[1:]
    field = ".".join(str(part) for part in loc) or None
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        field = "type"
    code = kind if kind in _CUSTOM_CODES else "validation_error"
    return ApiError(422, code, _message(kind, field, error), field)


def _message(kind: str, field: str | None, error: Mapping[str, Any]) -> str:
    types = " or ".join(repr(t) for t in JOB_TYPES)
    if kind == "union_tag_not_found":
        return f"type is required: {types}"
    if kind == "union_tag_invalid":
        return f"type must be {types}"
    if kind == "missing":
        return f"{field} is required"
    if kind == "extra_forbidden":
        return f"unknown field {field!r}"
    if kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        return f"{field} must not be empty"
    if kind in _CUSTOM_CODES or field is None:
        return error["msg"]
    return f"{field}: {error['msg']}"


def validate_job_request(
    data: Mapping[str, Any], max_prompt_chars: int
) -> GenerateRequest | UnderstandRequest:
    """Validate an already-typed mapping (a JSON object) as a job request, or raise ApiError."""
    try:
        return JOB_REQUEST_ADAPTER.validate_python(
            data, context={CONTEXT_MAX_PROMPT_CHARS: max_prompt_chars}
        )
    except ValidationError as exc:
        raise api_error_from_validation(exc, tagged=True) from None


def parse_job_request(
    content_type: str,
    json_body: Any | None,
    form: Mapping[str, str] | None,
    files: Mapping[str, FileLike] | None,
    max_prompt_chars: int,
) -> ParsedJob:
    """Validate a create-job request from either body kind; raise ApiError on any fault.

    `json_body` is the parsed JSON (None when the body was not JSON or did not parse);
    `form`/`files` are the multipart fields and file parts (werkzeug MultiDicts work).
    The image comes back as raw bytes: check it with api.images.validate_image.
    """
    media_type = content_type.split(";", 1)[0].strip().lower() if content_type else ""
    if media_type == "application/json":
        if not isinstance(json_body, dict):
            raise ApiError(400, "invalid_json", "request body must be a JSON object")
        data: Mapping[str, Any] = json_body
    elif media_type == "multipart/form-data":
        data = _form_data(form or {}, files or {})
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send application/json or multipart/form-data "
            f"(got {media_type or 'no content type'})",
        )
    request = validate_job_request(data, max_prompt_chars)
    image = request.image if isinstance(request, UnderstandRequest) else None
    return ParsedJob(request=request, image_bytes=image)


def parse_list_query(args: Mapping[str, str]) -> ListJobsQuery:
    """GET /v1/jobs query string -> ListJobsQuery, or a 422 ApiError naming the parameter."""
    # `?status=&limit=` from a form with blank inputs means "not given", as for form fields.
    given = {
        key: value
        for key, value in _single_values(args).items()
        if not (isinstance(value, str) and not value.strip())
    }
    data = _convert_strings(ListJobsQuery, given)
    try:
        return ListJobsQuery.model_validate(data)
    except ValidationError as exc:
        raise api_error_from_validation(exc) from None


def _single_values(mapping: Mapping[str, Any]) -> dict[str, Any]:
    # werkzeug MultiDicts keep repeats; a repeated field is ambiguous, so refuse it.
    getlist = getattr(mapping, "getlist", None)
    values = {}
    for key in mapping:
        if getlist is not None and len(getlist(key)) > 1:
            raise ApiError(422, "validation_error", f"{key} is given more than once", key)
        values[key] = mapping[key]
    return values


def _form_data(form: Mapping[str, str], files: Mapping[str, FileLike]) -> dict[str, Any]:
    data: dict[str, Any] = _single_values(form)
    for key, upload in _single_values(files).items():
        if key in data:
            raise ApiError(422, "validation_error", f"{key} is given more than once", key)
        content = upload.read()
        if not content and not getattr(upload, "filename", None):
            continue  # a browser form with no file chosen sends an empty, nameless part
        data[key] = content
    model = REQUEST_MODELS.get(data.get("type")) if isinstance(data.get("type"), str) else None
    return _convert_strings(model, data) if model is not None else data


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _convert_strings(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """Form and query values are text: turn those of numeric fields into numbers.

    A value that does not look like a number is passed on unchanged so the model reports it
    exactly as it would for JSON. An empty value of a non-text field counts as not given.
    """
    converted = dict(data)
    for name, info in model.model_fields.items():
        raw = converted.get(name)
        if not isinstance(raw, str):
            continue
        if _is_list(info.annotation):  # a list field's form value: comma-separated
            items = [item.strip() for item in raw.split(",") if item.strip()]
            if items:
                converted[name] = items
            else:
                del converted[name]
            continue
        kinds = _scalar_types(info.annotation)
        if kinds & {str, bytes}:
            continue
        text = raw.strip()
        if not text:
            del converted[name]
        elif int in kinds and _INT.fullmatch(text):
            converted[name] = int(text)
        elif float in kinds and _FLOAT.fullmatch(text):
            converted[name] = float(text)
    return converted


def _scalar_types(annotation: Any) -> set[type]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _scalar_types(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return set().union(*(_scalar_types(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return {str}
    if annotation is NoneType:
        return set()
    return {annotation} if isinstance(annotation, type) else set()


def _is_list(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_list(arg) for arg in get_args(annotation))
    return get_origin(annotation) is list

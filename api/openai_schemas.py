"""Request and response models of the OpenAI-compatible endpoints (api/openai_compat.py).

Only what OpenAI's API defines and Janus can honour is accepted: a field that changes nothing
here (`model`, `user`, `quality`, `style`) is taken and ignored; one asking for what Janus cannot
do (another size, an edit's `image`/`mask`, a tool call) is refused with a 422 naming it, rather
than silently answered with something else. Unknown fields are refused too, as OpenAI does.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import MAX_NUM_IMAGES, MAX_SEED

SIZE = "384x384"  # Janus draws 384x384 images, nothing else


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ImagesRequest(_Request):
    """POST /v1/images/generations."""

    prompt: str = Field(description="What to draw (the job's `prompt`).")
    n: int = Field(1, ge=1, le=MAX_NUM_IMAGES, description="Images to generate (the job's `num_images`).")
    size: Literal["384x384", "auto"] = Field(SIZE, description="Janus draws 384x384 only; `auto` means that.")
    response_format: Literal["url", "b64_json"] = Field(
        "url", description="`url`: absolute image URLs (signed when auth is on: they work without the key for "
                           "JANUS_URL_TTL seconds); `b64_json`: the PNGs in the response.")
    model: str | None = Field(None, description="Ignored: the server's own model (JANUS_MODEL) answers.")
    quality: Literal["auto", "standard", "hd", "low", "medium", "high"] | None = Field(
        None, description="Accepted and ignored: Janus has one quality.")
    style: Literal["vivid", "natural"] | None = Field(None, description="Accepted and ignored.")
    user: str | None = Field(None, description="Accepted and ignored.")
    output_format: Literal["png"] | None = Field(None, description="PNG only.")
    background: Literal["auto", "opaque"] | None = Field(None, description="Opaque only.")
    moderation: Literal["auto", "low"] | None = Field(None, description="Accepted and ignored.")
    # Janus' own knobs, for clients that can send extra fields (the openai package's extra_body).
    seed: int | None = Field(None, ge=0, lt=MAX_SEED, description="Janus extension: the job's `seed`.")
    cfg_weight: float | None = Field(None, description="Janus extension: the job's `cfg_weight`.")


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ImageUrl(_Request):
    url: str = Field(description="A data URL (data:image/png;base64,...); remote URLs are not fetched.")
    detail: Literal["auto", "low", "high"] | None = Field(None, description="Accepted and ignored.")


class ImagePart(_Request):
    type: Literal["image_url"]
    image_url: ImageUrl


class UserMessage(_Request):
    role: Literal["user"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]] = Field(
        description="Text parts (joined with a blank line: the job's `question`) and exactly one image part.")
    name: str | None = None


class StreamOptions(_Request):
    include_usage: bool | None = Field(None, description="Accepted; token usage is not known here (null).")


class ChatRequest(_Request):
    """POST /v1/chat/completions: one user message, a question about one image."""

    messages: list[UserMessage] = Field(min_length=1, max_length=1, description="Exactly one user message.")
    model: str | None = Field(None, description="Ignored: the server's own model (JANUS_MODEL) answers.")
    stream: bool = Field(False, description="Send chat.completion.chunk server-sent events as the answer grows.")
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, description="The job's `max_new_tokens`.")
    max_completion_tokens: int | None = Field(None, description="The same as max_tokens (give one).")
    temperature: float | None = Field(None, description="The job's `temperature`.")
    top_p: float | None = Field(None, description="The job's `top_p`.")
    seed: int | None = Field(None, description="The job's `seed`.")
    n: Literal[1] | None = Field(None, description="One answer per request.")
    user: str | None = Field(None, description="Accepted and ignored.")


# --- responses (for the OpenAPI document; the routes build plain dicts) -----------------------


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class ImagesResponse(BaseModel):
    created: int = Field(description="Unix seconds.")
    data: list[ImageData]
    output_format: Literal["png"] = "png"
    size: Literal["384x384"] = SIZE


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str
    refusal: None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str = Field(description="The job's id: GET /v1/jobs/{id} shows it.")
    object: Literal["chat.completion"]
    created: int
    model: str = Field(description="The served model (JANUS_MODEL).")
    choices: list[Choice]
    usage: None = Field(None, description="Token counts are not known here.")


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(None, description="The request field at fault.")
    code: str | None = Field(None, description="The service's error code (README, errors).")
    job_id: str | None = Field(None, description="The job made for the request, when there is one: poll it.")


class OpenAIError(BaseModel):
    error: OpenAIErrorBody


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (ImagesResponse, ChatCompletion, OpenAIError)

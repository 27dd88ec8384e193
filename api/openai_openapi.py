"""The OpenAI-compatible endpoints' part of the OpenAPI document (api/openapi.py adds it)."""
from __future__ import annotations

from typing import Any

from api import openai_schemas
from api.openapi import REF_TEMPLATE, RETRY_AFTER, _add

MODELS = (openai_schemas.ImagesRequest, openai_schemas.ChatRequest)
ERROR = {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model="OpenAIError")}}}
# One server-sent event of a streamed answer as a stream reader parses it: `data` is a
# chat.completion.chunk's JSON, an {"error": ...} object, or [DONE].
MODEL_LIST = {
    "type": "object", "required": ["object", "data"],
    "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {
        "type": "object", "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                       "owned_by": {"type": "string"}}}}},
}
CHUNK_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}


def add_components(components: dict[str, Any]) -> None:
    for model in MODELS:
        _add(components, model.__name__, model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation"))
    for model in openai_schemas.RESPONSE_MODELS:
        _add(components, model.__name__, model.model_json_schema(ref_template=REF_TEMPLATE, mode="serialization"))


def openai_paths() -> dict[str, Any]:
    return {
        "/v1/images/generations": {"post": _operation(
            "createImages", "Generate images (OpenAI-compatible)",
            "A generate job (prompt, n = num_images, 384x384), answered when it finishes.",
            "ImagesRequest", {"application/json": {"schema": _ref("ImagesResponse")}})},
        "/v1/chat/completions": {"post": _operation(
            "createChatCompletion", "Answer a question about an image (OpenAI-compatible)",
            "An understand job from one user message holding text and one image_url part (a data URL); "
            "max_tokens (or max_completion_tokens), temperature, top_p and seed are the job's. With "
            "`stream: true` the answer comes as chat.completion.chunk server-sent events, then `data: [DONE]`.",
            "ChatRequest", {"application/json": {"schema": _ref("ChatCompletion")},
                            "text/event-stream": {"schema": CHUNK_EVENT}})},
        "/v1/models": {"get": {
            "operationId": "listModels",
            "summary": "The served model (OpenAI-compatible)",
            "description": "One entry: the model this service serves (JANUS_MODEL), as OpenAI's model list.",
            "responses": {
                "200": {"description": "The model list.",
                        "content": {"application/json": {"schema": MODEL_LIST}}},
                "401": _error("No API key, or one that is unknown or revoked (code unauthorized)."),
                "503": _error("The database is unreachable (auth needs it)."),
            },
        }},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def _error(description: str, headers: dict | None = None) -> dict[str, Any]:
    return {"description": description, "content": ERROR, **({"headers": headers} if headers else {})}


def _operation(operation_id: str, summary: str, description: str, request: str,
               answer: dict[str, Any]) -> dict[str, Any]:
    job_errors = ("The request's job ended without an answer, or could not be waited for; error.job_id names it "
                  "and Location points at it (x-should-retry: false):")
    return {
        "operationId": operation_id,
        "summary": summary,
        "description": description + " The job is an ordinary one (GET /v1/jobs lists it); the answer waits "
                                     "for it at most JANUS_MAX_WAIT_SECONDS. Errors take OpenAI's shape.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
        "responses": {
            "200": {"description": "The finished job's answer.", "content": answer,
                    "headers": {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}}},
            "400": _error("The body is not a JSON object (code invalid_json)."),
            "401": _error("No API key, or one that is unknown or revoked (code unauthorized)."),
            "409": _error(f"{job_errors} it was canceled or expired (code job_canceled, job_expired)."),
            "413": _error("The body is larger than the upload limit (code payload_too_large)."),
            "415": _error("The image's format is not one Janus reads (code unsupported_image_format)."),
            "422": _error("A field is invalid or asks for what Janus cannot do (another size, an edit, tools); "
                          "`param` names it."),
            "429": _error("Over the key's rate limit or the tenant's unfinished-jobs cap; nothing was created.",
                          RETRY_AFTER),
            "500": _error(f"{job_errors} it failed (code: the job's error code)."),
            "503": _error("The database, queue or storage is unreachable, or this API process holds as many "
                          "waiting requests as it may (then the job exists: error.job_id)."),
            "504": _error(f"{job_errors} it has not finished within JANUS_MAX_WAIT_SECONDS "
                          "(code job_not_finished); poll it."),
        },
    }

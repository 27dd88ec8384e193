"""Request validation: every bad input gets the right status, code and field."""
from __future__ import annotations

import base64
import io
from datetime import datetime, timezone

import pytest
from werkzeug.datastructures import FileStorage, MultiDict

from api.errors import ApiError
from api.schemas import (
    DEFAULT_MAX_PROMPT_CHARS,
    ErrorOut,
    GenerateRequest,
    JobList,
    JobOut,
    ParsedJob,
    UnderstandRequest,
    parse_job_request,
    parse_list_query,
)

MAX_CHARS = 50
PNG_BYTES = b"\x89PNG\r\n\x1a\nnot-checked-here"  # parse_job_request does not decode images
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()
MULTIPART = "multipart/form-data; boundary=xyz"


def gen(**fields):
    return {"type": "generate", "prompt": "a red cube", **fields}


def und(**fields):
    return {"type": "understand", "question": "what is this?", "image": DATA_URL, **fields}


def from_json(body, max_chars: int = MAX_CHARS) -> ParsedJob:
    return parse_job_request("application/json", body, None, None, max_chars)


def from_form(form, files=None, max_chars: int = MAX_CHARS) -> ParsedJob:
    return parse_job_request(MULTIPART, None, MultiDict(form), MultiDict(files or {}), max_chars)


def upload(data: bytes = PNG_BYTES, filename: str = "cat.png") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=filename, content_type="image/png")


def error_of(call, *args, **kwargs) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args, **kwargs)
    return info.value


def assert_error(err: ApiError, status: int, code: str, field: str | None) -> None:
    assert (err.status, err.code, err.field) == (status, code, field), repr(err)
    assert err.message


# --- JSON: generate ------------------------------------------------------------------


def test_generate_defaults_and_stripping():
    parsed = from_json(gen(prompt="  a red cube \n"))
    request = parsed.request
    assert isinstance(request, GenerateRequest)
    assert request.prompt == "a red cube"
    assert (request.num_images, request.cfg_weight, request.temperature, request.seed) == (4, 5.0, 1.0, None)
    assert parsed.image_bytes is None
    assert parsed.type == "generate"
    assert parsed.params == {
        "type": "generate",
        "prompt": "a red cube",
        "num_images": 4,
        "cfg_weight": 5.0,
        "temperature": 1.0,
        "seed": None,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"num_images": 1},
        {"num_images": 16},
        {"cfg_weight": 0},
        {"cfg_weight": 50},
        {"temperature": 0},
        {"temperature": 10},
        {"seed": 0},
        {"seed": 2**63 - 1},
        {"seed": None},
        {"prompt": "x" * MAX_CHARS},
        {"prompt": "é" * MAX_CHARS},  # characters, not bytes
        {"prompt": "  " + "x" * MAX_CHARS + "  "},  # counted after stripping
    ],
)
def test_generate_bounds_accepted(fields):
    assert from_json(gen(**fields)).request.type == "generate"


def test_json_integer_is_accepted_for_float_fields():
    request = from_json(gen(cfg_weight=7, temperature=1)).request
    assert request.cfg_weight == 7.0 and isinstance(request.cfg_weight, float)


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({"type": "generate"}, "validation_error", "prompt"),
        (gen(prompt=""), "validation_error", "prompt"),
        (gen(prompt="   \t\n "), "validation_error", "prompt"),
        (gen(prompt="x" * (MAX_CHARS + 1)), "prompt_too_long", "prompt"),
        (gen(prompt="é" * (MAX_CHARS + 1)), "prompt_too_long", "prompt"),
        (gen(prompt=123), "validation_error", "prompt"),
        (gen(num_images=0), "validation_error", "num_images"),
        (gen(num_images=17), "validation_error", "num_images"),
        (gen(num_images=2.5), "validation_error", "num_images"),
        (gen(num_images="4"), "validation_error", "num_images"),  # JSON is strict
        (gen(num_images=True), "validation_error", "num_images"),
        (gen(cfg_weight=-0.1), "validation_error", "cfg_weight"),
        (gen(cfg_weight=50.5), "validation_error", "cfg_weight"),
        (gen(cfg_weight=float("nan")), "validation_error", "cfg_weight"),
        (gen(cfg_weight=float("inf")), "validation_error", "cfg_weight"),
        (gen(temperature=-1), "validation_error", "temperature"),
        (gen(temperature=10.01), "validation_error", "temperature"),
        (gen(seed=-1), "validation_error", "seed"),
        (gen(seed=2**63), "validation_error", "seed"),
        (gen(seed=1.5), "validation_error", "seed"),
        (gen(steps=10), "validation_error", "steps"),
        (gen(image=DATA_URL), "validation_error", "image"),
        ({"type": "draw", "prompt": "x"}, "validation_error", "type"),
        ({"prompt": "x"}, "validation_error", "type"),
        ({"type": 5, "prompt": "x"}, "validation_error", "type"),
    ],
)
def test_generate_rejected(body, code, field):
    assert_error(error_of(from_json, body), 422, code, field)


def test_messages_are_clear():
    assert error_of(from_json, {"type": "generate"}).message == "prompt is required"
    assert error_of(from_json, gen(prompt=" ")).message == "prompt must not be empty"
    assert error_of(from_json, gen(extra=1)).message == "unknown field 'extra'"
    assert "16" in error_of(from_json, gen(num_images=17)).message
    too_long = error_of(from_json, gen(prompt="x" * 60)).message
    assert "50" in too_long and "60" in too_long
    assert "generate" in error_of(from_json, {"type": "draw"}).message


def test_prompt_cap_is_the_one_passed_in():
    assert from_json(gen(prompt="x" * 500), max_chars=500).request.prompt == "x" * 500
    assert_error(error_of(from_json, gen(prompt="x" * 11), max_chars=10), 422, "prompt_too_long", "prompt")


def test_model_without_context_uses_the_settings_default():
    GenerateRequest.model_validate(gen(prompt="x" * DEFAULT_MAX_PROMPT_CHARS))
    with pytest.raises(Exception):
        GenerateRequest.model_validate(gen(prompt="x" * (DEFAULT_MAX_PROMPT_CHARS + 1)))


# --- JSON: understand ----------------------------------------------------------------


def test_understand_decodes_the_data_url():
    parsed = from_json(und(question="  what is this?  "))
    request = parsed.request
    assert isinstance(request, UnderstandRequest)
    assert parsed.image_bytes == PNG_BYTES
    assert request.question == "what is this?"
    assert (request.max_new_tokens, request.temperature, request.top_p, request.seed) == (256, 0.1, 0.95, None)
    assert "image" not in parsed.params  # the bytes never go into the job's params
    assert parsed.params["type"] == "understand"
    assert "base64" not in repr(request)


@pytest.mark.parametrize(
    "url",
    [
        "data:image/jpeg;base64," + base64.b64encode(b"jpeg bytes").decode(),
        "DATA:IMAGE/PNG;BASE64," + base64.b64encode(b"x").decode(),
        "data:image/png;name=cat.png;base64," + base64.b64encode(b"x").decode(),
        "data:image/png;base64,"
        + "\n".join(base64.b64encode(b"wrapped base64 lines" * 5).decode()[i:i + 20] for i in range(0, 136, 20)),
    ],
)
def test_understand_accepts_data_url_variants(url):
    assert from_json(und(image=url)).image_bytes


@pytest.mark.parametrize(
    "fields, code, field",
    [
        ({"question": ""}, "validation_error", "question"),
        ({"question": "   "}, "validation_error", "question"),
        ({"question": "q" * (MAX_CHARS + 1)}, "prompt_too_long", "question"),
        ({"top_p": 0}, "validation_error", "top_p"),
        ({"top_p": 1.5}, "validation_error", "top_p"),
        ({"top_p": -0.5}, "validation_error", "top_p"),
        ({"max_new_tokens": 0}, "validation_error", "max_new_tokens"),
        ({"max_new_tokens": 1025}, "validation_error", "max_new_tokens"),
        ({"temperature": -1}, "validation_error", "temperature"),
        ({"seed": -5}, "validation_error", "seed"),
        ({"num_images": 2}, "validation_error", "num_images"),
        ({"image": "not a data url"}, "invalid_image", "image"),
        ({"image": "https://example.com/cat.png"}, "invalid_image", "image"),
        ({"image": "data:text/plain;base64,aGVsbG8="}, "invalid_image", "image"),
        ({"image": "data:image/png,rawdata"}, "invalid_image", "image"),
        ({"image": "data:image/png;base64,@@@not-base64@@@"}, "invalid_image", "image"),
        ({"image": "data:image/png;base64,aGVsbG8"}, "invalid_image", "image"),  # bad padding
        ({"image": "data:image/png;base64,"}, "invalid_image", "image"),
        ({"image": "data:image/png;base64,ü"}, "invalid_image", "image"),
        ({"image": 42}, "invalid_image", "image"),
        ({"image": None}, "invalid_image", "image"),
    ],
)
def test_understand_rejected(fields, code, field):
    assert_error(error_of(from_json, und(**fields)), 422, code, field)


def test_understand_missing_fields():
    body = und()
    del body["image"]
    assert_error(error_of(from_json, body), 422, "validation_error", "image")
    body = und()
    del body["question"]
    assert_error(error_of(from_json, body), 422, "validation_error", "question")


@pytest.mark.parametrize("fields", [{"top_p": 1}, {"top_p": 1e-6}, {"max_new_tokens": 1}, {"max_new_tokens": 1024}, {"temperature": 0}])
def test_understand_bounds_accepted(fields):
    assert from_json(und(**fields)).request.type == "understand"


# --- body and content type -----------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], [gen()], "generate", 5, True])
def test_non_object_json_is_400(body):
    assert_error(error_of(from_json, body), 400, "invalid_json", None)


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/x-www-form-urlencoded", "application/xml"])
def test_other_content_types_are_415(content_type):
    err = error_of(parse_job_request, content_type, gen(), {"type": "generate"}, {}, MAX_CHARS)
    assert_error(err, 415, "unsupported_media_type", None)


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_parameters_and_case(content_type):
    assert parse_job_request(content_type, gen(), None, None, MAX_CHARS).request.type == "generate"


# --- multipart -----------------------------------------------------------------------


def test_multipart_understand_with_numbers_as_strings():
    parsed = from_form(
        {"type": "understand", "question": " q ", "max_new_tokens": "12", "temperature": "0",
         "top_p": "0.5", "seed": "42"},
        {"image": upload()},
    )
    request = parsed.request
    assert isinstance(request, UnderstandRequest)
    assert (request.question, request.max_new_tokens, request.temperature, request.top_p, request.seed) == ("q", 12, 0.0, 0.5, 42)
    assert parsed.image_bytes == PNG_BYTES


def test_multipart_generate_is_allowed():
    request = from_form({"type": "generate", "prompt": "cube", "num_images": "2", "cfg_weight": "3", "seed": ""}).request
    assert isinstance(request, GenerateRequest)
    assert (request.num_images, request.cfg_weight, request.seed) == (2, 3.0, None)


def test_multipart_accepts_plain_mappings_and_file_likes():
    class Upload:
        filename = "x.png"

        def read(self, size=-1):
            return PNG_BYTES

    parsed = parse_job_request(MULTIPART, None, {"type": "understand", "question": "q"}, {"image": Upload()}, MAX_CHARS)
    assert parsed.image_bytes == PNG_BYTES


def test_multipart_missing_image():
    err = error_of(from_form, {"type": "understand", "question": "q"})
    assert_error(err, 422, "validation_error", "image")
    # A browser form with no file chosen sends an empty part without a filename.
    err = error_of(from_form, {"type": "understand", "question": "q"}, {"image": upload(b"", filename="")})
    assert_error(err, 422, "validation_error", "image")


def test_multipart_empty_named_file_is_invalid_image():
    err = error_of(from_form, {"type": "understand", "question": "q"}, {"image": upload(b"")})
    assert_error(err, 422, "invalid_image", "image")


@pytest.mark.parametrize(
    "form_value, json_value, field",
    [
        ("17", 17, "num_images"),
        ("0", 0, "num_images"),
        ("-1", -1, "temperature"),
        ("51", 51, "cfg_weight"),
        ("-3", -3, "seed"),
    ],
)
def test_multipart_errors_match_json(form_value, json_value, field):
    form_err = error_of(from_form, {"type": "generate", "prompt": "p", field: form_value})
    json_err = error_of(from_json, gen(**{field: json_value}))
    assert (form_err.status, form_err.code, form_err.field, form_err.message) == (
        json_err.status, json_err.code, json_err.field, json_err.message)


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_images", "two"),
        ("num_images", "2.5"),
        ("num_images", "4.0"),
        ("cfg_weight", "nan"),
        ("cfg_weight", "inf"),
        ("cfg_weight", "1e400"),
        ("temperature", "0x10"),
        ("seed", "1_000"),
        ("seed", "١٢"),  # non-ASCII digits are not numbers here
    ],
)
def test_multipart_non_numbers_are_rejected(field, value):
    assert_error(error_of(from_form, {"type": "generate", "prompt": "p", field: value}), 422, "validation_error", field)


def test_multipart_rejects_unknown_and_repeated_fields():
    assert_error(error_of(from_form, {"type": "generate", "prompt": "p", "steps": "3"}), 422, "validation_error", "steps")
    assert_error(error_of(from_form, {"type": "generate", "prompt": "p"}, {"image": upload()}), 422, "validation_error", "image")
    repeated = [("type", "generate"), ("prompt", "a"), ("prompt", "b")]
    assert_error(error_of(from_form, repeated), 422, "validation_error", "prompt")
    both = {"type": "understand", "question": "q", "image": DATA_URL}
    assert_error(error_of(from_form, both, {"image": upload()}), 422, "validation_error", "image")


def test_multipart_empty_prompt_and_missing_type():
    assert_error(error_of(from_form, {"type": "generate", "prompt": "  "}), 422, "validation_error", "prompt")
    assert_error(error_of(from_form, {"prompt": "p"}), 422, "validation_error", "type")
    assert_error(error_of(from_form, {"type": "generate", "prompt": "x" * 51}), 422, "prompt_too_long", "prompt")


# --- list query ----------------------------------------------------------------------


def test_list_query_defaults_and_conversion():
    assert parse_list_query({}).limit == 20
    query = parse_list_query(MultiDict({"status": "queued", "type": "generate", "limit": "5", "cursor": "abc"}))
    assert (query.status, query.type, query.limit, query.cursor) == ("queued", "generate", 5, "abc")
    blank = parse_list_query(MultiDict({"status": "", "type": " ", "limit": "", "cursor": ""}))
    assert (blank.status, blank.type, blank.limit, blank.cursor) == (None, None, 20, None)


@pytest.mark.parametrize(
    "args, field",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "done"}, "status"),
        ({"type": "draw"}, "type"),
        ({"sort": "asc"}, "sort"),
        ({"cursor": "ü" * 512}, "cursor"),
        ({"cursor": "abc="}, "cursor"),
    ],
)
def test_list_query_rejected(args, field):
    assert_error(error_of(parse_list_query, MultiDict(args)), 422, "validation_error", field)


# --- response models -----------------------------------------------------------------


def test_error_body_matches_error_out():
    err = ApiError(422, "validation_error", "prompt is required", "prompt")
    body = err.to_response_body()
    assert body == {"error": {"code": "validation_error", "message": "prompt is required", "field": "prompt"}}
    assert ErrorOut.model_validate(body).model_dump() == body
    assert ApiError.of("not_found", "no such job").status == 404


def test_job_out_serializes_iso_timestamps_and_results():
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    job = JobOut(
        id="abc",
        type="generate",
        status="succeeded",
        progress=1.0,
        params={"prompt": "p"},
        created_at=created,
        started_at=created,
        finished_at=None,
        metrics={"queue_seconds": 0.5, "run_seconds": None},
        error=None,
        result={"images": [{"url": "u", "width": 384, "height": 384, "content_type": "image/png"}]},
        urls={"self": "/v1/jobs/abc", "cancel": "/v1/jobs/abc/cancel", "retry": "/v1/jobs/abc/retry"},
    )
    dumped = JobList(data=[job], next_cursor=None).model_dump(mode="json")["data"][0]
    assert dumped["created_at"].startswith("2025-01-02T03:04:05")
    assert dumped["finished_at"] is None
    assert dumped["result"]["images"][0]["width"] == 384
    assert dumped["urls"]["self"] == "/v1/jobs/abc"
    assert JobOut.model_validate({**dumped, "result": {"text": "a cat"}}).result.text == "a cat"
    with pytest.raises(Exception):
        JobOut.model_validate({**dumped, "status": "done"})
    with pytest.raises(Exception):
        JobOut.model_validate({**dumped, "progress": 1.5})


# --- layering ------------------------------------------------------------------------


def top_level_imports(module: str) -> set[str]:
    import ast
    import importlib.util

    with open(importlib.util.find_spec(module).origin, encoding="utf-8") as source:
        tree = ast.parse(source.read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module)
    return imported


HEAVY = {"torch", "celery", "sqlalchemy", "flask", "janus_model", "worker", "boto3"}
TORCH_FREE_MODEL_MODULES = {"janus_model.simulated", "janus_model.simulated_profiles", "janus_model.errors",
                            "janus_model.requests", "janus_model.progress"}


@pytest.mark.parametrize("module", ["api.errors", "api.schemas", "api.images", "api.openapi"])
def test_request_pieces_import_no_heavy_dependencies(module):
    """These modules must stay importable without torch, celery or SQLAlchemy."""
    imported = top_level_imports(module)
    assert not {name.split(".")[0] for name in imported} & HEAVY
    # From jobs/ only the settings, which themselves import none of the above but the torch-free
    # spec parser of the simulated model (an unknown profile is refused at start), the priority
    # names and deadline bounds (jobs.lifecycle, which imports nothing of ours), and the webhook URL
    # check (the standard library only).
    light_modules = {"jobs.settings", "jobs.lifecycle", "jobs.webhooks.addresses"}
    assert {name for name in imported if name.split(".")[0] == "jobs"} <= light_modules
    for light in (*sorted(light_modules), *TORCH_FREE_MODEL_MODULES):
        assert not {name.split(".")[0] for name in top_level_imports(light) - TORCH_FREE_MODEL_MODULES} & HEAVY, light

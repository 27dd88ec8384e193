"""The OpenAPI document is valid and says what the models enforce."""
from __future__ import annotations

import json
import math

import annotated_types
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from api.openapi import build_openapi
from api.schemas import (
    DEFAULT_MAX_PROMPT_CHARS,
    GenerateRequest,
    UnderstandRequest,
    parse_job_request,
)
from api.errors import ApiError

MAX_CHARS = 321


@pytest.fixture(scope="module")
def doc():
    return build_openapi(MAX_CHARS)


def schemas_of(doc):
    return doc["components"]["schemas"]


def test_document_is_valid_openapi_31(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    json.dumps(doc)  # served as-is by GET /openapi.json


def test_default_document_is_valid_and_uses_the_settings_default():
    doc = build_openapi()
    validate(doc)
    assert schemas_of(doc)["GenerateRequest"]["properties"]["prompt"]["maxLength"] == DEFAULT_MAX_PROMPT_CHARS


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_defs_are_hoisted_and_every_ref_resolves(doc):
    components = schemas_of(doc)
    for node in walk(doc):
        assert "$defs" not in node
        if "$ref" in node:
            prefix = "#/components/schemas/"
            assert node["$ref"].startswith(prefix)
            assert node["$ref"][len(prefix):] in components
    for name in ("JobRequest", "GenerateRequest", "UnderstandRequest", "JobOut", "JobList", "ErrorOut"):
        assert name in components


EXPECTED_OPERATIONS = {
    ("/v1/jobs", "post"): {"202", "400", "413", "415", "422", "503"},
    ("/v1/jobs", "get"): {"200", "422"},
    ("/v1/jobs/{job_id}", "get"): {"200", "404"},
    ("/v1/jobs/{job_id}", "delete"): {"204", "404", "503"},
    ("/v1/jobs/{job_id}/cancel", "post"): {"200", "202", "404", "409"},
    ("/v1/jobs/{job_id}/images/{index}", "get"): {"200", "307", "403", "404", "410"},
    ("/v1/workers", "get"): {"200", "401", "403"},
    ("/healthz", "get"): {"200"},
    ("/readyz", "get"): {"200", "503"},
    ("/metrics", "get"): {"200"},
    ("/openapi.json", "get"): {"200"},
}


@pytest.mark.parametrize("path, method", list(EXPECTED_OPERATIONS))
def test_paths_and_responses(doc, path, method):
    responses = doc["paths"][path][method]["responses"]
    assert EXPECTED_OPERATIONS[path, method] <= set(responses)


def test_create_job(doc):
    create = doc["paths"]["/v1/jobs"]["post"]
    content = create["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/JobRequest"}
    form = content["multipart/form-data"]
    assert "image" in form["encoding"]
    accepted = create["responses"]["202"]
    assert "Location" in accepted["headers"]
    assert accepted["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobOut"}
    for status in ("400", "413", "415", "422", "503"):
        assert create["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorOut"
        }
    discriminator = schemas_of(doc)["JobRequest"]["discriminator"]
    assert discriminator["propertyName"] == "type"
    assert set(discriminator["mapping"]) == {"generate", "understand"}


def test_multipart_image_is_a_file_part(doc):
    components = schemas_of(doc)
    image = components["UnderstandRequestForm"]["properties"]["image"]
    assert image["type"] == "string" and "contentMediaType" in image
    assert "pattern" not in image
    # Apart from the image, the form fields are the JSON fields with the same bounds.
    json_props = dict(components["UnderstandRequest"]["properties"])
    form_props = dict(components["UnderstandRequestForm"]["properties"])
    json_props.pop("image"), form_props.pop("image")
    assert form_props == json_props
    assert components["GenerateRequestForm"]["properties"] == components["GenerateRequest"]["properties"]


def test_list_parameters(doc):
    params = {p["name"]: p for p in doc["paths"]["/v1/jobs"]["get"]["parameters"]}
    assert set(params) == {"status", "type", "limit", "cursor"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert set(params["status"]["schema"]["enum"]) == {"queued", "running", "succeeded", "failed", "canceled", "expired"}
    assert params["cursor"]["schema"]["type"] == "string"


def test_job_out_schema(doc):
    job = schemas_of(doc)["JobOut"]
    assert set(job["required"]) >= {"id", "type", "status", "progress", "params", "created_at",
                                    "started_at", "finished_at", "metrics", "error", "result", "urls"}
    assert set(job["properties"]["status"]["enum"]) == {"queued", "running", "succeeded", "failed", "canceled",
                                                         "expired"}
    assert set(job["properties"]["priority"]["enum"]) == {"low", "normal", "high"}
    assert {"priority", "deadline_at"} <= set(job["required"])
    assert job["properties"]["progress"]["minimum"] == 0 and job["properties"]["progress"]["maximum"] == 1
    assert set(schemas_of(doc)["JobUrls"]["properties"]) == {"self", "cancel", "retry"}
    assert set(schemas_of(doc)["ErrorBody"]["properties"]) == {"code", "message", "field"}


# --- the documented bounds are the validated bounds ---------------------------------


def model_bounds(model, field):
    bounds = {}
    for meta in model.model_fields[field].metadata:
        for attr, key in (("ge", "minimum"), ("le", "maximum"), ("gt", "exclusiveMinimum"), ("lt", "exclusiveMaximum")):
            if isinstance(meta, getattr(annotated_types, attr.capitalize())):
                bounds[key] = getattr(meta, attr)
    return bounds


@pytest.mark.parametrize(
    "model, field, expected",
    [
        (GenerateRequest, "num_images", {"minimum": 1, "maximum": 16}),
        (GenerateRequest, "cfg_weight", {"minimum": 0, "maximum": 50}),
        (GenerateRequest, "temperature", {"minimum": 0, "maximum": 10}),
        (UnderstandRequest, "max_new_tokens", {"minimum": 1, "maximum": 1024}),
        (UnderstandRequest, "top_p", {"exclusiveMinimum": 0, "maximum": 1}),
        (UnderstandRequest, "temperature", {"minimum": 0, "maximum": 10}),
    ],
)
def test_request_bounds_match_models(doc, model, field, expected):
    assert model_bounds(model, field) == expected
    prop = schemas_of(doc)[model.__name__]["properties"][field]
    assert {k: prop[k] for k in expected} == expected
    assert prop["default"] == model.model_fields[field].default


def test_prompt_length_comes_from_the_setting(doc):
    components = schemas_of(doc)
    for name, field in (("GenerateRequest", "prompt"), ("UnderstandRequest", "question")):
        prop = components[name]["properties"][field]
        assert (prop["minLength"], prop["maxLength"]) == (1, MAX_CHARS)
    assert components["GenerateRequest"]["additionalProperties"] is False
    assert set(components["GenerateRequest"]["required"]) == {"type", "prompt"}


GENERATE_CASES = [
    {},
    {"num_images": 1}, {"num_images": 16}, {"num_images": 0}, {"num_images": 17}, {"num_images": 2.5},
    {"cfg_weight": 0}, {"cfg_weight": 50}, {"cfg_weight": -0.01}, {"cfg_weight": 50.01},
    {"temperature": 0}, {"temperature": 10}, {"temperature": -1}, {"temperature": 11},
    {"seed": None}, {"seed": 0}, {"seed": 2**63 - 1}, {"seed": 2**63}, {"seed": -1},
    {"prompt": "x" * MAX_CHARS}, {"prompt": "x" * (MAX_CHARS + 1)}, {"prompt": ""},
    {"num_images": "4"}, {"unknown": 1}, {"type": "draw"},
]


@pytest.mark.parametrize("fields", GENERATE_CASES, ids=[json.dumps(c)[:40] for c in GENERATE_CASES])
def test_schema_and_model_agree_on_generate(doc, fields):
    body = {"type": "generate", "prompt": "a cube", **fields}
    schema = {"$ref": "#/components/schemas/JobRequest", "components": doc["components"]}
    schema_ok = Draft202012Validator(schema).is_valid(body)
    try:
        parse_job_request("application/json", body, None, None, MAX_CHARS)
        model_ok = True
    except ApiError:
        model_ok = False
    assert schema_ok == model_ok


def test_seed_bound_is_documented(doc):
    seed = schemas_of(doc)["GenerateRequest"]["properties"]["seed"]
    integer = next(branch for branch in seed["anyOf"] if branch.get("type") == "integer")
    assert integer["minimum"] == 0 and integer["exclusiveMaximum"] == 2**63
    assert math.isclose(math.log2(integer["exclusiveMaximum"]), 63)


V1_OPERATIONS = [key for key in EXPECTED_OPERATIONS if key[0].startswith("/v1/")]
OPEN_OPERATIONS = [key for key in EXPECTED_OPERATIONS if not key[0].startswith("/v1/")]


def test_bearer_auth_is_the_default_security(doc):
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert doc["security"] == [{"bearerAuth": []}]


@pytest.mark.parametrize("path, method", V1_OPERATIONS)
def test_v1_operations_document_401_and_429(doc, path, method):
    operation = doc["paths"][path][method]
    if path.endswith("/images/{index}"):  # a key, or the signature of an image URL from a job's result
        assert operation["security"] == [{"bearerAuth": []}, {"signedUrl": []}]
    else:
        assert "security" not in operation  # the document's default: a bearer key
    unauthorized = operation["responses"]["401"]
    assert unauthorized["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert "WWW-Authenticate" in unauthorized["headers"]
    limited = operation["responses"]["429"]
    assert limited["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
    assert limited["headers"]["Retry-After"]["schema"]["type"] == "integer"


@pytest.mark.parametrize("path, method", OPEN_OPERATIONS)
def test_probes_metrics_and_document_need_no_key(doc, path, method):
    operation = doc["paths"][path][method]
    assert operation["security"] == []
    assert "401" not in operation["responses"]


def test_the_cap_on_unfinished_jobs_is_documented(doc):
    assert "too_many_unfinished_jobs" in doc["paths"]["/v1/jobs"]["post"]["responses"]["429"]["description"]


def test_worker_schema_documents_every_status_the_server_gives(doc):
    from jobs.workers import STATUSES

    worker = schemas_of(doc)["WorkerOut"]
    assert set(worker["properties"]["status"]["enum"]) == set(STATUSES)
    assert doc["paths"]["/v1/workers"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WorkerList"}


def test_webhooks_are_documented(doc):
    post = doc["webhooks"]["jobEvent"]["post"]
    assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobOut"}
    job = doc["components"]["schemas"]["JobOut"]["properties"]
    assert {"webhook", "webhook_events", "webhook_deliveries"} <= set(job)
    for request in ("GenerateRequest", "UnderstandRequest", "GenerateRequestForm"):
        fields = doc["components"]["schemas"][request]["properties"]
        assert fields["webhook_events"]["anyOf"][0]["items"]["enum"] == ["start", "progress", "completed"]

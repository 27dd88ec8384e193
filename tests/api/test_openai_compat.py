"""The OpenAI-compatible endpoints (api/openai_compat.py) on PostgreSQL with auth on, driven by the
real openai package over a WSGI transport (no server process): validation, error shapes and the
typed exceptions they raise, auth, the rate limit, and the job-outcome errors. A small stand-in
for a worker finishes the jobs here; tests/e2e/test_openai_e2e.py runs real workers."""
from __future__ import annotations

import base64
import io
import threading
import time

import httpx2
import openai
import pytest
from PIL import Image
from sqlalchemy import select

from jobs import events, states
from jobs.models import Job
from tests.api.conftest import bearer
from tests.e2e.helpers import data_url, png_bytes

IMAGE = data_url(png_bytes())


def question(text: str = "What is this?", image: str = IMAGE) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": image}}]}]


def client_of(api, key: str, **options) -> openai.OpenAI:
    transport = httpx2.WSGITransport(app=api.app)
    return openai.OpenAI(api_key=key, base_url="http://testserver/v1", max_retries=0,
                         http_client=httpx2.Client(transport=transport, base_url="http://testserver"), **options)


@pytest.fixture
def keyed(make_api, new_key, tenant):
    """(api with waits of 5 s, an openai client with a fresh tenant's key, that tenant)."""
    api = make_api(max_wait_seconds=5)
    owner = tenant()
    return api, client_of(api, new_key(owner)), owner


class StandIn(threading.Thread):
    """Does what a worker would to the tenant's next job: runs it, streams `answer` in two
    `output` events, and finishes it with `result` (or the given final status)."""

    def __init__(self, api, owner: str, result: dict, status: str = states.SUCCEEDED, **fields):
        super().__init__(daemon=True)
        self.api, self.owner, self.result, self.status, self.fields = api, owner, result, status, fields
        self.db = api.app.extensions["janus"].db  # the app's: its sessions' events reach the event log

    def run(self):
        job_id = self._next_job()
        with self.db.session() as session:
            states.transition(session, job_id, states.RUNNING)
        text = self.result.get("text", "")
        for part in (text[: len(text) // 2], text):
            time.sleep(0.3)
            with self.db.session() as session:
                events.record(session, job_id, events.OUTPUT, {"text": part})
        with self.db.session() as session:
            result = self.result if self.status == states.SUCCEEDED else None
            states.transition(session, job_id, self.status, result=result, **self.fields)

    def _next_job(self) -> str:
        for _ in range(100):
            with self.db.session() as session:
                job_id = session.execute(select(Job.id).where(Job.owner == self.owner,
                                                              Job.status == states.QUEUED)).scalar()
            if job_id:
                return job_id
            time.sleep(0.05)
        raise TimeoutError("no job came")


def finish(api, owner: str, result: dict, **options) -> StandIn:
    stand_in = StandIn(api, owner, result, **options)
    stand_in.start()
    return stand_in


# --- answers ---------------------------------------------------------------------------------


def test_chat_completion_with_a_key(keyed):
    api, client, owner = keyed
    finish(api, owner, {"text": "A red square."})
    completion = client.chat.completions.create(model="anything", messages=question(), max_tokens=40,
                                                temperature=0.5, top_p=0.9, seed=7)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "A red square."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == api.settings.model  # `model` is ignored: the served one answers
    (job,) = api.jobs_of(owner)
    assert completion.id == job.id
    assert job.params["question"] == "What is this?"
    assert (job.params["max_new_tokens"], job.params["temperature"], job.params["top_p"], job.params["seed"]) \
        == (40, 0.5, 0.9, 7)


def test_streamed_chunks_join_to_the_answer(keyed):
    api, client, owner = keyed
    finish(api, owner, {"text": "A red square on white."})
    chunks = list(client.chat.completions.create(model="janus", messages=question(), stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "A red square on white."
    assert len([chunk for chunk in chunks if chunk.choices[0].delta.content]) == 2  # as it grew
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_images_as_b64_json_and_signed_urls(keyed):
    api, client, owner = keyed
    png = io.BytesIO()
    Image.new("RGB", (384, 384), (1, 2, 3)).save(png, format="PNG")
    storage = api.app.extensions["janus"].storage
    storage.put(f"stand-in/{owner}.png", png.getvalue(), "image/png")
    image = {"key": f"stand-in/{owner}.png", "width": 384, "height": 384, "content_type": "image/png"}
    for response_format in ("b64_json", "url"):
        finish(api, owner, {"images": [image, image]})
        images = client.images.generate(prompt="a fox", n=2, size="384x384", response_format=response_format,
                                        model="dall-e-3", quality="hd", style="vivid", user="u1")
        assert len(images.data) == 2
        if response_format == "b64_json":
            assert base64.b64decode(images.data[0].b64_json) == png.getvalue()
        else:  # absolute, and signed: they work without the key
            url = images.data[1].url
            assert url.startswith("http://testserver/v1/jobs/") and "signature=" in url
            fetched = api.client.get(url.removeprefix("http://testserver"))
            assert fetched.status_code == 200 and fetched.data == png.getvalue()
    assert [job.params["num_images"] for job in api.jobs_of(owner)] == [2, 2]


# --- refusals, as the openai package's typed errors ------------------------------------------


@pytest.mark.parametrize("call, param", [
    (lambda c: c.images.generate(prompt="a fox", size="1024x1024"), "size"),
    (lambda c: c.images.generate(prompt="a fox", n=17), "n"),
    (lambda c: c.images.generate(prompt="a fox", response_format="svg"), "response_format"),
    (lambda c: c.images.generate(prompt="   "), "prompt"),
    (lambda c: c.images.generate(prompt="a fox", extra_body={"mask": "x"}), "mask"),
    (lambda c: c.images.generate(prompt="a fox", extra_body={"cfg_weight": 99}), "cfg_weight"),
    (lambda c: c.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]), "messages"),
    (lambda c: c.chat.completions.create(model="m", messages=question(image="https://x.test/a.png")),
     "messages"),
    (lambda c: c.chat.completions.create(model="m", messages=question(image="data:image/png;base64,AAAA")),
     "messages"),
    (lambda c: c.chat.completions.create(model="m", messages=question(), max_tokens=5000), "max_tokens"),
    (lambda c: c.chat.completions.create(model="m", messages=question(), max_completion_tokens=0),
     "max_completion_tokens"),
    (lambda c: c.chat.completions.create(model="m", messages=question(), top_p=0), "top_p"),
    (lambda c: c.chat.completions.create(model="m", messages=question(), tools=[]), "tools"),
    (lambda c: c.chat.completions.create(model="m", messages=[{"role": "system", "content": "be brief"},
                                                              *question()]), "messages"),
])
def test_what_janus_cannot_do_is_a_422_naming_the_param(keyed, call, param):
    api, client, owner = keyed
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        call(client)
    error = raised.value.body
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param or error["param"].startswith(param + "."), error
    assert error["message"] and error["code"] in {"validation_error", "invalid_image", "unsupported_image_format"}
    assert api.jobs_of(owner) == []


def test_a_body_that_is_not_json_is_a_400(keyed):
    api, client, _owner = keyed
    with pytest.raises(openai.BadRequestError) as raised:
        client.post("/images/generations", cast_to=object, body=None,
                    options={"headers": {"Content-Type": "text/plain"}})
    assert raised.value.body["code"] == "invalid_json"


def test_a_missing_or_wrong_key_is_an_authentication_error(keyed):
    api, _client, owner = keyed
    with pytest.raises(openai.AuthenticationError) as raised:
        client_of(api, "jq_not_a_key").images.generate(prompt="a fox")
    assert raised.value.body["type"] == "authentication_error"
    assert raised.value.body["code"] == "unauthorized"
    missing = api.client.post("/v1/chat/completions", json={"messages": question()})  # the SDK always sends one
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.json["error"] == {"message": "an API key is required: send Authorization: Bearer <key>",
                                     "type": "authentication_error", "param": "Authorization", "code": "unauthorized"}
    assert api.jobs_of(owner) == []


def test_the_rate_limit_is_a_rate_limit_error(make_api, new_key, tenant):
    api = make_api(rate_limit_per_minute=1, max_wait_seconds=0)
    client = client_of(api, new_key(tenant()))
    with pytest.raises(openai.InternalServerError):  # the first request is counted (its job: not waited for)
        client.images.generate(prompt="a fox")
    with pytest.raises(openai.RateLimitError) as raised:
        client.images.generate(prompt="a fox")
    assert raised.value.body["code"] == "rate_limited"
    assert int(raised.value.response.headers["Retry-After"]) >= 1


def test_the_unfinished_jobs_cap_counts_these_jobs(make_api, new_key, tenant):
    api = make_api(max_unfinished_jobs=1, max_wait_seconds=0)
    client = client_of(api, new_key(tenant()))
    with pytest.raises(openai.InternalServerError):
        client.images.generate(prompt="a fox")
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="m", messages=question())
    assert raised.value.body["code"] == "too_many_unfinished_jobs"


# --- a job without an answer: the error names it -----------------------------------------------


def test_a_job_not_finished_in_time_is_a_504_naming_it(make_api, new_key, tenant):
    api = make_api(max_wait_seconds=1)
    owner = tenant()
    client = client_of(api, new_key(owner))
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as raised:
        client.chat.completions.create(model="m", messages=question())
    assert 1 <= time.monotonic() - started < 5
    (job,) = api.jobs_of(owner)
    error, headers = raised.value.body, raised.value.response.headers
    assert raised.value.status_code == 504 and error["code"] == "job_not_finished"
    assert error["job_id"] == job.id and job.id in error["message"]
    assert headers["Location"] == f"/v1/jobs/{job.id}" and headers["x-should-retry"] == "false"
    # the stream says the same, as an error event the openai package raises
    with pytest.raises(openai.APIError) as raised:
        list(client.chat.completions.create(model="m", messages=question(), stream=True))
    assert raised.value.body["code"] == "job_not_finished"


def test_failed_and_canceled_jobs(keyed):
    api, client, owner = keyed
    finish(api, owner, {}, status=states.FAILED, error_code="model_error", error_message="out of memory")
    with pytest.raises(openai.InternalServerError) as raised:
        client.images.generate(prompt="a fox")
    assert raised.value.body["code"] == "model_error" and "out of memory" in raised.value.body["message"]
    finish(api, owner, {}, status=states.CANCELED)
    with pytest.raises(openai.ConflictError) as raised:
        client.images.generate(prompt="a fox")
    assert raised.value.body["code"] == "job_canceled"
    finish(api, owner, {}, status=states.FAILED, error_code="model_error", error_message="boom")
    with pytest.raises(openai.APIError) as raised:
        list(client.chat.completions.create(model="m", messages=question(), stream=True))
    assert raised.value.body["code"] == "model_error"
    assert len(api.jobs_of(owner)) == 3  # each a job of its own, none retried by the client


def test_jobs_are_listed_for_the_tenant(keyed):
    api, client, owner = keyed
    finish(api, owner, {"text": "ok"})
    completion = client.chat.completions.create(model="m", messages=question())
    listed = api.client.get("/v1/jobs", headers=bearer(client.api_key)).json["data"]
    assert [job["id"] for job in listed] == [completion.id]
    assert listed[0]["type"] == "understand" and listed[0]["result"]["text"] == "ok"


def test_errors_from_other_handlers_are_in_openai_shape_too(make_api, new_key, tenant):
    api = make_api(max_upload_bytes=1024)
    response = api.client.post("/v1/chat/completions", json={"messages": question("x" * 2000)},
                               headers=bearer(new_key(tenant())))
    assert response.status_code == 413
    assert set(response.json["error"]) == {"message", "type", "param", "code"}
    assert response.json["error"]["code"] == "payload_too_large"


def test_the_openapi_document_describes_both_operations():
    from jsonschema import Draft202012Validator

    from api.openapi import build_openapi

    doc = build_openapi()
    schema_of = lambda name: {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}  # noqa: E731
    for path, request_model in (("/v1/images/generations", "ImagesRequest"), ("/v1/chat/completions", "ChatRequest")):
        operation = doc["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(request_model)
        for status in ("400", "401", "422", "429", "500", "503", "504"):
            assert operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/OpenAIError")
    assert Draft202012Validator(schema_of("ChatRequest")).is_valid({"model": "m", "messages": question()})
    assert not Draft202012Validator(schema_of("ImagesRequest")).is_valid({"prompt": "p", "size": "512x512"})
    assert Draft202012Validator(schema_of("OpenAIError")).is_valid(
        {"error": {"message": "m", "type": "server_error", "param": None, "code": "job_not_finished", "job_id": "j"}})


def test_the_model_list_names_the_served_model(keyed, make_api):
    api, client, _owner = keyed
    models = client.models.list()
    assert [model.id for model in models.data] == [api.app.extensions["janus"].settings.model]
    assert models.data[0].object == "model" and models.data[0].owned_by == "janusq"
    with pytest.raises(openai.AuthenticationError):
        client_of(api, "jq_not_a_key").models.list()

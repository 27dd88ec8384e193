"""The OpenAI-compatible endpoints through the real openai package, against `janusq serve` and real
workers: `make run`'s embedded stack and the PostgreSQL + Redis + S3 one (the tiny model). Auth,
rate limits and the error cases are covered in tests/api/test_openai_compat.py; here the answers
(images that decode, streamed chunks that join to the job's answer) and the jobs behind them."""
from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from PIL import Image

from tests.e2e.helpers import data_url, fetch_image, png_bytes

QUESTION = [{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]}]


@pytest.fixture(scope="module", params=["embedded_stack", "distributed_stack"])
def stack(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def client(stack):
    # Auth is off on loopback (make run's default): the key is sent, as the SDK always does, and unused.
    return openai.OpenAI(base_url=stack.base_url + "/v1", api_key="jq_unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def made(stack):
    """The ids of the jobs this module's requests made, per stack."""
    return []


def test_images_as_urls_and_as_b64_json(client, made):
    # At once, so that the two jobs can share a batch: the tiny model takes seconds an image on a CPU.
    with ThreadPoolExecutor(2) as pool:
        by_url, as_b64 = pool.map(lambda response_format: client.images.with_raw_response.generate(
            model="dall-e-3", prompt="a red fox", n=1, size="384x384", response_format=response_format),
            ["url", "b64_json"])
    images = [fetch_image(item.url) for item in by_url.parse().data]
    images += [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in as_b64.parse().data]
    assert [(image.format, image.size) for image in images] == [("PNG", (384, 384))] * 2
    made += [raw.headers["Location"].rsplit("/", 1)[1] for raw in (by_url, as_b64)]


def test_chat_completion_and_its_stream(stack, client, made):
    completion = client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_tokens=16, seed=1)
    job = stack.job(completion.id)
    assert job["status"] == "succeeded" and job["params"]["max_new_tokens"] == 16
    assert completion.choices[0].message.content == job["result"]["text"]
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=QUESTION, max_completion_tokens=16,
                                                 seed=2, stream=True))
    streamed = stack.job(chunks[0].id)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == streamed["result"]["text"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    made += [completion.id, streamed["id"]]


def test_a_request_janus_cannot_serve_raises_the_typed_error(client):
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.images.generate(prompt="a red fox", size="1024x1024")
    assert raised.value.body["param"] == "size" and raised.value.body["type"] == "invalid_request_error"


def test_the_jobs_are_ordinary_jobs(stack, made):
    listed = requests.get(stack.base_url + "/v1/jobs", params={"limit": 100}, timeout=10).json()["data"]
    assert set(made) <= {job["id"] for job in listed}
    assert len(made) == 4
